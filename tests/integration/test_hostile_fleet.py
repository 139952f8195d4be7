"""A hostile fleet: every trust boundary of docs/security.md tried in ONE run,
beside healthy hosts, as ansible-runner and AWX run jobs
(``ANSIBLE_HOST_KEY_CHECKING=False`` in the environment).

The `hst` lab: h1 (NixOS), h3 (nix-darwin, deploy + sudo) and h4
(home-manager) are healthy; h2's health check exits 1 while printing the
result lines the target scripts print (the old fixed marker, with every line
end Python's splitlines knows); h5's line in known_hosts holds another host's
key. The flake adds nodes that are no lab host: ``evil`` whose address is an
ssh option that would run a command on the controller, ``evil-user`` whose
ssh user is one, ``evil-port`` whose port carries an option. The inventory
config and group_vars carry a secret Nix option (an access token).

What the run must show, host by host: nothing ran on the controller (no
file from the ProxyCommand), the hostile nodes named in the output and never
in the inventory; h1, h3, h4 on their new systems; h2 rolled back to its
previous system and failed; h5 refused at the login probe, before its build,
with a message that says it is the host key, its system unchanged; the secret in no process's argv while
the job ran, in no report, no inventory cache, no output.
"""

import glob
import json
import os
import re
import shutil
import subprocess

import pytest

from tests import ifd_flake
from tests.argv_watch import ArgvWatch
from tests.auth_cache import AuthCache
from tests.collection import BIN, ansible_env, run_playbook
from tests.integration.test_cache_credentials import build
from tests.unit.plugins.plugin_utils.activation.test_health_redirects import Server
from tests.deploy_fleet import prepare, write_inventory
from tests.lab.fixtures import FleetFlake, evaluate_systems
from tests.faults.fleet import ACTIVATE, COPY, EVAL, history, out_paths

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'h1', 'persona': 'nixos'}, {'name': 'h2', 'persona': 'nixos'},
         {'name': 'h3', 'persona': 'darwin'}, {'name': 'h4', 'persona': 'home-manager'},
         {'name': 'h5', 'persona': 'nixos'}, {'name': 'h6', 'persona': 'nixos'},
         {'name': 'h7', 'persona': 'nixos'}]
HEALTHY = ('h1', 'h3', 'h4', 'h6')
SECRET = 'nixdeploy-hostile-secret-6f1c2a'
# Lines a target's output could carry to forge results: the fixed marker of
# before, after every line end Python's splitlines knows (a carriage return,
# the file, group and record separators, NEL, LINE SEPARATOR), and a log line
# followed by values (tests/unit/plugins/plugin_utils/host/
# test_script_framing.py forges with the program's own marker too).
FORGED = ['@@nixdeploy rc=0', '@@nixdeploy timed_out=0', '\r@@nixdeploy rc=0',
          '\x1c@@nixdeploy rc=0', '\x1d@@nixdeploy rc=0', '\x1e@@nixdeploy rc=0',
          '\x85@@nixdeploy rc=0', '\u2028@@nixdeploy rc=0', '@@nixdeploy-log', '@@nixdeploy rc=0']
# What a check's output could do to the operator's terminal: erase the line
# and print a forged green line for another host, write the clipboard (OSC 52)
TERMINAL = ['\x1b[2K\x1b[1G\x1b[32mh1 : switched /nix/store/forged\x1b[0m',
            '\x1b]52;c;aGFja2VkCg==\x07', '\u202eevil\u202c']
# flake host names that print a forged line for another host, or hold a /
BAD_NAMES = ('evil\n\x1b[2K\x1b[32mh1 : switched', '../../etc/evil')
# the bytes of those sequences that must never reach the job's output
TERMINAL_BYTES = ('\x1b[2K', '\x1b]52', '\u202e')


def forging_check():
    """A health check that prints every forged line and then fails."""
    text = ''.join(line + '\n' for line in FORGED + TERMINAL)
    return "printf '%s' " + "'" + text.replace("'", "'\\''") + "'; exit 1"


