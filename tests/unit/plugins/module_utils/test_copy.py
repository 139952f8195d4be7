"""The copy plan: probe parsing, who is trusted, what Nix said it sent.

The probe script itself runs here for real under /bin/sh against the
controller's own store (the lab tests run it on every persona).
"""

import json
import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.module_utils import _copy  # noqa: E402

P1 = '/nix/store/yp65nwcm3qq6n5j1ccmpgvgxhlxbn14m-nixos-system-h1-1'
P2 = '/nix/store/110879g0d9slzx4b09aizcm4wnnl0v0c-lab-extra-base-1'


def facts(**kw):
    base = {'uid': 1001, 'user': 'deploy', 'groups': ['deploy', 'wheel'],
            'store_writable': False, 'trusted_users': ['root']}
    base.update(kw)
    return base


@pytest.mark.parametrize('kw,trusted', [
    ({'uid': 0, 'user': 'root'}, True),
    ({'store_writable': True}, True),  # single-user store owner (nix-on-droid)
    ({'trusted_users': ['root', 'deploy']}, True),
    ({'trusted_users': ['root', '@wheel']}, True),
    ({'trusted_users': ['*']}, True),
    ({'trusted_users': ['root', '@admin', 'app']}, False),
])
def test_is_trusted(kw, trusted):
    assert _copy.is_trusted(facts(**kw)) is trusted


def test_plan_trust_order():
    untrusted = facts()
    assert _copy.plan_trust(facts(uid=0), 'auto', None, False, None, None) == (True, False, 'trusted')
    # a signing key beats sudo: no root needed for the copy
    assert _copy.plan_trust(untrusted, 'auto', '/k', True, 'sudo', 'root') == (False, False, 'signed')
    assert _copy.plan_trust(untrusted, 'auto', None, True, 'sudo', 'root') == (True, True, 'sudo')
    assert _copy.plan_trust(untrusted, 'auto', None, True, 'su', 'root') == (False, False, 'unsigned')
    assert _copy.plan_trust(untrusted, 'auto', None, False, None, None) == (False, False, 'unsigned')
    assert _copy.plan_trust(facts(uid=0), 'true', None, False, None, None)[0] is False
    assert _copy.plan_trust(untrusted, 'false', None, False, None, None)[0] is True


def test_remote_program():
    assert _copy.remote_program('/nix/var/nix/profiles/default/bin/') == [
        '/nix/var/nix/profiles/default/bin/nix-daemon']
    assert _copy.remote_program('/d', True, 'root') == ['sudo', '-n', '--', '/d/nix-daemon']
    assert _copy.remote_program('/d', True, 'nix') == ['sudo', '-n', '-u', 'nix', '--',
                                                       '/d/nix-daemon']


def run_probe(remote_nix_dir, paths):
    return subprocess.run(['sh', '-c', _copy.probe_script(remote_nix_dir)],
                          input='\n'.join(paths) + '\n', stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)


def test_probe_runs_under_sh_and_reports_missing_paths():
    nix = ['nix', '--extra-experimental-features', 'nix-command']
    info = json.loads(subprocess.run(nix + ['path-info', '--json', '--all'], check=True,
                                     stdout=subprocess.PIPE, universal_newlines=True).stdout)
    present = info[0]['path']
    absent = '/nix/store/00000000000000000000000000000000-not-there'
    proc = run_probe(None, [present, absent])
    assert proc.returncode == 0, proc.stderr
    found = _copy.parse_probe(proc.stdout)
    assert found['complete'] and found['invalid'] == [absent]
    assert found['nix_dir'] == '/usr/bin' and found['uid'] == 0
    assert _copy.is_trusted(found)


def test_probe_with_a_wrong_remote_nix_dir_says_no_nix():
    proc = run_probe("/opt/it's not here", [P1])
    assert proc.returncode == 3 and _copy.parse_probe(proc.stdout) is None


def test_sent_paths_reads_nix_copy_progress():
    err = ("copying 2 paths...\ncopying path '%s' to 'ssh-ng://root@h'...\n"
           "copying path '%s' to 'ssh-ng://root@h'...\n" % (P2, P1))
    assert _copy.sent_paths(err) == [P2, P1]
    assert _copy.sent_paths('copying 0 paths...\n') == []
    assert _copy.sent_paths('') is None


def test_unsigned_message_names_host_and_both_fixes():
    msg = _copy.unsigned_message('web1', 'app', "error: cannot add path '%s' because it lacks a "
                                                "valid signature\n" % P1)
    assert msg.startswith('web1: the target refuses unsigned paths')
    assert 'signing_key' in msg and 'trusted-users' in msg and 'lacks a valid signature' in msg


def test_ssh_problem():
    assert _copy.ssh_problem('Host key verification failed.\r\nerror: x').startswith(
        'host key verification failed')
    assert 'dead' in _copy.ssh_problem('Timeout, server 10.0.0.1 not responding.')
    assert _copy.ssh_problem('error: something in nix') == ''
    assert 'passwordless sudo' in _copy.ssh_problem('sudo: a password is required\n')


def test_fetch_script_quotes_caches():
    script = _copy.fetch_script('/d', P1, ["http://c/x'; rm -rf /; '"])
    proc = subprocess.run(['sh', '-n', '-c', script], stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 0
    assert "'http://c/x'\"'\"'; rm -rf /; '\"'\"''" in script
