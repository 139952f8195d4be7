"""Bad input: each case fails clearly, naming the host, and runs nothing on a
host that it should not (no copy, no activation, its system unchanged).

Some cases use a static inventory (the lab's connection vars plus nix_flake /
nix_attr / nix_platform) so that the hosts exist while their flake or
attribute is broken; the others go through the nixdeploy.fleet.nix inventory
plugin, as users do.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.collection import BIN, ansible_env
from tests.deploy_fleet import lab_group_vars, write_inventory
from tests.faults.fleet import (ACTIVATE, COPY, EVAL, history, out_paths, summaries)
from tests.lab.fixtures import FleetFlake

pytestmark = [pytest.mark.faults, pytest.mark.lab]


def static_inventory(flt, hosts, known_hosts=None):
    """{'all': ...} for ``hosts`` ({name: extra vars}); a name that is no lab
    host needs ``ansible_host`` in its vars."""
    lab = flt.lab
    entries = {}
    for name, extra in hosts.items():
        host_vars = lab.ansible_vars(name) if name in lab.hosts else {}
        if name in lab.hosts:
            host_vars.update(nix_flake=flt.flake.ref, nix_attr=flt.flake.attr(name))
        host_vars.update(extra)
        entries[name] = host_vars
    group_vars = lab_group_vars(lab, flt.secret)
    if known_hosts:
        group_vars['ansible_ssh_common_args'] = group_vars['ansible_ssh_common_args'].replace(
            lab.known_hosts, known_hosts)
        for host_vars in entries.values():
            host_vars.pop('ansible_ssh_common_args', None)
    return {'all': {'hosts': entries, 'vars': group_vars}}


def snapshot(flt, hosts):
    return dict((h, (flt.lab.active(h), len(history(flt.lab, h)))) for h in hosts)


def assert_untouched(flt, run, host, before, tasks=(COPY, ACTIVATE)):
    """Nothing ran on ``host``: no copy, no activation, same system."""
    for task in tasks:
        ran = [r['status'] for r in run.results(task, host) if r['status'] != 'skipped']
        assert not ran, (host, task, ran)
    assert snapshot(flt, [host]) == {host: before[host]}, host


def assert_failed_at(run, host, phase):
    summary = summaries(run)[host]
    assert summary['failed'] and not summary['rolled_back'], summary
    assert summary['phase'] == phase, summary
    assert summary['outcome'].startswith('FAILED at %s' % phase), summary
    # the summary the play prints has a line for the host with its outcome
    assert any(host in line and 'FAILED at' in line for line in run.stdout.splitlines()), \
        run.stdout[-3000:]
    return summary


def broken_copy(flt, tmp_path, name):
    path = str(tmp_path / name)
    shutil.copytree(flt.flake.path, path)
    return path


def test_malformed_flake(flt, tmp_path):
    bad = broken_copy(flt, tmp_path, 'malformed')
    with open(os.path.join(bad, 'flake.nix'), 'a') as handle:
        handle.write('\n{ this is = not ; nix\n')
    hosts = ['h1', 'h4']
    before = snapshot(flt, hosts)
    inventory = static_inventory(flt, dict((h, {'nix_flake': 'path:%s' % bad}) for h in hosts))
    run = flt.deploy(inventory=inventory)
    assert run.rc != 0, run
    for host in hosts:
        result = run.result(EVAL, host)
        assert result['status'] == 'failed', result
        msg = result['result']['msg']
        assert msg.startswith(host + ': ') and 'syntax error' in msg, result   # Nix's own words
        assert_failed_at(run, host, 'eval')
        assert_untouched(flt, run, host, before)


def test_malformed_flake_through_the_inventory_plugin(flt, tmp_path):
    bad = broken_copy(flt, tmp_path, 'malformed-inventory')
    with open(os.path.join(bad, 'flake.nix'), 'a') as handle:
        handle.write('\n{ this is = not ; nix\n')
    before = snapshot(flt, flt.lab.hosts)
    flake = FleetFlake(bad, flt.flake.data)
    inventory = write_inventory(str(tmp_path / 'inventory'), flt.lab, flake, flt.secret)
    # Ansible's default only warns about an inventory it cannot parse and then
    # matches no hosts (exit 0): fleets should set [inventory] unparsed_is_failed
    run = flt.deploy(inventory=inventory, env={'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True'})
    assert run.rc != 0, run
    text = run.stdout + run.stderr
    # Nix's message, where (file and line) and which inventory source
    assert 'syntax error' in text and 'flake.nix:14' in text, text[-3000:]
    assert os.path.join(inventory, 'fleet.nix.yml') in text, text[-3000:]
    assert not run.records  # no task ran anywhere
    assert snapshot(flt, flt.lab.hosts) == before


def test_missing_attribute(flt):
    before = snapshot(flt, ['h1', 'h5'])
    inventory = static_inventory(flt, {
        'h1': {'nix_attr': 'nixosConfigurations.nope.config.system.build.toplevel'},
        'h5': {}})
    run = flt.deploy(inventory=inventory)
    assert run.rc != 0, run
    result = run.result(EVAL, 'h1')
    assert result['status'] == 'failed', result
    msg = result['result']['msg']
    assert msg.startswith('h1: ') and 'nixosConfigurations.nope' in msg, msg
    assert "no 'nope'" in msg or "attribute 'nope' missing" in msg, msg
    assert_failed_at(run, 'h1', 'eval')
    assert_untouched(flt, run, 'h1', before)
    # the good host in the same batch is not held back
    assert summaries(run)['h5']['outcome'] == 'unchanged', summaries(run)


def test_unknown_platform(flt, tmp_path):
    # static inventory: the host exists, its platform is nonsense
    before = snapshot(flt, ['h5'])
    inventory = static_inventory(flt, {'h5': {'nix_platform': 'plan9'}})
    inventory['all']['hosts']['h5'].pop('nix_attr')
    run = flt.deploy(inventory=inventory)
    assert run.rc != 0, run
    # refused before anything runs (the first task, nix_eval: the deploy
    # playbook leaves argument checks to the modules), for this host, naming
    # the platforms there are
    failed = [r for r in run.results(host='h5') if r['status'] == 'failed']
    assert failed and failed[0]['task'].endswith('Evaluate the system of each host'), run
    msg = failed[0]['result']['msg']
    assert msg.startswith('h5: ') and 'plan9' in msg, run
    assert all(name in msg for name in ('nixos', 'darwin', 'nix-on-droid', 'home-manager')), msg
    assert_untouched(flt, run, 'h5', before)
    # inventory plugin: the node is left out with a warning that names it
    path = broken_copy(flt, tmp_path, 'plan9')
    data = json.loads(json.dumps(flt.flake.data))
    data['hosts']['h5']['extra'] = {'platform': 'plan9'}
    flake = FleetFlake(path, data)
    flake.save()
    inventory = write_inventory(str(tmp_path / 'inventory'), flt.lab, flake, flt.secret)
    run = flt.deploy('-l', 'h5,h7', inventory=inventory)
    text = run.stdout + run.stderr
    assert 'h5' in text and "unknown platform 'plan9'" in text, text[-3000:]
    assert not run.results(host='h5')
    assert_untouched(flt, run, 'h5', before)


def pwned_files(flt, tmp_path, lab_hosts):
    """Files named pwned-* that a name, tag or role run as code would have
    made (a relative ``touch``: host names hold no '/') in a shell's folder:
    the controller's test and run folders and this checkout, the hosts'."""
    tops = [str(tmp_path), flt.workdir, os.getcwd()] + [
        flt.lab.host(h)['dir'] for h in lab_hosts]
    return sorted(os.path.join(top, p) for top in tops
                  for p in tree(top, ('nix/store', '.git', '.venv', '.venv-current'))
                  if os.path.basename(p).startswith('pwned-'))


def test_metacharacters_in_names_and_tags_stay_data(flt, tmp_path):
    # host names hold no '/' (the inventory refuses it): the payloads touch
    # relative names, looked for in every folder a shell of the run starts in
    evil_a = 'a$(touch pwned-1)`touch pwned-2`;touch pwned-3'
    evil_b = "b{{ lookup('pipe', 'touch pwned-4') }}'\"&|"
    marks = 'pwned'
    lab = flt.lab
    hosts = {}
    for name, lab_host, cfg in ((evil_a, 'h7', 'evila'), (evil_b, 'h8', 'evilb')):
        host = lab.host(lab_host)
        hosts[name] = {'address': host['address'], 'user': host['ssh_user'], 'platform': 'nixos',
                       'configuration': cfg,
                       'tags': ['x;touch %s-5' % marks, '$(touch %s-6)' % marks,
                                "{{ lookup('pipe', 'touch %s-7') }}" % marks],
                       'role': "r{{ lookup('pipe', 'touch %s-8') }}" % marks}
    flake = FleetFlake.write(str(tmp_path / 'evil-flake'), hosts,
                             configurations={'evila': {'platform': 'nixos', 'version': 'evil'},
                                             'evilb': {'platform': 'nixos', 'version': 'evil'}})
    inventory = write_inventory(str(tmp_path / 'inventory'), lab, flake, flt.secret)
    listing = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', inventory, '--list'],
                             check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, env=ansible_env())
    # GC roots of its own: the names hold "/" (test_hostile_host_names_stay_inside_their_folders)
    run = flt.deploy('-e', 'nix_gc_root_dir=%s' % (tmp_path / 'gcroots'), inventory=inventory)
    # whatever the outcome, nothing was executed from a name, tag or role
    assert pwned_files(flt, tmp_path, ('h7', 'h8')) == [], run
    assert run.rc == 0, (run, listing.stdout[-2000:], listing.stderr[-2000:])
    paths = out_paths(run)
    assert sorted(paths) == sorted([evil_a, evil_b]), run
    assert lab.active('h7') == paths[evil_a] and lab.active('h8') == paths[evil_b]
    outcomes = dict((h, s['outcome']) for h, s in summaries(run).items())
    assert outcomes == {evil_a: 'switched', evil_b: 'switched'}, outcomes
    # put h7 and h8 back on the fleet's own systems
    assert flt.deploy('-l', 'h7,h8').rc == 0


def test_unreachable_host(flt):
    lab = flt.lab
    ghost = '%s.%d.250' % ('.'.join(lab.bridge_address.split('.')[:2]), lab.state['index'])
    before = snapshot(flt, ['h5'])
    inventory = static_inventory(flt, {'h5': {}, 'ghost': dict(
        lab.ansible_vars('h5'), ansible_host=ghost, nix_flake=flt.flake.ref,
        nix_attr=flt.flake.attr('h5'))})
    run = flt.deploy(inventory=inventory)
    # the login probe beside the evaluation reached it nowhere: Ansible's
    # unreachable (exit code 4), named with the address and ssh's reason,
    # before anything was built or copied for it
    assert run.rc == 4, run
    assert re.search(r'ghost\s+: ok=0 .*unreachable=1 +failed=0', run.stdout), run.stdout[-2000:]
    assert 'UNREACHABLE: ghost is unreachable at %s: ' % ghost in run.stdout, run.stdout[-3000:]
    summary = summaries(run)
    assert summary['h5']['outcome'] == 'unchanged', summary
    assert snapshot(flt, ['h5']) == before


def test_changed_host_key(flt, tmp_path):
    lab = flt.lab
    flt.new_version(['h5'])
    before = snapshot(flt, ['h5', 'h7'])
    # h5 now presents a key the controller has never seen
    other = str(tmp_path / 'other_key')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', other], check=True)
    with open(other + '.pub') as handle:
        fake = ' '.join(handle.read().split()[:2])
    known = str(tmp_path / 'known_hosts')
    with open(lab.known_hosts) as handle:
        lines = [ln for ln in handle if not ln.startswith(lab.host('h5')['address'] + ' ')]
    with open(known, 'w') as handle:
        handle.writelines(lines + ['%s %s\n' % (lab.host('h5')['address'], fake)])
    inventory = static_inventory(flt, {'h5': {}, 'h7': {}}, known_hosts=known)
    run = flt.deploy(inventory=inventory)
    assert run.rc != 0, run
    summary = summaries(run)
    assert summary['h5']['failed'], summary['h5']
    # the login probe refuses it (keys are checked): before its build, so no
    # copy is tried; had an ssh master of an earlier run answered the probe,
    # the copy's own ssh (Ansible's or nix copy's) would refuse it
    said = json.dumps([r['result'] for r in run.results(EVAL, 'h5') + run.results(COPY, 'h5')])
    assert any(words in said for words in (
        'the host key changed', 'REMOTE HOST IDENTIFICATION HAS CHANGED',
        'Host key verification failed')), said[-2000:]
    assert_untouched(flt, run, 'h5', before, tasks=(ACTIVATE,))
    assert summary['h7']['outcome'] == 'unchanged', summary
    # with the right key the same deploy goes through
    run = flt.deploy('-l', 'h5')
    assert run.rc == 0, run
    assert lab.active('h5') == out_paths(run)['h5']


# Where a deploy may write on a target (relative to the host's folder): the
# collection's state folders (root's, and the user's XDG one), Nix's own, the
# lab's records. Anything else a run makes there is out of place.
TARGET_FOLDERS = ('nix/var/nixdeploy/', 'home/app/.local/state/nixdeploy/', 'nix/var/nix/',
                  'home/app/.local/state/nix/', 'nix/var/lab/')
HOSTILE = {'../evil': ('h8', 'nixos', 'evil'), 'a/b': ('h4', 'home-manager', 'ab'),
           'ok': ('h7', 'nixos', 'ok')}


def tree(top, skip=()):
    """Every path under ``top`` (relative), but the ``skip`` folders'."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel, d)) not in skip]
        found.update(os.path.normpath(os.path.join(rel, n)) for n in dirnames + filenames)
    return found