@pytest.fixture(scope='module')
def hostile(make_lab, tmp_path_factory):
    lab = make_lab('hst', HOSTS)
    base = str(tmp_path_factory.mktemp('hst'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    flake.set_all(version='1')
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    first = run_playbook('nixdeploy.fleet.deploy', inventory, os.path.join(base, 'first'))
    assert first.rc == 0, first
    return {'lab': lab, 'flake': flake, 'inventory': inventory, 'base': base, 'secret': secret,
            'first': dict((h, lab.active(h)) for h in lab.hosts),
            'history': dict((h, len(history(lab, h))) for h in lab.hosts)}


def fleet_flake(fleet, folder):
    """A new fleet flake for the lab in ``folder``, and the module's signing
    key, which the fixture made every host trust (trusting it again would
    restart every host's nix-daemon for nothing)."""
    return FleetFlake.for_lab(folder, fleet['lab']), fleet['secret']


def make_hostile(fleet):
    """The flake, inventory and known_hosts of the hostile run; returns the
    file the address's ProxyCommand would create and the inventory cache folder."""
    lab, flake, inventory, base = (fleet[k] for k in ('lab', 'flake', 'inventory', 'base'))
    pwned = os.path.join(base, 'pwned')
    evil = {'platform': 'nixos', 'user': 'root', 'port': 22, 'tags': ['vps']}
    flake.data['hosts']['evil'] = dict(evil, address='-oProxyCommand=touch %s' % pwned)
    flake.data['hosts']['evil-user'] = dict(evil, address=lab.host('h1')['address'],
                                            user='-oProxyCommand=touch %s' % pwned)
    flake.data['hosts']['evil-port'] = dict(evil, address=lab.host('h1')['address'],
                                            port='22 -oProxyCommand=touch %s' % pwned)
    # names that would act on the operator's terminal, or on a file path
    for name in BAD_NAMES:
        flake.data['hosts'][name] = dict(evil, address=lab.host('h1')['address'])
    for name in ('evil', 'evil-user', 'evil-port') + BAD_NAMES:
        flake.data['hosts'][name]['configuration'] = name
        flake.data['configurations'][name] = {'platform': 'nixos', 'behaviour': 'ok'}
    flake.set_all(version='2')
    # h5's known_hosts line holds h1's key: the host answers with another key
    known = os.path.join(base, 'known_hosts')
    keys = dict(line.split(' ', 1) for line in open(lab.known_hosts).read().splitlines())
    with open(known, 'w') as handle:
        for host in lab.hosts.values():
            key = keys[lab.host('h1')['address']] if host['name'] == 'h5' else keys[host['address']]
            handle.write('%s %s\n' % (host['address'], key))
    cache = os.path.join(base, 'inventory-cache')
    config_path = os.path.join(inventory, 'fleet.nix.yml')
    with open(config_path) as handle:
        config = json.load(handle)
    config.update(cache=True, cache_plugin='ansible.builtin.jsonfile', cache_connection=cache,
                  nix_options={'substituters': '', 'access-tokens': 'example.invalid=%s' % SECRET})
    with open(config_path, 'w') as handle:
        json.dump(config, handle)
    group_vars_path = os.path.join(inventory, 'group_vars', 'all.yml')
    with open(group_vars_path) as handle:
        group_vars = json.load(handle)
    group_vars['ansible_ssh_common_args'] = group_vars['ansible_ssh_common_args'].replace(
        lab.known_hosts, known)
    # what a job under ansible-runner needs to keep checking host keys
    group_vars['ansible_host_key_checking'] = True
    group_vars['nix_options'] = {'substituters': '',
                                 'access-tokens': 'example.invalid=%s' % SECRET}
    with open(group_vars_path, 'w') as handle:
        json.dump(group_vars, handle)
    host_vars = os.path.join(inventory, 'host_vars')
    os.makedirs(host_vars, exist_ok=True)
    with open(os.path.join(host_vars, 'h2.yml'), 'w') as handle:
        json.dump({'nix_health_checks': [{'name': 'forger', 'retries': 0,
                                          'command': forging_check()}],
                   'nix_confirm_timeout': 15}, handle)
    return pwned, cache


def redirecting_check(fleet, target, internal):
    """h7's http check asks its health endpoint (``target``, which stands for
    the host's own web server), which redirects to ``internal``: an address
    the controller reaches and the target should never make it fetch."""
    target.answers['/health'] = (302, {'Location': internal.base + '/latest/meta-data'}, '')
    with open(os.path.join(fleet['inventory'], 'host_vars', 'h7.yml'), 'w') as handle:
        json.dump({'nix_health_checks': [{'name': 'redirected', 'retries': 1, 'interval': 1,
                                          'http': {'url': target.base + '/health'}}],
                   'nix_confirm_timeout': 15}, handle)


def cache_with_a_password(fleet, folder):
    """h4 fetches its new system from a cache that asks for a login, whose
    password holds SECRET: the watcher looks for it in every argv."""
    subprocess.run(['nix', '--extra-experimental-features', 'nix-command flakes',
                    '--option', 'substituters', '', 'copy', '--to',
                    'file://%s?secret-key=%s' % (folder, fleet['secret']),
                    build(fleet['flake'], 'h4')], check=True, stderr=subprocess.PIPE)


EVIL_FLAKE = """{
  outputs = { self }: {
    x = derivation { name = "%s"; system = "x86_64-linux"; builder = "/bin/sh";
                     args = [ "-c" "echo pwned > $out" ]; };
  };
}
"""


def controller_store_names(needle):
    """The paths of this controller's store whose name holds ``needle``."""
    return [name for name in os.listdir('/nix/store') if needle in name]


def point_generation_at_a_flake(fleet):
    """h6's current generation link names a flake on the controller (any
    process of the profile's owner can write that link; on home-manager and
    nix-on-droid hosts that is the deploy user). Returns the name of the
    flake's derivation: if the controller ever evaluated or built it, a path
    of that name is in its store."""
    lab, base = fleet['lab'], fleet['base']
    needle = 'nixdeploy-evil-%d' % os.getpid()
    folder = os.path.join(base, 'evil-flake')
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'flake.nix'), 'w') as handle:
        handle.write(EVIL_FLAKE % needle)
    profile = '/nix/var/nix/profiles/system'
    link = lab.run_in('h6', ['readlink', profile]).stdout.strip()
    generation = os.path.join(os.path.dirname(profile), link)
    lab.run_in('h6', ['ln', '-sfn', 'path:%s#x' % folder, generation])
    return needle


