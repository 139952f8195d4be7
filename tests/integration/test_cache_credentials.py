"""A cache that asks for a login, in one deploy of a small fleet (lab `ccr`).

The controller serves a binary cache over http on the lab's bridge, with
basic auth (tests/auth_cache.py, a thread of this process), holding h1's and
h3's systems signed with the key the hosts trust. In ONE run of
``nixdeploy.fleet.deploy``:

- h1 (home-manager: ``app``, not trusted, through the daemon) copies in
  cache mode from ``http://deploy:PASSWORD@bridge:port``;
- h2 (NixOS) copies as usual, pushed from the controller;
- h3 (NixOS, on the other stack's Nix where there is one: 2.34 here, 2.8 in
  the current stack's tree) copies in cache mode with a wrong password.

What the run must show: h1 fetched its closure with the login (the server
saw it) and runs its new system, h2 too; h3 failed at its copy with a
message that names it and the cache; neither password was in any process's
argv while the job ran (``tests.argv_watch.ArgvWatch``: every
``/proc/*/cmdline`` of the machine, which the lab hosts share), nor in the
output, any result or the report; no private netrc is left behind.
"""

import glob
import json
import os
import subprocess

import pytest

from tests.argv_watch import ArgvWatch
from tests.auth_cache import AuthCache
from tests.collection import run_playbook
from tests.deploy_fleet import prepare, write_inventory
from tests.faults.fleet import COPY, out_paths
from tests.lab.lab import other_nix

pytestmark = pytest.mark.lab

# both passwords hold the needle the watcher looks for
NEEDLE = 'cachepw-5e0b7d'
RIGHT, WRONG = NEEDLE + '-right', NEEDLE + '-wrong'
NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    # "ccr" plus this run's pid: two runs of the suite at once must not share it
    hosts = [{'name': 'h1', 'persona': 'home-manager'}, {'name': 'h2', 'persona': 'nixos'},
             dict({'name': 'h3', 'persona': 'nixos'}, **({'nix': 'other'} if other_nix() else {}))]
    lab = make_lab('ccr%d' % (os.getpid() % 100000), hosts)
    base = str(tmp_path_factory.mktemp('ccr'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    flake.set_all(version='1')
    return {'lab': lab, 'flake': flake, 'secret': secret, 'base': base}


def build(flake, host):
    out = subprocess.run(NIX + ['build', '--no-link', '--json',
                                '%s#%s' % (flake.ref, flake.attr(host))],
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True).stdout
    return json.loads(out)[0]['outputs']['out']


def leftover_netrcs():
    """Private netrc files under /tmp (the controller's, and the lab hosts',
    which share this machine's /tmp)."""
    return set(glob.glob('/tmp/tmp.*/netrc') + glob.glob('/tmp/nixdeploy-netrc.*/netrc'))


def test_a_cache_login_reaches_nix_and_nothing_else(fleet):
    lab, flake, base = fleet['lab'], fleet['flake'], fleet['base']
    folder = os.path.join(base, 'cache')
    for host in ('h1', 'h3'):
        subprocess.run(NIX + ['copy', '--to', 'file://%s?secret-key=%s' % (folder, fleet['secret']),
                              build(flake, host)], check=True, stderr=subprocess.PIPE)
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, fleet['secret'])
    reports = os.path.join(base, 'reports')
    before = leftover_netrcs()
    with AuthCache(folder, 'deploy', RIGHT, lab.bridge_address) as cache:
        host_vars = os.path.join(inventory, 'host_vars')
        os.makedirs(host_vars)
        for host, password in (('h1', RIGHT), ('h3', WRONG)):
            with open(os.path.join(host_vars, '%s.yml' % host), 'w') as handle:
                json.dump({'nix_copy_mode': 'cache',
                           'nix_caches': [cache.url_with('deploy', password)]}, handle)
        env = {'ANSIBLE_CALLBACKS_ENABLED': 'record,nixdeploy.fleet.summary,nixdeploy.fleet.report',
               'NIXDEPLOY_REPORT_DIR': reports}
        with ArgvWatch(NEEDLE) as watch:
            run = run_playbook('nixdeploy.fleet.deploy', inventory, os.path.join(base, 'run'),
                               env=env)
        logins = cache.logins()
        fetched = [path for _m, path, login, code in cache.requests
                   if login == 'deploy:' + RIGHT and code == 200 and path.startswith('/nar/')]
        url = cache.url

    # the fleet: h1 fetched with the login, h2 pushed, both run their new systems
    assert run.rc != 0, run
    summary, new = run.summary(), out_paths(run)
    for host in ('h1', 'h2'):
        assert not summary[host]['failed'], (host, summary[host])
        assert lab.active(host) == new[host], host
    h1 = run.result(COPY, 'h1')['result']
    assert h1['mode'] == 'cache' and h1['paths_fetched'] == h1['paths_missing'] > 0, h1
    assert h1['paths_sent'] == 0 and fetched, (h1, cache.requests)
    assert run.result(COPY, 'h2')['result']['paths_sent'] > 0
    # the server saw both logins: the right one served, the wrong one refused
    assert logins >= {'deploy:' + RIGHT, 'deploy:' + WRONG}, logins

    # the passwords: in no argv while the job ran, no output, result or report
    # (every place at once, so that a failure names them all)
    assert watch.looks > 10
    written = glob.glob(os.path.join(reports, '*'))
    assert any(p.endswith('.json') for p in written), written
    leaks = {'argv': watch.found[:3], 'output': NEEDLE in run.stdout + run.stderr,
             'results': sorted(set('%s %s: %s' % (r['host'], r['task'], key)
                                   for r in run.records for key, value in r['result'].items()
                                   if NEEDLE in json.dumps(value))),
             'reports': [p for p in written if NEEDLE in open(p, errors='replace').read()],
             # and no private netrc outlived its program
             'netrc files': sorted(leftover_netrcs() - before)}
    assert leaks == {'argv': [], 'output': False, 'results': [], 'reports': [],
                     'netrc files': []}, leaks

    # h3: a clear failure naming the host and the cache
    assert summary['h3']['failed'] and not lab.store_has('h3', new['h3']), summary['h3']
    h3 = run.result(COPY, 'h3')
    assert h3['status'] == 'failed', h3
    msg = h3['result']['msg']
    assert msg.startswith('h3: fetching %s from %s on the target failed' % (new['h3'], url)), msg
    assert 'check the user name and password' in msg, msg
