"""The controller's GC roots per fleet and host (plugin_utils/builds/_gc_roots.py):
the fleet's folder name (stable, the same for every commit of a flake,
distinct for two flakes, safe as one file name), and, with the controller's
real Nix and tiny derivations of this test, that two fleets with a host of
the same name keep their own systems, that an old flat root goes when the
new one is written, and that a rollback moves the root."""

import os
import re
import subprocess
import sys
import uuid

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import (  # noqa: E402
    _build, _gc_roots)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402

SAFE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]{0,39}-[0-9a-f]{12}$')
COMMIT = '0123456789abcdef0123456789abcdef01234567'


# ------------------------------------------------------------------ the name
def test_the_name_is_stable():
    # pinned: a new name for the same flake would leave every root of a
    # fleet behind in the old folder, holding its systems
    assert _gc_roots.fleet_name('git+file:///home/u/infra') == 'infra-d7c5dd751658'
    assert _gc_roots.fleet_name('github:o/r') == 'r-b319704d788b'
    assert _gc_roots.fleet_name('github:o/r') == _gc_roots.fleet_name('github:o/r')


@pytest.mark.parametrize('pinned, plain', [
    ('git+file:///home/u/infra?ref=main&rev=%s' % COMMIT, 'git+file:///home/u/infra'),
    ('git+file:///home/u/infra?rev=%s&narHash=sha256-AAAA&lastModified=1&revCount=3' % COMMIT,
     'git+file:///home/u/infra'),
    ('github:o/r/%s?narHash=sha256-AAAA' % COMMIT, 'github:o/r'),
    ('github:o/r/main', 'github:o/r'),
    ('github:o/r?dir=hosts&rev=%s' % COMMIT, 'github:o/r?dir=hosts'),
    ('git+https://user:token@example.org/o/r.git?ref=x', 'git+https://example.org/o/r.git'),
    ('path:/srv/infra/', 'path:/srv/infra'),
    ('path:/srv/infra#nixosConfigurations.web1', 'path:/srv/infra'),
])
def test_every_commit_and_branch_of_a_flake_is_one_fleet(pinned, plain):
    assert _gc_roots.fleet_name(pinned) == _gc_roots.fleet_name(plain)


def test_two_flakes_with_the_same_folder_name_are_two_fleets(tmp_path):
    names = [_gc_roots.fleet_name(r) for r in (
        'git+file:///srv/a/infra', 'git+file:///srv/b/infra', 'path:/srv/a/infra',
        'github:a/infra', 'github:b/infra', 'github:a/infra?dir=prod',
        'git+file:///srv/a/infra?dir=prod')]
    assert len(set(names)) == len(names), names
    assert names[0].startswith('infra-') and names[5].startswith('prod-')
    # so web1 of each has a root of its own
    roots = set(_build.gc_root_path(str(tmp_path), 'web1', name) for name in names)
    assert len(roots) == len(names)


@pytest.mark.parametrize('reference', [
    'path:/srv/my infra', 'path:/srv/a/b/c/', 'path:/srv/..', 'path:/..', 'path:/',
    'path:/srv/fl\u00f6te', 'path:/srv/\u7fa4', 'path:/srv/.hidden', 'git+file:///x?dir=a/../..',
    'path:/srv/' + 'x' * 300, 'path:/srv/a;rm -rf ~', 'path:/srv/$(echo)`x`', 'flake:nixpkgs',
    'path:/srv/-dash', 'path:/srv/%2F..%2F'])
def test_the_name_is_one_safe_file_name_for_odd_flakes(reference, tmp_path):
    name = _gc_roots.fleet_name(reference)
    assert SAFE.match(name), name
    assert name not in ('.', '..') and '/' not in name
    root = _build.gc_root_path(str(tmp_path), 'web1', name)
    assert os.path.dirname(os.path.dirname(root)) == str(tmp_path)
    os.makedirs(os.path.dirname(root))  # the file system takes it


def test_the_readable_part_keeps_what_it_can():
    assert _gc_roots.fleet_name('path:/srv/my infra').startswith('my_infra-')
    assert _gc_roots.fleet_name('path:/srv/fl\u00f6te').startswith('flote-')
    assert _gc_roots.fleet_name('path:/srv/\u7fa4').startswith('flake-')
    assert _gc_roots.fleet_name('path:/srv/..').startswith('srv-')
    assert _gc_roots.fleet_name('git+file:///x?dir=hosts/prod').startswith('prod-')
    # two odd names that read the same keep apart by their digest
    assert _gc_roots.fleet_name('path:/srv/a b') != _gc_roots.fleet_name('path:/srv/a_b')


def test_the_fleet_of_a_host_is_its_flake_as_the_evaluation_reads_it(tmp_path):
    folder = tmp_path / 'infra'
    folder.mkdir()
    by_path = _gc_roots.fleet_of(str(folder))
    assert by_path == _gc_roots.fleet_name('path:%s' % folder)
    assert _gc_roots.fleet_of('infra', str(tmp_path)) == by_path
    assert _gc_roots.fleet_of('./infra/', str(tmp_path)) == by_path
    assert _gc_roots.fleet_of(None) is None and _gc_roots.fleet_of('') is None


