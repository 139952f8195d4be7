"""Reboot logic without a lab: does a system need a reboot, the wait for a
new boot id (with a clock the test moves), the reboot request, and switches
refused by NixOS's pre-switch checks (their real messages)."""

import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _reboot_rules)

OLD, NEW = '/nix/store/%s-nixos-system-web1-1' % ('a' * 32), '/nix/store/%s-nixos-system-web1-2' % ('b' * 32)
K1 = '/nix/store/%s-linux-6.6.1/bzImage' % ('c' * 32)
K2 = '/nix/store/%s-linux-6.12.9/bzImage' % ('d' * 32)
SYSTEMD = '/nix/store/%s-systemd-257.5' % ('e' * 32)

# What switch-to-configuration printed on a real host (NixOS 25.11) when the
# dbus implementation changed, as deploy-rs users reported it.
REFUSED_LOG = """\
nixdeploy: 12:00:01 activating /nix/store/x-nixos-system-web1-2 (switch)
Checking switch inhibitors...
There are changes to critical components of the system:

dbus-implementation : dbus -> broker

Switching into this system is not recommended.
You probably want to run 'nixos-rebuild boot' and reboot your system instead.

If you really want to switch into this configuration directly, then
you can set NIXOS_NO_CHECK=1 to ignore pre-switch checks.

WARNING: doing so might cause the switch to fail or your system to become unstable.

Pre-switch check 'switchInhibitors' failed
Pre-switch checks failed
nixdeploy: 12:00:01 activation exited with 1
"""


def probe(**parts):
    values = {'boot_id': 'b-1', 'booted': OLD, 'current': OLD}
    for part in _reboot_rules.BOOT_PARTS:
        values['booted_' + part] = values['new_' + part] = '/nix/store/%s-%s' % ('f' * 32, part)
    values.update(parts)
    return values


# ------------------------------------------------------------------ needs a reboot?
def test_same_boot_parts_need_no_reboot():
    assert _reboot_rules.reboot_reasons(probe()) == (False, [])


def test_a_new_kernel_or_systemd_needs_one():
    needed, reasons = _reboot_rules.reboot_reasons(probe(booted_kernel=K1, new_kernel=K2,
                                                   new_systemd=SYSTEMD))
    assert needed is True
    assert reasons == ['kernel: linux-6.6.1/bzImage -> linux-6.12.9/bzImage',
                       'systemd: %s -> systemd-257.5' % ('f' * 32 + '-systemd')[33:]]


def test_a_system_without_boot_parts_and_a_host_without_booted_system():
    values = {'booted': OLD}  # a container: no kernel on either side
    assert _reboot_rules.reboot_reasons(values) == (False, [])
    assert _reboot_rules.reboot_reasons(probe(new_initrd=''))[0] is True
    needed, reasons = _reboot_rules.reboot_reasons({'booted': ''})
    assert needed is None and 'cannot tell' in reasons[0]


@pytest.mark.parametrize('mode,needed,wanted', [
    ('never', True, False), ('always', False, True), ('always', None, True),
    ('when-needed', True, True), ('when-needed', False, False), ('when-needed', None, False),
])
def test_when_to_reboot(mode, needed, wanted):
    assert _reboot_rules.wants_reboot(mode, needed) is wanted


