"""Faults inside a deploy that the target handles: a failing activation on one
host of eight, and a system that takes the network down (magic rollback)."""

import pytest

from tests.faults.fleet import (ACTIVATE, assert_consistent, locks, out_paths, settled,
                                summaries, wait_until)

pytestmark = [pytest.mark.faults, pytest.mark.lab]


def test_activation_fails_on_one_of_eight(flt):
    lab = flt.lab
    before = dict((host, lab.active(host)) for host in lab.hosts)
    flt.new_version()
    flt.flake.set_config(flt.flake.config_of('h2'), behaviour='fail')
    try:
        run = flt.deploy()
    finally:
        flt.flake.set_config(flt.flake.config_of('h2'), behaviour='ok')
    assert run.rc != 0, run
    paths = out_paths(run)
    assert sorted(paths) == sorted(lab.hosts), run
    summary = summaries(run)
    # the seven others deployed, whatever their platform
    for host in sorted(lab.hosts):
        if host != 'h2':
            assert lab.active(host) == paths[host], (host, run)
            assert summary[host]['outcome'] == 'switched', summary[host]
    # h2 rolled back to what it ran, and says so
    assert lab.active('h2') == before['h2']
    assert summary['h2']['failed'] and summary['h2']['rolled_back'], summary['h2']
    assert summary['h2']['outcome'].startswith('FAILED: rolled back'), summary['h2']
    activate = run.result(ACTIVATE, 'h2')
    assert activate['status'] == 'failed'
    assert 'failed on purpose' in str(activate['result']), activate
    # the play recap fails h2 only
    recap = run.stdout[run.stdout.index('PLAY RECAP'):]
    failed = [line.split()[0] for line in recap.splitlines() if 'failed=1' in line]
    assert failed == ['h2'], recap
    for host in lab.hosts:
        assert_consistent(lab, host)
        assert not locks(lab, host), host


def test_system_that_breaks_the_network_is_rolled_back(flt):
    lab = flt.lab
    before = assert_consistent(lab, 'h1')
    flt.new_version(['h1'], behaviour='break-network')
    try:
        run = flt.deploy('-l', 'h1', '-e', 'nix_confirm_timeout=6')
    finally:
        flt.flake.set_config(flt.flake.config_of('h1'), behaviour='ok')
    assert run.rc != 0, run
    summary = summaries(run)['h1']
    assert summary['failed'], summary
    assert 'unconfirmed' in summary['outcome'] or 'rolled back' in summary['outcome'], summary
    # the host's watchdog rolled it back by itself: its previous system is
    # active again, which brings the network back
    wait_until(lambda: lab.active('h1') == before, 60, what='h1 to roll back')
    settled(lab, 'h1')
    assert assert_consistent(lab, 'h1') == before
    lab.ssh('h1', 'true')
    history = lab.read('h1', '/nix/var/lab/history-system').splitlines()
    assert history[-1].split()[2] == before, history