def test_a_host_name_never_leaves_its_fleets_folder(tmp_path):
    folder = str(tmp_path)
    fleet = _gc_roots.fleet_name('github:o/r')
    for host in ('../escaped', '..', '.', 'a/b', '/etc/passwd', 'web 1;rm', 'caf\u00e9'):
        root = _gc_roots.root_path(folder, host, fleet)
        assert os.path.dirname(root) == os.path.join(folder, fleet), host
    # no fleet (a derivation given, no flake): the flat root as before
    assert _gc_roots.root_path(folder, 'web1') == os.path.join(folder, 'web1')


def test_what_the_host_runs_after_a_rollback():
    previous = {'generation': 41, 'path': '/nix/store/aaaa-old'}
    new = {'generation': 42, 'path': '/nix/store/bbbb-new'}
    running = _gc_roots.running_after_rollback
    # state=rolled_back went to `new`
    done = {'changed': True, 'state': 'done', 'previous': new, 'new': previous}
    assert running('rolled_back', done) == '/nix/store/aaaa-old'
    assert running('rolled_back', dict(done, changed=False, state='unchanged')) is None
    assert running('rolled_back', dict(done, failed=True, state='rollback_failed')) is None
    # check mode says what it would do: no state
    assert running('rolled_back', {'changed': True, 'previous': new, 'new': previous}) is None
    # an activation the host rolled back: it runs the previous system again
    back = {'failed': True, 'rolled_back': True, 'state': 'rolled_back', 'previous': previous,
            'new': new}
    assert running('activated', back) == '/nix/store/aaaa-old'
    assert running('activated', dict(back, state='rollback_failed')) is None
    assert running('activated', {'changed': True, 'state': 'done', 'rolled_back': False,
                                 'previous': previous, 'new': new}) is None
    assert running('confirmed', back) is None


# ------------------------------------------------------------------ real Nix
THREE = r'''{ tag }: builtins.listToAttrs (map (name: { inherit name; value = derivation {
  name = "fleet-root-${name}-${tag}"; system = builtins.currentSystem;
  builder = "/bin/sh"; args = [ "-c" "echo ${name} > $out" ]; }; }) [ "a1" "a2" "b1" ])
'''


