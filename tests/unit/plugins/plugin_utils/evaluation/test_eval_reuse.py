"""Each host's evaluation reused across commits (plugin_utils/evaluation/
reuse/_reuse.py, docs/eval-cache.md "Reuse across commits"): after a commit,
only the hosts whose reads changed are evaluated, and every answer, reused
or not, is what a plain `nix eval` of that commit gives. Real Nix, git and
strace; one evaluator per host where the test needs exact records."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import _eval  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache import (  # noqa: E402
    _cache)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake import (  # noqa: E402
    _source)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage import (  # noqa: E402
    _stage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ('nix', 'git', 'strace')),
    reason='needs nix, git and strace')

NIX_CONFIG = 'experimental-features = nix-command flakes\nsubstituters ='
ATTR = ['config', 'system', 'build', 'toplevel']

FLAKE = '''{
  outputs = { self }:
    let
      lib = import ./lib/mk.nix;
      host = name: { config.system.build.toplevel = lib.mk {
        inherit name; args = import (./hosts + "/${name}.nix") { inherit self; }; }; };
      names = map (f: builtins.substring 0 (builtins.stringLength f - 4) f)
        (builtins.attrNames (builtins.readDir ./hosts));
    in { nixosConfigurations = builtins.listToAttrs
           (map (name: { inherit name; value = host name; }) names); };
}
'''
MK = '''{ mk = { name, args }: derivation ({ inherit name; system = "x86_64-linux";
  builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; } // args); }
'''
HOSTS = {
    'a': '{ self }: { v = "a"; }\n',
    'b': '{ self }: { v = builtins.readFile ../files/b.txt; }\n',
    'c': '{ self }: { role = import ../roles/web.nix; }\n',
    'd': '{ self }: { role = import ../roles/web.nix; }\n',
}


class Flake(object):
    """A git flake, a cache folder kept across its commits, and a run per
    commit (a fresh run folder: one pin each)."""

    def __init__(self, base):
        self.repo = os.path.join(base, 'flake')
        self.cache = os.path.join(base, 'cache')
        self.base = base
        for rel, text in [('flake.nix', FLAKE), ('lib/mk.nix', MK), ('files/b.txt', 'b'),
                          ('roles/web.nix', '"web"\n'), ('README', 'x')] + [
                ('hosts/%s.nix' % name, text) for name, text in HOSTS.items()]:
            self.write(rel, text)
        self.git('init', '-q')
        self.commit('one')

    def write(self, rel, text):
        path = os.path.join(self.repo, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(text)

    def git(self, *args):
        subprocess.run(['git', '-C', self.repo, '-c', 'user.name=t', '-c', 'user.email=t@t']
                       + list(args), check=True, stdout=subprocess.PIPE)

    def commit(self, message):
        self.git('add', '-A')
        self.git('commit', '-qm', message)

    def hosts(self):
        return sorted(name[:-4] for name in os.listdir(os.path.join(self.repo, 'hosts')))

    def truth(self):
        """Every host's drvPath as a plain, uncached `nix eval` gives it."""
        out = subprocess.run(
            ['nix', 'eval', '--json', 'git+file://%s#nixosConfigurations' % self.repo,
             '--apply', 'cs: builtins.mapAttrs (n: c: c.config.system.build.toplevel.drvPath) cs'],
            check=True, stdout=subprocess.PIPE, env=dict(os.environ, NIX_CONFIG=NIX_CONFIG))
        return json.loads(out.stdout)

    def environ(self):
        """The environment of its runs: the cache's signing key in a
        config folder of the flake's own, never the user's."""
        return dict(os.environ, XDG_CONFIG_HOME=os.path.join(self.base, 'config'))

    def run(self, options=None, env=None, **stage_args):
        """{host: entry} of one run of every host, each answer checked
        against the truth, and the run's figures."""
        truth = self.truth()
        old = dict(os.environ)
        os.environ.update(dict(self.environ(), **(env or {})))
        try:
            stage = _stage.EvalStage(
                _nix.NixOptions(options=dict({'substituters': ''}, **(options or {}))),
                cache=_cache.EvalCache(self.cache),
                sources=_source.RunSources(tempfile.mkdtemp(dir=self.base)),
                **dict({'workers': len(self.hosts())}, **stage_args))
            requests = dict((name, _eval.normalised(_eval.host_request(
                name, {'flake': 'git+file://%s' % self.repo,
                       'attr': ['nixosConfigurations', name] + ATTR}, {}, lambda f: f)))
                for name in self.hosts())
            entries = {}
            figures = stage.evaluate(requests, entries.__setitem__)
        finally:
            os.environ.clear()
            os.environ.update(old)
        for name, entry in entries.items():
            answer = entry.get('answer') or {}
            if 'error' not in answer and 'error' not in entry:
                assert answer['drv_path'] == truth[name], (name, entry)
        return entries, figures