def raw_pieces(paths):
    """Paths one of whose parts is a piece of a hostile name as is."""
    return sorted(p for p in paths if set(p.split(os.sep)) & {'..', 'evil', 'a', 'b'})


def test_hostile_host_names_stay_inside_their_folders(flt, tmp_path):
    """'../evil' (NixOS, root: /nix/var/nixdeploy) and 'a/b' (home-manager,
    app: its XDG state folder) are refused by the inventory (a host name
    holds no '/'), beside 'ok', which deploys; nothing they name lands
    anywhere, on the controller (GC roots, the run's folders) or on the
    targets."""
    lab = flt.lab
    hosts = {}
    for name, (lab_host, platform, cfg) in HOSTILE.items():
        host = lab.host(lab_host)
        hosts[name] = {'address': host['address'], 'user': host['ssh_user'],
                       'platform': platform, 'configuration': cfg}
    flake = FleetFlake.write(str(tmp_path / 'flake'), hosts, configurations=dict(
        (cfg, {'platform': platform, 'version': 'hostile'})
        for _lab_host, platform, cfg in HOSTILE.values()))
    inventory = write_inventory(str(tmp_path / 'inventory'), lab, flake, flt.secret)
    roots = tmp_path / 'roots' / 'gc'
    targets = dict((lab_host, lab.host(lab_host)['dir']) for lab_host, _p, _c in HOSTILE.values())
    skip = ('nix/store', 'log', 'run', 'power', 'machine')
    before = dict((h, tree(d, skip)) for h, d in targets.items())
    # the controller's temp folder (Ansible's local temp is in it): its top
    seen = set(os.listdir('/tmp'))
    try:
        run = flt.deploy('-e', 'nix_gc_root_dir=%s' % roots, inventory=inventory)
        assert run.rc == 0, run
        paths = out_paths(run)
        assert sorted(paths) == ['ok'], run
        assert lab.active('h7') == paths['ok']
        text = run.stdout + run.stderr
        for name in ('../evil', 'a/b'):
            assert "refused host name '%s'" % name in text, text[-3000:]
            assert not run.results(host=name), name
        # the controller: GC roots directly in their fleet's folder, nothing else
        assert not (tmp_path / 'roots' / 'evil').exists()
        assert [p for p in roots.rglob('*')
                if not (p.parent == roots and p.is_dir() and not p.is_symlink())
                and not (p.parent.parent == roots and p.is_symlink())] == []
        assert raw_pieces(tree(str(tmp_path))) == []
        assert raw_pieces(tree(flt.workdir)) == []
        assert raw_pieces(set(os.listdir('/tmp')) - seen) == []
        # the targets: only the state folders got anything, and nothing there
        # is a piece of a name
        for name, (lab_host, platform, _cfg) in HOSTILE.items():
            new = tree(targets[lab_host], skip) - before[lab_host]
            # the run's own records are seen where they belong, for 'ok' only
            state = TARGET_FOLDERS[1 if platform == 'home-manager' else 0]
            assert any(p.startswith(state) for p in new) == (name == 'ok'), (name, sorted(new))
            assert [p for p in new if not any(
                (p + '/').startswith(f) for f in TARGET_FOLDERS)] == [], (name, sorted(new))
            assert raw_pieces(new) == [], (name, sorted(new))
    finally:
        # the hosts back on the fleet's own systems
        assert flt.deploy('-l', ','.join(sorted(targets))).rc == 0