@pytest.fixture
def systems(tmp_path):
    """{a1, a2, b1: out path}: new ones per test (a fresh tag), built in the
    controller's store and rooted by nothing."""
    (tmp_path / 'three.nix').write_text(THREE)
    opts = _nix.NixOptions(options={'substituters': ''})
    tag = _nix.nix_string(uuid.uuid4().hex[:12])
    expr = ('let x = import %s { tag = %s; }; in { a1 = x.a1.drvPath; a2 = x.a2.drvPath; '
            'b1 = x.b1.drvPath; }' % (tmp_path / 'three.nix', tag))
    drvs = _nix.NixCommand(opts).json('eval', ['--json', '--impure', '--expr', expr], 'eval')
    out = subprocess.run(['nix-store', '--realise'] + [drvs[k] for k in sorted(drvs)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True, check=True).stdout.split()
    built = dict(zip(sorted(drvs), out))
    for path in built.values():
        # nix-store --realise printed the paths; no root of theirs is left
        assert our_roots(path, tmp_path) == set()
    return built


def builder():
    return _build.Builder(_nix.NixOptions(options={'substituters': ''}), timeout=120)


def our_roots(path, folder):
    """The roots of ``path`` that Nix's collector sees, in ``folder``."""
    out = subprocess.run(['nix-store', '--query', '--roots', path], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    return set(line.split(' -> ')[0] for line in out.splitlines()
               if line.startswith(str(folder) + '/'))


def collect(path):
    """Ask Nix's collector to delete ``path`` alone: whether it did (a
    rooted path is alive, and stays)."""
    return subprocess.run(['nix-store', '--delete', path], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode == 0


def test_two_fleets_with_a_host_of_the_same_name_keep_their_own_systems(systems, tmp_path):
    roots = tmp_path / 'roots'
    nix = builder()
    fleet_a = _gc_roots.fleet_of('git+file:///srv/a/infra')
    fleet_b = _gc_roots.fleet_of('git+file:///srv/b/infra')
    # an old flat root of web1 from before fleets, holding a1
    roots.mkdir()
    flat = roots / 'web1'
    os.symlink(systems['a1'], str(flat))
    root_a, warning = _gc_roots.write_root(nix, str(roots), fleet_a, 'web1', systems['a2'])
    assert warning is None and root_a == str(roots / fleet_a / 'web1')
    # the flat root is gone: it holds nothing now
    assert not os.path.lexists(str(flat))
    root_b, _warning = _gc_roots.write_root(nix, str(roots), fleet_b, 'web1', systems['b1'])
    assert root_b == str(roots / fleet_b / 'web1') and root_b != root_a
    # each fleet's web1 holds its own system, by Nix's collector's account
    assert our_roots(systems['a2'], roots) == {root_a}
    assert our_roots(systems['b1'], roots) == {root_b}
    assert not collect(systems['a2']) and not collect(systems['b1'])
    # fleet B's next deploy of web1 leaves fleet A's system alone
    _gc_roots.write_root(nix, str(roots), fleet_b, 'web1', systems['a1'])
    assert our_roots(systems['a2'], roots) == {root_a}
    assert collect(systems['b1'])


def test_a_rollback_moves_the_root_to_what_the_host_runs(systems, tmp_path):
    roots = tmp_path / 'roots'
    nix = builder()
    fleet = _gc_roots.fleet_of('github:o/infra')
    _gc_roots.write_root(nix, str(roots), fleet, 'web1', systems['a1'])
    root, _warning = _gc_roots.write_root(nix, str(roots), fleet, 'web1', systems['a2'])
    assert our_roots(systems['a1'], roots) == set()
    # web1 rolled back to a1: the root follows, a2 may be collected
    done, moved, warning = _gc_roots.follow_rollback(nix, str(roots), fleet, 'web1',
                                                     systems['a1'])
    assert (done, moved, warning) == ('moved', root, None)
    assert os.readlink(root) == systems['a1']
    assert our_roots(systems['a1'], roots) == {root}
    assert our_roots(systems['a2'], roots) == set()
    assert collect(systems['a2'])
    # the controller no longer holds what web2 rolls back to: its root goes,
    # rather than keep the system it rolled back from
    root2, _warning = _gc_roots.write_root(nix, str(roots), fleet, 'web2', systems['b1'])
    gone = '/nix/store/%s-gone' % ('0' * 32)
    assert _gc_roots.follow_rollback(nix, str(roots), fleet, 'web2', gone) == (
        'removed', root2, None)
    assert not os.path.lexists(root2) and our_roots(systems['b1'], roots) == set()
    # a host the controller holds no root for (built on itself) gets none
    assert _gc_roots.follow_rollback(nix, str(roots), fleet, 'db', systems['a1'])[0] == 'none'
    assert not os.path.lexists(str(roots / fleet / 'db'))


def test_a_rollback_moves_an_old_flat_root_into_the_fleets_folder(systems, tmp_path):
    roots = tmp_path / 'roots'
    roots.mkdir()
    os.symlink(systems['a2'], str(roots / 'web1'))
    fleet = _gc_roots.fleet_of('github:o/infra')
    done, root, _warning = _gc_roots.follow_rollback(builder(), str(roots), fleet, 'web1',
                                                     systems['a1'])
    assert done == 'moved' and root == str(roots / fleet / 'web1')
    assert not os.path.lexists(str(roots / 'web1'))
    assert our_roots(systems['a1'], roots) == {root}
    assert our_roots(systems['a2'], roots) == set()


def test_nix_activate_moves_the_root_the_build_wrote_after_a_rollback(systems, tmp_path):
    """The action's own step (plugins/action/nix_activate.py): the root is
    found from the host's nix_flake and nix_gc_root_dir (templated, as a
    task argument would be), and moved to what the host runs again."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    from ansible_collections.nixdeploy.fleet.plugins.action.nix_activate import ActionModule
    from tests.unit.plugins.plugin_utils.task.test_action import action_of

    roots = tmp_path / 'roots'
    flake = 'git+file:///srv/a/infra'
    root, _warning = _gc_roots.write_root(builder(), str(roots), _gc_roots.fleet_of(flake),
                                          'web1', systems['a2'])
    task_vars = {'inventory_hostname': 'web1', 'nix_flake': flake, 'roots_base': str(tmp_path),
                 'nix_gc_root_dir': trust_as_template('{{ roots_base }}/roots')}
    action = action_of(ActionModule, {})
    action._templar = Templar(loader=DataLoader(), variables=task_vars)
    action.task_vars, action.host = task_vars, 'web1'
    args = {'state': 'rolled_back', 'nix_options': {'substituters': ''}}
    previous = {'generation': 2, 'path': systems['a2']}
    went_to = {'generation': 1, 'path': systems['a1']}
    # no rollback (check mode says what it would do: no state): nothing moves
    outcome = {'changed': True, 'previous': previous, 'new': went_to}
    action._follow_rollback(args, outcome)
    assert 'gc_root' not in outcome and os.readlink(root) == systems['a2']
    outcome = {'changed': True, 'state': 'done', 'rolled_back': True, 'previous': previous,
               'new': went_to}
    action._follow_rollback(args, outcome)
    assert outcome.get('gc_root') == root and 'warnings' not in outcome, outcome
    assert os.readlink(root) == systems['a1']
    assert our_roots(systems['a2'], roots) == set()
    # an activation the host rolled back during a deploy: back to `previous`
    outcome = {'failed': True, 'rolled_back': True, 'state': 'rolled_back',
               'previous': {'generation': 1, 'path': systems['b1']},
               'new': {'generation': 2, 'path': systems['a1']}}
    action._follow_rollback(dict(args, state='activated'), outcome)
    assert outcome['gc_root'] == root and os.readlink(root) == systems['b1']