def how(entries):
    return dict((name, entry.get('evaluation')) for name, entry in entries.items())


@pytest.fixture
def flake(tmp_path):
    return Flake(str(tmp_path))


def test_a_commit_costs_what_it_changed(flake):
    first, _figures = flake.run()
    assert how(first) == dict.fromkeys('abcd', 'evaluated')
    # a file nobody reads
    flake.write('README', 'y')
    flake.commit('readme')
    entries, figures = flake.run()
    assert how(entries) == dict.fromkeys('abcd', 'reused'), entries
    assert figures['reused'] == 4 and figures['evaluated'] == 0 and figures['processes'] == 0
    reused = entries['a']['reused']
    assert reused['checked'] > 0 and reused['from']['revision'] != entries['a']['source']['revision']
    # one host's file
    flake.write('files/b.txt', 'B')
    flake.commit('b')
    assert how(flake.run()[0]) == {'a': 'reused', 'b': 'evaluated', 'c': 'reused', 'd': 'reused'}
    # one role's module: its hosts only
    flake.write('roles/web.nix', '"web2"\n')
    flake.commit('web')
    assert how(flake.run()[0]) == {'a': 'reused', 'b': 'reused', 'c': 'evaluated',
                                   'd': 'evaluated'}
    # a host added: the listing every host read changed
    flake.write('hosts/e.nix', '{ self }: { v = "e"; }\n')
    flake.commit('e')
    assert how(flake.run()[0]) == dict.fromkeys('abcde', 'evaluated')
    # the same content again: the plain cache
    assert how(flake.run()[0]) == dict.fromkeys('abcde', 'cached')


def test_the_flake_revision_and_its_own_path_are_evaluated_every_commit(flake):
    flake.write('hosts/a.nix', '{ self }: { v = self.rev or "dirty"; }\n')
    flake.write('hosts/b.nix', '{ self }: { v = "${self}"; }\n')
    flake.write('hosts/c.nix', '{ self }: { v = toString ./.; }\n')
    flake.commit('revision users')
    flake.run()
    for step in range(2):
        flake.write('README', 'step %d' % step)
        flake.commit('readme %d' % step)
        entries, _figures = flake.run()
        assert how(entries) == {'a': 'evaluated', 'b': 'evaluated', 'c': 'evaluated',
                                'd': 'reused'}, entries


def test_a_dirty_tree_then_its_commit(flake):
    flake.write('hosts/a.nix', '{ self }: { v = self.rev or "dirty"; }\n')
    flake.commit('rev')
    flake.write('README', 'dirty')
    # the work tree, uncommitted: evaluated from its snapshot, with no rev
    entries, _figures = flake.run()
    assert entries['a']['source']['dirty'] is True
    dirty_a = entries['a']['answer']['drv_path']
    flake.commit('clean')
    entries, _figures = flake.run()
    # a commit's self has a rev, the tree's none: `self.rev or ...` reads the
    # difference without forcing anything, so no answer of the tree is reused
    assert how(entries) == dict.fromkeys('abcd', 'evaluated')
    assert entries['a']['answer']['drv_path'] != dirty_a
    flake.write('README', 'next')
    flake.commit('next')
    entries, _figures = flake.run()
    assert how(entries) == {'a': 'evaluated', 'b': 'reused', 'c': 'reused', 'd': 'reused'}