def test_hostile_fleet_deploys_only_what_it_should(hostile):
    lab, base = hostile['lab'], hostile['base']
    pwned, cache = make_hostile(hostile)
    needle = point_generation_at_a_flake(hostile)
    # the preview (AWX's "Show Changes") of the host whose link names a flake
    preview = run_playbook('nixdeploy.fleet.deploy', hostile['inventory'],
                           os.path.join(base, 'preview'), args=['--check', '--diff', '-l', 'h6'],
                           env={'ANSIBLE_HOST_KEY_CHECKING': 'False'})
    assert not controller_store_names(needle), preview
    previewed = preview.result(ACTIVATE, 'h6')['result']
    assert previewed['previous']['path'] is None, previewed
    said = preview.stdout + preview.stderr + json.dumps(previewed.get('warnings') or [])
    assert "prev_path: not a store path: 'path:" in said, said[-3000:]
    reports = os.path.join(base, 'reports')
    env = {
        # as ansible-runner puts it into every job's environment
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_CALLBACKS_ENABLED': 'record,nixdeploy.fleet.summary,nixdeploy.fleet.report',
        'NIXDEPLOY_REPORT_DIR': reports,
    }
    cache_password = 'cachepw-' + SECRET
    folder = os.path.join(base, 'binary-cache')
    cache_with_a_password(hostile, folder)
    internal = Server('127.0.0.2', {'/latest/meta-data': (200, {}, 'internal secret\n')})
    target = Server('127.0.0.1', {})
    redirecting_check(hostile, target, internal)
    try:
        with AuthCache(folder, 'deploy', cache_password, lab.bridge_address) as binary_cache:
            with open(os.path.join(hostile['inventory'], 'host_vars', 'h4.yml'), 'w') as handle:
                json.dump({'nix_copy_mode': 'cache',
                           'nix_caches': [binary_cache.url_with('deploy', cache_password)]},
                          handle)
            with ArgvWatch(SECRET) as watch:
                run = run_playbook('nixdeploy.fleet.deploy', hostile['inventory'],
                                   os.path.join(base, 'hostile'), args=['--diff'], env=env)
            fetched = [path for path in binary_cache.served() if path.startswith('/nar/')]
    finally:
        target.close()
        internal.close()
    assert run.rc != 0, run
    output = run.stdout + run.stderr

    # the flake's data ran nothing on the controller and reached no host
    assert not os.path.exists(pwned), run
    assert not run.results(host=BAD_NAMES[0]) and not run.results(host=BAD_NAMES[1]), run
    assert 'evil\\n\\x1b[2K' in output and '../../etc/evil' in output, output[-4000:]
    for name in ('evil', 'evil-user', 'evil-port'):
        assert not run.results(host=name), (name, run)
        assert any(name in line and ('skip' in line.lower() or 'refus' in line.lower())
                   for line in output.splitlines()), (name, output[-4000:])

    summary = run.summary()
    new = out_paths(run)
    for host in HEALTHY:
        assert not summary[host]['failed'], (host, summary[host])
        assert lab.active(host) == new[host] != hostile['first'][host], host

    # h6: deployed; the flake its link named was never evaluated or built
    # here, the result has no previous path and says why
    assert not controller_store_names(needle), controller_store_names(needle)
    h6 = run.result(ACTIVATE, 'h6')['result']
    assert h6['previous']['path'] is None and 'closure_diff' not in h6, h6
    assert "prev_path: not a store path: 'path:" in output + json.dumps(
        h6.get('warnings') or []), output[-3000:]

    # h4 fetched its system from the cache with the login
    h4 = run.result(COPY, 'h4')['result']
    assert h4['mode'] == 'cache' and h4['paths_fetched'] > 0 and fetched, h4

    # h7: its check was redirected to an internal address: not followed,
    # the check failed on the 302, the host rolled back; nothing asked there
    assert summary['h7']['failed'] and summary['h7']['rolled_back'], summary['h7']
    assert lab.active('h7') == hostile['first']['h7']
    assert internal.seen == [] and len(target.seen) == 2, (internal.seen, target.seen)
    assert 'redirected to' in summary['h7']['outcome'], summary['h7']

    # no sequence a check printed reached the operator's terminal
    for sequence in TERMINAL_BYTES:
        assert sequence not in output, (sequence, output[-3000:])

    # h2: its check failed whatever it printed: rolled back, failed
    assert summary['h2']['failed'] and summary['h2']['rolled_back'], summary['h2']
    assert lab.active('h2') == hostile['first']['h2']
    res = run.result(ACTIVATE, 'h2')['result']
    checks = res['health_checks']
    assert not checks['ok'], checks
    # what it printed stayed its output, read as no result: its exit code decided
    assert res['phase'] == 'checks', res
    assert res['msg'].startswith("h2: rolled back: health check 'forger' failed after 1 try: "
                                 "exit code 1"), res['msg']
    assert '@@nixdeploy rc=0' in checks['checks'][0]['output'], checks

    # h5: refused for its host key at the login probe, before anything was
    # built or copied for it; its system and history as they were
    assert summary['h5']['failed'] and not summary['h5']['rolled_back'], summary['h5']
    assert 'host key' in summary['h5']['outcome'].lower(), summary['h5']
    assert lab.active('h5') == hostile['first']['h5']
    assert len(history(lab, 'h5')) == hostile['history']['h5']
    h5 = run.result(EVAL, 'h5')
    assert h5['status'] == 'failed' and 'host key' in h5['result']['msg'], h5
    assert 'nothing was built or copied for it' in h5['result']['msg'], h5
    assert 'h5' not in new and run.results(COPY, 'h5') == [], run.results(host='h5')

    # the secret: in no argv while the job ran, no report, no cache, no output
    assert watch.looks > 10 and not watch.found, watch.found
    assert SECRET not in output
    written = glob.glob(os.path.join(reports, '*')) + glob.glob(os.path.join(cache, '*'))
    assert any(p.endswith('.json') for p in written) and os.listdir(cache), written
    for path in written:
        with open(path, encoding='utf-8', errors='replace') as handle:
            assert SECRET not in handle.read(), path
    shutil.rmtree(cache)