def test_probe_script_quotes_the_path_and_runs(tmp_path):
    hostile = "/nix/store/x'; touch %s/owned; '" % tmp_path
    script = _reboot_rules.probe_script(hostile)
    out = subprocess.run(['sh', '-c', script], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    values = script.parse_raw(out)[0]
    assert not (tmp_path / 'owned').exists()
    assert set(values) >= {'boot_id', 'booted', 'current', 'new_kernel', 'booted_systemd'}
    plain = _reboot_rules.probe_script()
    assert 'new_kernel' not in plain.parse(subprocess.run(
        ['sh', '-c', plain], stdout=subprocess.PIPE,
        universal_newlines=True, check=True).stdout)[0]
    program = _reboot_rules.boot_id_script()
    boot_id = subprocess.run(['sh', '-c', program], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout
    with open('/proc/sys/kernel/random/boot_id') as handle:
        assert program.parse(boot_id)[0]['boot_id'] == handle.read().strip()


# ------------------------------------------------------------------ the wait
class Host:
    """Answers to boot-id reads, one per look (the last repeats); an
    Exception instance is raised, as a lost connection is."""

    def __init__(self, clock, answers, read_cost=0.0):
        self.clock, self.answers, self.read_cost, self.reads = clock, list(answers), read_cost, []

    def read(self, remaining):
        self.reads.append(remaining)
        self.clock.now += min(self.read_cost, remaining)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self):
        self.now, self.sleeps = 500.0, []

    def time(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def wait(answers, timeout=60, old='boot-1', read_cost=0.0):
    clock = Clock()
    host = Host(clock, answers, read_cost)
    result = _reboot_rules.wait_for_boot(host.read, old, timeout, sleep=clock.sleep, clock=clock.time)
    return result, host, clock


def test_a_host_that_goes_down_and_comes_back():
    result, host, _clock = wait(['boot-1\n', 'boot-1', ConnectionError('Connection refused'),
                                 None, 'boot-2\n'])
    assert result['back'] and result['boot_id'] == 'boot-2' and result['went_down']
    assert result['looks'] == 5 and result['waited'] == 8.0
    assert result['last_error'] == 'Connection refused'


def test_a_host_that_never_comes_back_fails_at_the_timeout():
    result, host, clock = wait([ConnectionError('timed out')], timeout=30, read_cost=4)
    assert not result['back'] and result['went_down']
    # never waits past the timeout, and no read may outlast it
    assert clock.now - 500.0 == 30 and all(r <= 30 for r in host.reads)
    assert _reboot_rules.not_back_message(result, 30) == (
        'the host did not come back with a new boot id within 30s: it went down and did not '
        'answer again (last error: timed out)')


def test_a_reboot_that_never_happened():
    result, _host, _clock = wait(['boot-1'], timeout=10)
    assert not result['back'] and not result['went_down']
    assert 'the reboot did not happen' in _reboot_rules.not_back_message(result, 10)


def test_without_the_old_boot_id_only_an_id_after_going_down_counts():
    result, _host, _clock = wait(['boot-1', 'boot-1', None, 'boot-2'], old=None)
    assert result['back'] and result['boot_id'] == 'boot-2' and result['looks'] == 4


# ------------------------------------------------------------------ request, verify
def _request(tmp_path, systemctl):
    """The reboot request run under sh, with a fake systemctl."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / 'systemctl').write_text('#!/bin/sh\necho "$*" >>%s/asked\n%s\n'
                                       % (tmp_path, systemctl))
    (bin_dir / 'systemctl').chmod(0o755)
    program = _reboot_rules.request_script()
    proc = subprocess.run(['sh', '-c', program], stdout=subprocess.PIPE,
                          universal_newlines=True, check=False,
                          env={'PATH': '%s:/usr/bin:/bin' % bin_dir})
    return _reboot_rules.reboot_requested(proc.returncode, proc.stdout, lost=False, mark=program.mark)


def test_the_reboot_request(tmp_path):
    assert _reboot_rules.reboot_requested(None, '', lost=True) == (True, None)
    assert _request(tmp_path, 'exit 0') == (True, None)
    assert (tmp_path / 'asked').read_text() == 'reboot\n'
    ok, problem = _request(
        tmp_path, 'echo "Failed to reboot system via logind: Access denied"; exit 1')
    assert not ok and problem == ('the reboot was refused (exit code 1): Failed to reboot '
                                  'system via logind: Access denied')


def test_verify_the_boot():
    assert _reboot_rules.verify_boot({'boot_id': 'b-2', 'booted': NEW}, NEW, 'b-1') is None
    assert 'old boot id' in _reboot_rules.verify_boot({'boot_id': 'b-1', 'booted': NEW}, NEW, 'b-1')
    assert _reboot_rules.verify_boot({'boot_id': 'b-2', 'booted': OLD}, NEW, 'b-1') == (
        'the host came back on %s, not on the new system %s' % (OLD, NEW))
    assert 'unknown system' in _reboot_rules.verify_boot({'boot_id': 'b-2'}, NEW, 'b-1')


# ------------------------------------------------------------------ switch inhibitors
def test_a_refused_switch_is_recognised_with_its_inhibitor():
    refusal = _reboot_rules.switch_refusal(1, REFUSED_LOG)
    assert refusal['checks'] == ['switchInhibitors']
    assert refusal['inhibitors'] == [{'name': 'dbus-implementation', 'old': 'dbus',
                                      'new': 'broker'}]
    assert "Pre-switch check 'switchInhibitors' failed" in refusal['lines']
    assert _reboot_rules.switch_refusal('1', REFUSED_LOG) is not None
    assert _reboot_rules.switch_refusal(None, REFUSED_LOG) is not None
    msg = _reboot_rules.refusal_message(refusal)
    assert msg.startswith("the switch was refused by the pre-switch check 'switchInhibitors' "
                          "(dbus-implementation: dbus -> broker); nothing was changed.")
    assert 'nix_reboot: when-needed' in msg and 'NIXOS_NO_CHECK=1' in msg


def test_other_failures_are_not_refusals():
    assert _reboot_rules.switch_refusal(4, REFUSED_LOG) is None
    assert _reboot_rules.switch_refusal(1, 'error: the following units failed: x.service') is None
    assert _reboot_rules.switch_refusal(1, '') is None
    # another pre-switch check, without inhibitor lines
    other = _reboot_rules.switch_refusal(1, "Pre-switch check 'diskSpace' failed\nPre-switch checks failed")
    assert other['checks'] == ['diskSpace'] and other['inhibitors'] == []
    assert _reboot_rules.describe_refusal(other) == "'diskSpace'"


def test_short_names():
    assert _reboot_rules.short(K1) == 'linux-6.6.1/bzImage'
    assert _reboot_rules.short(None) == 'none' and _reboot_rules.short('/boot/x') == '/boot/x'