def test_nothing_is_reused_where_reads_cannot_all_be_seen(flake, tmp_path):
    flake.run()
    flake.write('README', 'y')
    flake.commit('readme')
    entries, _figures = flake.run(options={'allow-import-from-derivation': True})
    assert how(entries) == dict.fromkeys('abcd', 'evaluated')
    assert any('no host is reused across commits (import-from-derivation is allowed' in note
               for note in entries['a']['notes']), entries['a']['notes']
    # no strace on the controller's PATH: said, and everything evaluated right
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in ('nix', 'git', 'nix-store'):
        os.symlink(shutil.which(tool), str(bin_dir / tool))
    flake.write('README', 'z')
    flake.commit('again')
    entries, _figures = flake.run(env={'PATH': str(bin_dir)})
    assert how(entries) == dict.fromkeys('abcd', 'evaluated')
    assert any('strace is not installed' in note for note in entries['a']['notes'])


def test_a_record_another_account_wrote_is_never_used(flake):
    flake.run()
    for name in os.listdir(flake.cache):
        if name.startswith('chain-'):
            os.chown(os.path.join(flake.cache, name), 65534, 65534)
    flake.write('README', 'y')
    flake.commit('readme')
    assert how(flake.run()[0]) == dict.fromkeys('abcd', 'evaluated')
    assert not any(name.startswith('chain-') and os.stat(os.path.join(flake.cache, name)).st_uid
                   == 65534 for name in os.listdir(flake.cache))


def test_the_spot_check_fails_a_wrong_reuse_loudly_and_turns_reuse_off(flake):
    flake.run()
    # a record that misses what host b read (as a bug in recording would):
    # drop b.txt from every chain, keeping each file the user's own
    cache = _cache.EvalCache(flake.cache, environ=flake.environ())
    moved = {}
    for name in os.listdir(flake.cache):
        if name.startswith('chain-'):
            chain = cache.get_chain(name[len('chain-'):-len('.json')])
            for segment in chain['segments']:
                segment['reads'].pop('files/b.txt', None)
            moved[name[len('chain-'):-len('.json')]] = cache.put_chain(chain)
    for name in os.listdir(flake.cache):
        entry = cache.get_reuse(name[:-len('.json')])
        if entry and entry['chain'] in moved:
            assert cache.put_reuse(name[:-len('.json')], entry, moved[entry['chain']],
                                   entry['upto'], entry['origin'])
    flake.write('files/b.txt', 'B')
    flake.commit('b')
    entries, _figures = flake.run(reuse_check=4)
    assert "is not what Nix gives for this commit" in entries['b']['error'], entries['b']
    # the flake's other hosts were evaluated, not given a reused answer
    assert how(entries) == {'a': 'evaluated', 'b': None, 'c': 'evaluated', 'd': 'evaluated'}
    assert any(name.startswith('distrust-') for name in os.listdir(flake.cache))
    flake.write('README', 'y')
    flake.commit('readme')
    entries, _figures = flake.run()
    assert how(entries) == dict.fromkeys('abcd', 'evaluated')
    assert any('reuse stays off for this flake until' in note for note in entries['a']['notes'])