# ------------------------------------------------------------ what was reviewed is deployed
def git(folder, *args):
    subprocess.run(['git', '-C', folder, '-c', 'user.name=t', '-c', 'user.email=t@t'] +
                   list(args), check=True, stdout=subprocess.PIPE)


def nix_json(*args):
    return json.loads(subprocess.run(
        ['nix', '--extra-experimental-features', 'nix-command flakes', '--option',
         'substituters', ''] + list(args), check=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True).stdout)


def writing_nix(folder, flake_dir, later):
    """A ``nix`` that, right after the run's first ``nix flake metadata``,
    writes ``later`` over the flake's fleet.json: a second job, a generator or
    an editor writing the work tree while the run evaluates."""
    path = os.path.join(folder, 'nix')
    marker = os.path.join(folder, 'written')
    with open(path, 'w') as handle:
        handle.write('#!/bin/sh\n/usr/bin/nix "$@"; rc=$?\n'
                     'case "$1 $2" in "flake metadata")\n'
                     '  [ -e %(marker)s ] || { cp %(later)s %(data)s; : > %(marker)s; } ;;\n'
                     'esac\nexit $rc\n' % {'marker': marker, 'later': later,
                                           'data': os.path.join(flake_dir, 'fleet.json')})
    os.chmod(path, 0o755)
    return path, marker


def test_what_was_reviewed_is_what_is_deployed(hostile):
    """The fleet deploys from a git work tree with uncommitted changes (the
    reviewed content), and the tree is written during the evaluation; h2
    evaluates with ``--impure`` in nix_args. Every host gets the reviewed
    system, each result and the report name that content; nothing impure is
    cached. A second run: every entry the first stored is a hit with the
    reviewed answer (none poisoned), and h1's entry, forged to name h3's
    system beside h1's derivation, is a miss. A third run whose cache name
    another account planted as a link uses no cache and says so once."""
    lab, base = hostile['lab'], hostile['base']
    work = os.path.join(base, 'reviewed')
    flake, secret = fleet_flake(hostile, os.path.join(work, 'flake'))
    flake.set_all(version='3')
    git(flake.path, 'init', '-q')
    git(flake.path, 'add', '-A')
    git(flake.path, 'commit', '-qm', 'three')
    later = os.path.join(work, 'later.json')
    flake.set_all(version='5')
    shutil.copy(os.path.join(flake.path, 'fleet.json'), later)
    flake.set_all(version='4')   # reviewed, not committed
    ref = 'git+file://%s' % flake.path
    # every host's system of the reviewed tree, as plain Nix evaluates it (one process)
    expected = dict((h, paths['outPath']) for h, paths in evaluate_systems(
        ref, dict((h, flake.attr(h)) for h in lab.hosts)).items())
    reviewed_hash = nix_json('flake', 'metadata', '--json', ref)['locked']['narHash']
    inventory = write_inventory(os.path.join(work, 'inventory'), lab, flake, secret)
    nix, written = writing_nix(work, flake.path, later)
    with open(os.path.join(inventory, 'group_vars', 'all.yml')) as handle:
        group_vars = json.load(handle)
    group_vars['nix_bin'] = nix
    with open(os.path.join(inventory, 'group_vars', 'all.yml'), 'w') as handle:
        json.dump(group_vars, handle)
    os.makedirs(os.path.join(inventory, 'host_vars'))
    with open(os.path.join(inventory, 'host_vars', 'h2.yml'), 'w') as handle:
        json.dump({'nix_args': ['--impure']}, handle)
    cache = os.path.join(work, 'eval-cache')
    reports = os.path.join(work, 'reports')
    env = {'NIXDEPLOY_EVAL_CACHE': cache, 'NIXDEPLOY_REPORT_DIR': reports,
           'ANSIBLE_CALLBACKS_ENABLED': 'record,nixdeploy.fleet.summary,nixdeploy.fleet.report'}

    first = run_playbook('nixdeploy.fleet.deploy', inventory, os.path.join(work, 'first'),
                         env=env)
    assert first.rc == 0, first
    assert os.path.exists(written)   # the tree was written during the run
    assert out_paths(first) == expected
    for host in lab.hosts:
        assert lab.active(host) == expected[host], host
        source = first.result(EVAL, host)['result']['source']
        assert source['dirty'] is True and source['revision'] is None, source
        assert source['nar_hash'] == reviewed_hash, source
        assert source['evaluated'].startswith('path:/nix/store/'), source
    with open(os.path.join(reports, 'nixdeploy-report.json')) as handle:
        (flake_record,) = json.load(handle)['runs'][0]['flakes']
    assert flake_record['nar_hash'] == reviewed_hash and flake_record['dirty'] is True
    # h2's nix_args are not its batch's: nothing evaluated --impure is
    # cached. The first host to ask sets the batch's options: a pure host
    # (the batch then evaluates h2's attribute purely too, and caches that)
    # or h2 (the batch is impure and cached nothing; the six others ask
    # again, purely). Either way one plain entry per pure host, beside its
    # reuse entry and the records (docs/eval-cache.md), and h2 at most one.
    entries = [n for n in os.listdir(cache) if n.endswith('.json')
               and not n.startswith(('chain-', 'checked-', 'distrust-'))
               and 'chain' not in _json_of(cache, n)]
    cached = [_json_of(cache, n)['out_path'] for n in entries]
    for host in lab.hosts:
        assert cached.count(expected[host]) in ((0, 1) if host == 'h2' else (1,)), (host, cached)
    assert len(cached) in (len(lab.hosts) - 1, len(lab.hosts)), cached

    # the reviewed content back in the tree; h1's entry forged to name h3's system
    flake.set_all(version='4')
    os.unlink(written)
    group_vars['nix_bin'] = 'nix'
    with open(os.path.join(inventory, 'group_vars', 'all.yml'), 'w') as handle:
        json.dump(group_vars, handle)
    forged = None
    for name in entries:
        with open(os.path.join(cache, name)) as handle:
            entry = json.load(handle)
        if entry['out_path'] == expected['h1']:
            forged = os.path.join(cache, name)
            with open(forged, 'w') as handle:
                json.dump(dict(entry, out_path=expected['h3']), handle)
    assert forged
    second = run_playbook('nixdeploy.fleet.deploy', inventory, os.path.join(work, 'second'),
                          env=env)
    assert second.rc == 0, second
    assert out_paths(second) == expected
    for host in lab.hosts:
        evaluated = second.result(EVAL, host)['result']
        # h1's forged entry is no hit: its answer comes from its reuse entry
        # (recorded reads, all the same), never from the forged file
        assert evaluated['answered'] == {'h1': 'reused', 'h2': 'evaluated'}.get(
            host, 'cached'), (host, evaluated)
        assert lab.active(host) == expected[host], host
    # not signed by the run's key: no hit (h1 was reused, above), and never
    # written over by the reused answer (a reuse is never kept as a plain
    # hit of the new content)
    if os.path.exists(forged):
        with open(forged) as handle:
            assert json.load(handle)['out_path'] == expected['h3']

    # another account plants the cache's name as a link to a folder it fills
    sticky = os.path.join(work, 'shared-tmp')
    os.makedirs(sticky)
    os.chmod(sticky, 0o1777)
    planted = os.path.join(work, 'planted')
    shutil.copytree(cache, planted)
    for name in os.listdir(planted):
        os.chown(os.path.join(planted, name), 65534, 65534)
    os.chown(planted, 65534, 65534)
    os.symlink(planted, os.path.join(sticky, 'cache'))
    os.lchown(os.path.join(sticky, 'cache'), 65534, 65534)
    before = sorted(os.listdir(planted))
    third = run_playbook('nixdeploy.fleet.deploy', inventory, os.path.join(work, 'third'),
                         args=['--check'], env=dict(env, NIXDEPLOY_EVAL_CACHE=os.path.join(
                             sticky, 'cache')))
    assert third.rc == 0, third
    assert out_paths(third) == expected
    assert not any(r['result'].get('from_cache') for r in third.results(EVAL))
    assert sorted(os.listdir(planted)) == before
    said = third.stdout + third.stderr
    assert said.count('is not used') == 1 and 'a link or no folder' in said, said[-3000:]