def test_two_runs_recording_at_once_in_one_folder_keep_their_places_apart(tmp_path):
    """A serving process runs two waves at once (task/_batch_server.BatchServer, two
    slots), each a stage with its own Reuse, both in the job's folder. Their
    evaluators' places (the strace log, the private Nix caches) were named by
    a count each run kept: both named theirs record-PID-1, so both straces
    wrote one log, and the first run's cleanup removed the place the second
    was making (its evaluator died, its host got no answer)."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse import _reuse
    ref = 'path:/nix/store/00000000000000000000000000000000-source'
    runs = []
    for _run in range(2):
        reuse = _reuse.Reuse(None, None, None, str(tmp_path), None)
        reuse.strace = shutil.which('strace')
        reuse.specs[ref] = _reuse.RecordSpec(
            {'root': ref[len('path:'):], 'narHash': 'sha256-x', 'sub': '', 'info': {},
             'lock': None, 'layout': 'source', 'adds': {'flake': [], 'plain': []}}, {})
        runs.append(reuse)

    def argv_of(args):
        return ['nix', 'eval'] + list(args)
    first = runs[0].command(ref, 'x: x', 'M1', 'S1', argv_of)
    second = runs[1].command(ref, 'x: x', 'M2', 'S2', argv_of)
    places = [os.path.dirname(log) for _argv, _env, log in (first, second)]
    assert places[0] != places[1]
    assert all(os.stat(place).st_mode & 0o777 == 0o700 for place in places)
    # the first run is done with its evaluator: its place goes, the other's stays
    runs[0].finished(ref, first[2], 'M1', 'S1', [])
    assert not os.path.exists(places[0])
    assert os.path.isdir(second[1]['NIX_CACHE_HOME'])


def test_a_host_changed_only_through_a_neighbour_gets_a_record_of_its_own(tmp_path):
    """Six cheap hosts share one evaluator, so each host's record holds what
    the hosts before it read. A commit to b's file sends the hosts after b
    back to be evaluated (their records named b's file); each is then
    evaluated alone, so from the next commit on a one-file commit evaluates
    only the host that reads that file."""
    flake = Flake(str(tmp_path))
    for name in 'abcd':
        flake.write('hosts/%s.nix' % name, '{ self }: { v = builtins.readFile ../files/%s.txt; }\n'
                    % name)
        flake.write('files/%s.txt' % name, name)
    for name in 'ef':
        flake.write('hosts/%s.nix' % name, '{ self }: { v = builtins.readFile ../files/%s.txt; }\n'
                    % name)
        flake.write('files/%s.txt' % name, name)
    flake.commit('six hosts')
    first, figures = flake.run(workers=1)
    assert how(first) == dict.fromkeys('abcdef', 'evaluated')
    assert figures['processes'] == 1, figures
    flake.write('files/b.txt', 'B')
    flake.commit('b')
    entries, figures = flake.run(workers=1)
    # c-f read nothing that changed: only b, before them in their process, did
    assert how(entries) == dict(a='reused', b='evaluated', c='evaluated', d='evaluated',
                                e='evaluated', f='evaluated'), entries
    # b and one process for each of the four hosts after it
    assert figures['processes'] >= 5, figures
    for name in 'dcf':
        flake.write('files/%s.txt' % name, name.upper() + '2')
        flake.commit(name)
        entries, _figures = flake.run(workers=1)
        assert how(entries) == dict((n, 'evaluated' if n == name else 'reused')
                                    for n in 'abcdef'), (name, entries)


def test_a_role_change_then_only_the_roles_hosts(tmp_path):
    """Eight cheap hosts in two evaluators of four, a role module imported by
    a, c and g (a first in its evaluator: its first segment holds the role,
    as it holds what every host shares). The first change to the role also
    sends back the hosts after a role host in its evaluator, each alone;
    from the second change on, only the role's hosts are evaluated."""
    flake = Flake(str(tmp_path))
    for name in 'abcdefgh':
        role = 'role = import ../roles/web.nix; ' if name in 'acg' else ''
        flake.write('hosts/%s.nix' % name, '{ self }: { %sv = builtins.readFile ../files/%s.txt; }\n'
                    % (role, name))
        flake.write('files/%s.txt' % name, name)
    flake.commit('eight hosts')
    first, figures = flake.run(workers=2)
    assert figures['processes'] == 2, figures
    flake.write('roles/web.nix', '"web2"\n')
    flake.commit('web 2')
    entries, _figures = flake.run(workers=2)
    assert set(n for n, h in how(entries).items() if h == 'evaluated') >= set('acg'), entries
    for step in (3, 4):
        flake.write('roles/web.nix', '"web%d"\n' % step)
        flake.commit('web %d' % step)
        entries, _figures = flake.run(workers=2)
        assert how(entries) == dict((n, 'evaluated' if n in 'acg' else 'reused')
                                    for n in 'abcdefgh'), (step, entries)