def test_a_failed_host_gets_no_system_of_another(hostile):
    """The attribute is templated per host from a variable of the task's own,
    not nix_attr (h1 deploys h5's configuration and h5 h1's): the batch forms
    every host's request from the first host's value, and h2's own attribute
    does not exist. h2 fails at its evaluation and keeps no facts of the
    batch's answer for it (another host's system), so the cascade that copies
    h1's and h5's systems leaves it out: its store gets nothing of theirs."""
    lab, base = hostile['lab'], hostile['base']
    work = os.path.join(base, 'own-facts')
    flake, secret = fleet_flake(hostile, os.path.join(work, 'flake'))
    flake.set_all(version='6')
    inventory = write_inventory(os.path.join(work, 'inventory'), lab, flake, secret)
    os.makedirs(os.path.join(inventory, 'host_vars'))
    chosen = {'h1': flake.attr('h5'), 'h2': 'nixosConfigurations.none.toplevel',
              'h5': flake.attr('h1')}
    for host, attr in chosen.items():
        with open(os.path.join(inventory, 'host_vars', '%s.yml' % host), 'w') as handle:
            json.dump({'my_attr': attr}, handle)
    play = [{'hosts': 'h1,h2,h5', 'gather_facts': False, 'tasks': [
        {'name': 'eval', 'nixdeploy.fleet.nix_eval': {'attr': '{{ my_attr }}'}},
        {'name': 'build', 'nixdeploy.fleet.nix_build': {}},
        {'name': 'copy', 'nixdeploy.fleet.nix_copy_closure': {
            'path': '{{ nix_out_path }}', 'copy_mode': 'cascade', 'signing_key': secret}},
    ]}]
    run = run_playbook(play, inventory, os.path.join(work, 'run'))
    assert run.rc != 0, run
    assert run.result('eval', 'h2')['status'] == 'failed'
    assert 'none' in run.result('eval', 'h2')['result']['msg'], run.result('eval', 'h2')
    paths = dict((h, run.result('eval', h)['result']['out_path']) for h in ('h1', 'h5'))
    assert paths['h1'] != paths['h5']
    for host in ('h1', 'h5'):
        assert run.result('copy', host)['status'] == 'ok', run.result('copy', host)
        assert lab.store_has(host, paths[host]), host
    for path in paths.values():
        assert not lab.store_has('h2', path), path


# ------------------------------------------------------------ the flake cannot change the rules
# The fleet flake with a nixConfig of its own: pure-eval = false (every
# configuration's version, so its system's name, takes DEPLOY_ALLOWED_KEY from
# the controller's environment where the flake's setting is obeyed) and
# import-from-derivation. A pure evaluation reads "" for the variable.
NIX_CONFIG_FLAKE = '''{
  nixConfig.pure-eval = false;
  nixConfig.allow-import-from-derivation = true;
  outputs = { self }:
    let
      given = builtins.fromJSON (builtins.readFile ./fleet.json);
      key = builtins.getEnv "DEPLOY_ALLOWED_KEY";
      fleet = given // { configurations = builtins.mapAttrs
        (n: c: c // { version = (c.version or "1") + key; }) given.configurations; };
    in
    import ./lib.nix { inherit fleet; busyboxDir = ./busybox; };
}
'''
# The same fleet with an input no flake.lock holds: a path: folder whose word
# goes into every version
UNLOCKED_INPUT_FLAKE = '''{
  inputs.names = { url = "path:%s"; flake = false; };
  outputs = { self, names }:
    let
      given = builtins.fromJSON (builtins.readFile ./fleet.json);
      word = builtins.readFile "${names}/who";
      fleet = given // { configurations = builtins.mapAttrs
        (n: c: c // { version = (c.version or "1") + word; }) given.configurations; };
    in
    import ./lib.nix { inherit fleet; busyboxDir = ./busybox; };
}
'''


def input_writing_nix(folder, names, flake):
    """A ``nix`` that, right after the run's first ``nix flake metadata`` of
    ``flake`` (the pin's), writes the unlocked input's folder: a writer
    changing it while the run evaluates."""
    path = os.path.join(folder, 'nix')
    marker = os.path.join(folder, 'written')
    with open(path, 'w') as handle:
        handle.write('#!/bin/sh\nfor last; do :; done\n/usr/bin/nix "$@"; rc=$?\n'
                     'case "$1 $2 $last" in "flake metadata %(flake)s")\n'
                     '  [ -e %(marker)s ] ||\n'
                     '    { printf alice-and-mallory > %(who)s; : > %(marker)s; };;\n'
                     'esac\nexit $rc\n' % {'marker': marker, 'flake': flake,
                                           'who': os.path.join(names, 'who')})
    os.chmod(path, 0o755)
    return path, marker


def takes_reference_lock_file():
    """Whether the controller's Nix reads a lock file given to it
    (``--reference-lock-file``: the collection's ``NixFeatures``, 2.25+)."""
    said = subprocess.run(['nix', '--version'], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout
    found = re.search(r'(\d+)\.(\d+)', said)
    return 'lix' not in said.lower() and tuple(int(n) for n in found.groups()) >= (2, 25)


def test_the_flake_cannot_change_the_controllers_rules(hostile):
    """The controller's user configuration accepts flake configuration (as CI
    setups do, to take a flake's substituters): set here in a private
    XDG_CONFIG_HOME for the job only. Loading an inventory whose flake allows
    import-from-derivation in its nixConfig builds nothing. Then one eval run
    of the fleet, twice, the cache on, DEPLOY_ALLOWED_KEY changed between
    them: the flake's pure-eval = false is refused, so no host's system
    reads it and the second run's cached answers are the first's, which are
    pure; h2, whose nix_options opt in (accept-flake-config), gets the
    flake's settings, never from the cache, and the run says once that
    nothing of it is cached; h3 evaluates a flake whose input is in no
    flake.lock, under --no-write-lock-file (the fleet's nix_args), while a
    writer changes that input right after the pin read it: on a Nix that
    reads a lock file given to it (2.25+) it evaluates the content the pin
    locked, from the run's resolved lock graph, and the run says so once;
    on 2.8 it is not evaluated at all (it would be locked anew by each
    evaluator), and says which input and what to run. The flake's refused
    settings are named once in the run, not once per host."""
    lab, base = hostile['lab'], hostile['base']
    work = os.path.join(base, 'flake-config')
    config_home = os.path.join(work, 'config')
    os.makedirs(os.path.join(config_home, 'nix'))
    with open(os.path.join(config_home, 'nix', 'nix.conf'), 'w') as handle:
        # as a CI's has it (Nix 2.34 reads the setting only where flakes are on)
        handle.write('experimental-features = nix-command flakes\naccept-flake-config = true\n')
    user_env = {'XDG_CONFIG_HOME': config_home}

    # the inventory: the flake's own nixConfig allows IFD; nothing is built
    system = subprocess.run(['nix', '--extra-experimental-features', 'nix-command', 'eval',
                             '--impure', '--raw', '--expr', 'builtins.currentSystem'],
                            stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    needle = ifd_flake.needle()
    ifd_ref = ifd_flake.write(os.path.join(work, 'ifd-flake'), needle, system, nix_config=True)
    ifd_config = os.path.join(work, 'ifd.nix.yml')
    with open(ifd_config, 'w') as handle:
        json.dump({'plugin': 'nixdeploy.fleet.nix', 'flake': ifd_ref,
                   'nix_options': {'substituters': ''}}, handle)
    graph = subprocess.run(
        [os.path.join(BIN, 'ansible-inventory'), '-i', ifd_config, '--graph'],
        env=ansible_env(dict(user_env, ANSIBLE_INVENTORY_ENABLED='nixdeploy.fleet.nix',
                             ANSIBLE_INVENTORY_UNPARSED_FAILED='True')),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300,
        check=False)
    assert graph.returncode != 0 and not ifd_flake.built(needle), graph.stdout + graph.stderr
    assert 'ifdhost' not in graph.stdout, graph.stdout
    assert "'allow-import-from-derivation' is disabled" in graph.stderr, graph.stderr[-3000:]

    # the fleet: a flake with a nixConfig of its own; h3 on one with an unlocked input
    flake, secret = fleet_flake(hostile, os.path.join(work, 'flake'))
    flake.set_all(version='7')
    with open(os.path.join(flake.path, 'flake.nix'), 'w') as handle:
        handle.write(NIX_CONFIG_FLAKE)
    inventory = write_inventory(os.path.join(work, 'inventory'), lab, flake, secret)
    names = os.path.join(work, 'names')
    os.makedirs(names)
    with open(os.path.join(names, 'who'), 'w') as handle:
        handle.write('alice')
    unlocked = os.path.join(work, 'unlocked')
    shutil.copytree(flake.path, unlocked)
    with open(os.path.join(unlocked, 'flake.nix'), 'w') as handle:
        handle.write(UNLOCKED_INPUT_FLAKE % names)
    nix, written = input_writing_nix(work, names, 'path:%s' % unlocked)
    resolved_lock = takes_reference_lock_file()
    os.makedirs(os.path.join(inventory, 'host_vars'))
    with open(os.path.join(inventory, 'host_vars', 'h2.yml'), 'w') as handle:
        json.dump({'nix_options': {'substituters': '', 'accept-flake-config': True}}, handle)
    with open(os.path.join(inventory, 'host_vars', 'h3.yml'), 'w') as handle:
        json.dump({'nix_flake': 'path:%s' % unlocked}, handle)
    # the whole fleet: a batch's process forms every host's request with its
    # own task's arguments
    with open(os.path.join(inventory, 'group_vars', 'all.yml')) as handle:
        group_vars = json.load(handle)
    group_vars.update(nix_bin=nix, nix_args=['--no-write-lock-file'])
    with open(os.path.join(inventory, 'group_vars', 'all.yml'), 'w') as handle:
        json.dump(group_vars, handle)
    play = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'eval', 'ignore_errors': True, 'nixdeploy.fleet.nix_eval': {
            # as the role passes them
            'nix_bin': '{{ nix_bin | default("nix") }}', 'nix_args': '{{ nix_args | default([]) }}',
            'nix_options': '{{ nix_options }}'}}]}]
    env = dict(user_env, NIXDEPLOY_EVAL_CACHE=os.path.join(work, 'eval-cache'))

    runs = []
    for key in ('oldkey', 'newkey'):
        run = run_playbook(play, inventory, os.path.join(work, key),
                           env=dict(env, DEPLOY_ALLOWED_KEY=key))
        runs.append(run)
        output = run.stdout + run.stderr
        pure = {}
        for host in lab.hosts:
            result = run.result('eval', host)['result']
            if host == 'h3':
                continue
            assert not result.get('failed'), (host, result)
            pure[host] = result['out_path']
            if host == 'h2':
                # the operator's choice: the flake's settings, never cached
                assert key in result['drv_path'] and result['from_cache'] is False, result
            else:
                assert 'key' not in result['drv_path'] + result['out_path'], (host, result)
                assert result['from_cache'] is (key == 'newkey'), (host, result)
        assert output.count('accept-flake-config is on') == 1, output[-4000:]
        # the flake's settings Nix did not apply, named once in the run: the
        # inventory's evaluation and every evaluator of the systems (h1's,
        # h4's...: a process each) warned; h2 took them
        shown = ' '.join(output.split())
        assert shown.count("nixConfig sets allow-import-from-derivation, pure-eval: not "
                           "applied") == 1, output[-4000:]
        assert shown.count('flake configuration accepted') == 1, output[-4000:]
        h3 = run.result('eval', 'h3')
        assert os.path.exists(written), 'the writer changed the input during the run'
        if resolved_lock:
            # h3: every evaluator reads the lock graph the pin resolved, the
            # input's content at the pin, and the run says so once
            assert h3['status'] == 'ok', h3['result']
            assert '7alice' in h3['result']['drv_path'], h3['result']
            assert 'mallory' not in h3['result']['drv_path'], h3['result']
            assert h3['result']['source']['pinned'] is True, h3['result']['source']
            assert "missing input 'names'" in h3['result']['source']['lock']
            assert h3['result']['from_cache'] is False
            assert shown.count("flake.lock has a missing input 'names'") == 1, output[-4000:]
        else:
            # h3: not evaluated, naming the input and the fix; nothing claims a pin
            assert h3['status'] == 'failed', (h3['result'], os.listdir(unlocked))
            said = h3['result']['msg']
            assert "missing input 'names'" in said and 'nix flake lock' in said, said
            assert not h3['result'].get('out_path') and not h3['result'].get('source', {}).get(
                'pinned'), h3
        assert not os.path.exists(os.path.join(unlocked, 'flake.lock'))
        os.path.exists(written) and os.unlink(written)
        with open(os.path.join(names, 'who'), 'w') as handle:
            handle.write('alice')
    # the second run's cached answers are the first's
    first, second = ([run.result('eval', h)['result'] for h in lab.hosts] for run in runs)
    for one, two in zip(first, second):
        if 'out_path' in one and 'oldkey' not in one.get('drv_path', ''):
            assert one['out_path'] == two['out_path'], (one, two)


def _json_of(folder, name):
    with open(os.path.join(folder, name)) as handle:
        return json.load(handle)
