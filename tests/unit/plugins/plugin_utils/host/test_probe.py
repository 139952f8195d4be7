"""plugin_utils/host/_probe.py: the login probe says why a host could not be
reached in ssh's own words, names the hop that failed behind a jump host,
and ends within its bound even where ssh would wait for minutes.

The full probe, against real hosts that are off, behind a jump host, on
IPv6 and at a dead first address, is tests/integration/lab/
test_networks_deploy.py; here real ssh is run against loopback only."""

import socket
import sys
import time

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _probe  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _reached  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import Host  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._peer_ssh import (  # noqa: E402
    TimedOut, run_no_tty)

# what OpenSSH 9 prints, as ssh printed it in the lab
NO_ROUTE = 'ssh: connect to host 10.61.3.200 port 22: No route to host\r\n'
TIMEOUT = 'ssh: connect to host 10.61.3.14 port 22: Connection timed out\r\n'
KEY = ('No ED25519 host key is known for 10.61.3.11 and you have requested strict checking.\r\n'
       'Host key verification failed.\r\n')
DENIED = 'deploy@10.61.3.11: Permission denied (publickey).\r\n'
# through a jump host that could not open the way on to the target
FORWARD = ('channel 0: open failed: connect failed: No route to host\r\n'
           'stdio forwarding failed\r\n'
           'Connection closed by UNKNOWN port 65535\r\n')
# through a jump host whose own login failed
JUMP_DOWN = ('ssh: connect to host 10.61.3.9 port 22: Connection refused\r\n'
             'Connection closed by UNKNOWN port 65535\r\n')


def test_each_reason_is_named_with_the_line_ssh_said_it_in():
    assert _probe.reason_of(NO_ROUTE) == ('no route', NO_ROUTE.strip())
    assert _probe.reason_of(TIMEOUT)[0] == 'timeout'
    assert _probe.reason_of(KEY) == ('host key', KEY.splitlines()[0].strip())
    assert _probe.reason_of(DENIED)[0] == 'login refused'
    assert _probe.reason_of('kex_exchange_identification: read: Connection reset by peer')[0] == \
        'connection closed'
    assert _probe.reason_of('') == ('ssh failed', '')


def test_behind_a_jump_host_the_failed_hop_is_named():
    assert _probe.reason_of(FORWARD, jumped=True)[0] == \
        'the jump host could not reach it (no route)'
    assert _probe.reason_of(JUMP_DOWN, jumped=True)[0] == 'jump failed (connection refused)'
    # without a jump host the same words are the target's own
    assert _probe.reason_of(JUMP_DOWN)[0] == 'connection refused'


def test_what_a_target_prints_reaches_the_message_escaped():
    said = _probe.reason_of('ssh: connect to host x: No route to host\x1b[2J\r\n')[1]
    assert '\x1b' not in said and said.startswith('ssh: connect to host x')


def test_a_jump_host_is_seen_in_every_spelling():
    def jumped(args):
        return _probe.has_jump(Host('10.0.0.5', ssh_common_args=args, name='b1'))
    assert jumped('-o ProxyJump=deploy@jump')
    assert jumped('-oProxyJump=jump')
    assert jumped('-J jump')
    assert jumped('-Jjump')
    assert jumped('-o proxyjump=jump')
    assert not jumped('-o UserKnownHostsFile=/x -o StrictHostKeyChecking=yes')


def refusing_host(tmp_path):
    """h1 on a loopback port nobody listens on: a real ssh is refused at once."""
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    port = listener.getsockname()[1]
    listener.close()
    known = tmp_path / 'known_hosts'
    known.write_text('')
    return Host('127.0.0.1', port=port, user='nobody', name='h1',
                ssh_common_args='-o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s' % known)


def test_a_refused_address_is_said_and_the_next_one_is_tried(tmp_path):
    """Real ssh against loopback: a port nobody listens on refuses at once;
    the probe tries each address in turn and says why each failed."""
    host = refusing_host(tmp_path)
    started = time.monotonic()
    address, tried = _probe.reach(host, ['127.0.0.1', '::1'], timeout=3)
    assert address is None
    assert [t.address for t in tried] == ['127.0.0.1', '::1']
    assert tried[0].reason == 'connection refused' and 'Connection refused' in tried[0].said
    assert time.monotonic() - started < 10
    message = _probe.unreachable_message('h1', tried)
    assert message.startswith('h1 is unreachable at each of its 2 addresses: 127.0.0.1: '
                              'connection refused (')


def test_a_command_that_hangs_is_stopped_at_its_bound():
    started = time.monotonic()
    try:
        run_no_tty(['sh', '-c', 'sleep 30 & sleep 30'], timeout=1)
    except TimedOut as exc:
        assert 'within 1s' in str(exc)
    else:
        raise AssertionError('no TimedOut')
    assert time.monotonic() - started < 5


def test_the_address_found_is_kept_for_the_run(tmp_path):
    assert _reached.reached(str(tmp_path), 'm1') is None
    _reached.keep_reached(str(tmp_path), 'm1', 'fd42::7')
    assert _reached.reached(str(tmp_path), 'm1') == 'fd42::7'
    assert _reached.reached(str(tmp_path), 'm2') is None


def test_the_addresses_tried_are_as_ssh_takes_them_the_connections_first():
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import AddressError
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._reach import addresses_of
    host = Host('10.0.0.5', name='m1')
    # the inventory's list starts with ansible_host; brackets and spaces go
    assert addresses_of(host, ['10.0.0.5', ' [fd00::5]', 'm1.tail.example']) == \
        ['10.0.0.5', 'fd00::5', 'm1.tail.example']
    # an ansible_host of -e or host_vars the list lacks is tried first
    assert addresses_of(Host('192.168.9.9', name='m1'), ['10.0.0.5']) == \
        ['192.168.9.9', '10.0.0.5']
    assert addresses_of(host, None) == ['10.0.0.5']
    for bad, said in ((['10.0.0.5', '-oProxyCommand=x'], 'nix_target_hosts[1]'),
                      ([{'a': 1}], 'nix_target_hosts[0]'), ([5], 'nix_target_hosts[0]'),
                      (['a b'], 'nix_target_hosts[0]')):
        try:
            addresses_of(host, bad)
        except AddressError as exc:
            assert said in str(exc), exc
        else:
            raise AssertionError('%r passed' % (bad,))


def test_a_host_that_answers_with_a_refused_key_is_reached_not_unreachable():
    """Its phases judge the key (and fail it, or honour its opt-out): a
    host key is never passed over as a network matter."""
    for said in (KEY, DENIED):
        reason = _probe.reason_of(said)[0]
        assert reason in _probe.ANSWERED, reason
    # behind a jump host, the jump's refused key is the jump's: not reached
    assert _probe.reason_of(KEY + JUMP_DOWN.splitlines()[1] + '\n', jumped=True)[0] \
        not in _probe.ANSWERED


def test_the_probe_says_its_own_time_not_the_evaluations(tmp_path):
    """The probe's seconds end when its last login ended, however long the
    evaluation beside it (which its task waits for) took."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._reach import Probe
    host = refusing_host(tmp_path)
    probe = Probe(host, ['127.0.0.1'], 3)
    address, _tried = probe.wait()
    assert address is None
    time.sleep(1.5)  # the evaluation goes on
    assert probe.ended - probe.started < 1.5, probe.ended - probe.started


def test_a_refused_connection_names_the_port_to_check():
    """Nothing listens where ssh connected: the port ssh names (the one it
    used), else the connection's, with the variable that sets it."""
    said = 'ssh: connect to host 10.61.3.12 port 2299: Connection refused'
    tried = _probe.Tried('10.61.3.12', 'connection refused', said, 0.1, port=2299)
    assert tried.line() == ('10.61.3.12: connection refused (%s): nothing listens on port 2299 '
                            'of 10.61.3.12: check ansible_port' % said)
    # ssh's words lost: the connection's own port, else ssh's default
    assert tried.__class__('fd00::5', 'connection refused', '', 0.1, port=2200).line().endswith(
        'nothing listens on port 2200 of fd00::5: check ansible_port')
    assert _probe.Tried('h', 'connection refused', '', 0.1).refused_port() == 22
    # another reason: no port to check
    assert 'ansible_port' not in _probe.Tried('10.0.0.5', 'no route', NO_ROUTE.strip(), 1).line()
    message = _probe.unreachable_message('h1', [tried])
    assert message.endswith('check ansible_port'), message


def test_a_refused_login_is_the_hosts_failure_naming_user_address_and_fix():
    """A host that refuses the login is there: its failure names who was
    refused where, in ssh's words, with the fix; other addresses' tries
    follow."""
    target = Host('10.61.3.11', user='deploy', name='k1')
    refused = _probe.Tried('10.61.3.11', _probe.LOGIN_REFUSED, DENIED.strip(), 0.2)
    message = _probe.login_refused_message(target, [refused])
    lines = message.split('\n')
    assert lines[0] == ('ssh login refused for deploy@10.61.3.11: key or user (Permission denied '
                        '(publickey)): nothing was built or copied for it'), message
    assert 'ansible_user' in lines[1] and 'ansible_ssh_private_key_file' in lines[1], message
    # ssh's words without the user: the connection's user and the address
    bare = _probe.Tried('fd00::5', _probe.LOGIN_REFUSED, 'Permission denied (publickey).', 0.2)
    other = _probe.Tried('10.0.0.9', 'no route', NO_ROUTE.strip(), 1)
    message = _probe.login_refused_message(target, [other, bare])
    assert message.startswith('ssh login refused for deploy@fd00::5: key or user (Permission '
                              'denied (publickey)); 10.0.0.9: no route ('), message
    # no refused login among the tries: unreachable, not this message
    assert _probe.login_refused_message(target, [other]) == ''


def sshd_host(tmp_path):
    """A real sshd on a loopback port that lets in only the key it was
    given, for root; (Host as root with that key, Host as a user it refuses,
    the sshd process)."""
    import shutil
    import subprocess
    sshd = shutil.which('sshd') or '/usr/sbin/sshd'
    for name in ('host_key', 'client_key'):
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(tmp_path / name)],
                       check=True, stdin=subprocess.DEVNULL)
    (tmp_path / 'authorized_keys').write_text((tmp_path / 'client_key.pub').read_text())
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    port = listener.getsockname()[1]
    listener.close()
    config = tmp_path / 'sshd_config'
    settings = [
        'Port %d' % port, 'ListenAddress 127.0.0.1', 'HostKey %s' % (tmp_path / 'host_key'),
        'AuthorizedKeysFile %s' % (tmp_path / 'authorized_keys'), 'PasswordAuthentication no',
        'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password',
        'StrictModes no', 'UsePAM no', 'PidFile none', 'ListenAddress 127.0.0.2',
        # OpenSSH 9.8 and later shut a source out for a while after a refused
        # login: every login here comes from 127.0.0.1 and refusals are the test
        'PerSourcePenalties no',
        # at its second address it lets nobody in (another network's rules)
        'Match LocalAddress 127.0.0.2', '    AuthorizedKeysFile none', '']

    def check():
        config.write_text('\n'.join(settings))
        return subprocess.run([sshd, '-t', '-f', str(config)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
    # sshd checks its setting first (its privilege separation folder among
    # them): a machine where it cannot run skips the test, saying why
    checked = check()
    if checked.returncode != 0 and 'PerSourcePenalties' in checked.stdout:
        # an sshd older than 9.8 has no such setting (and no penalties)
        settings.remove('PerSourcePenalties no')
        checked = check()
    if checked.returncode != 0:
        import pytest
        pytest.skip('sshd cannot run here: %s' % checked.stdout.strip())
    proc = subprocess.Popen([sshd, '-D', '-e', '-f', str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    known = tmp_path / 'known_hosts'
    known.write_text('[127.0.0.1]:%d %s' % (port, (tmp_path / 'host_key.pub').read_text()))
    common = ('-o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -o IdentitiesOnly=yes'
              % known)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)

    def host(user):
        return Host('127.0.0.1', port=port, user=user, name='s1',
                    private_key_file=str(tmp_path / 'client_key'), ssh_common_args=common)
    return host('root'), host('nosuchuser'), proc


def test_real_sshd_a_wrong_user_is_refused_and_another_address_logs_in(tmp_path):
    """Real ssh and sshd on loopback: the wrong login user is refused (no
    unreachable host, the refusal in ssh's words); with two addresses, a
    login refused at one while the other logs in reaches the host there."""
    import os
    import shutil
    if os.geteuid() != 0 or not shutil.which('sshd') and not os.path.exists('/usr/sbin/sshd'):
        import pytest
        pytest.skip('needs root and sshd')
    good, wrong, proc = sshd_host(tmp_path)
    try:
        address, tried = _probe.reach(wrong, ['127.0.0.1'], timeout=5)
        assert address is None and [t.reason for t in tried] == [_probe.LOGIN_REFUSED], tried
        message = _probe.login_refused_message(wrong, tried)
        assert message.startswith('ssh login refused for nosuchuser@127.0.0.1: key or user '
                                  '(Permission denied ('), message
        assert _probe.reach(good, ['127.0.0.1'], timeout=5) == ('127.0.0.1', [])
        # refused at 127.0.0.2, logged in at 127.0.0.1: reached there
        address, tried = _probe.reach(good, ['127.0.0.2', '127.0.0.1'], timeout=5)
        assert address == '127.0.0.1', [t.line() for t in tried]
        assert [(t.address, t.reason) for t in tried] == [('127.0.0.2', _probe.LOGIN_REFUSED)]
        # refused at both: the host's failure names the first, then the other
        address, tried = _probe.reach(wrong, ['127.0.0.1', '127.0.0.2'], timeout=5)
        assert address is None and len(tried) == 2, tried
        assert _probe.login_refused_message(wrong, tried).split('\n')[0].endswith(
            '; 127.0.0.2: login refused (nosuchuser@127.0.0.2: Permission denied (publickey).): '
            'nothing was built or copied for it')
    finally:
        proc.terminate()
        proc.wait(10)


def test_real_sshd_a_changed_host_key_fails_only_where_every_phase_checks_it(tmp_path):
    """Real ssh and sshd on loopback, known_hosts holding another key for
    the host: where Ansible's ssh checks the key as the probe does, the host
    is not reached and its failure is the copy's words (cause, ssh's lines,
    the fix last); where its key is not checked (the opt-out), the probe
    takes it as reached and leaves the key to its phases."""
    import os
    import shutil
    import subprocess
    if os.geteuid() != 0 or not shutil.which('sshd') and not os.path.exists('/usr/sbin/sshd'):
        import pytest
        pytest.skip('needs root and sshd')
    good, _wrong, proc = sshd_host(tmp_path)
    try:
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                        str(tmp_path / 'other_key')], check=True, stdin=subprocess.DEVNULL)
        known = tmp_path / 'known_hosts'
        other = (tmp_path / 'other_key.pub').read_text()
        known.write_text('[127.0.0.1]:%d %s' % (good.port, other))
        address, tried = _probe.reach(good, ['127.0.0.1'], timeout=5, keys_checked=True)
        assert address is None and [t.reason for t in tried] == [_probe.HOST_KEY], tried
        lines = _probe.host_key_message(tried).split('\n')
        assert lines[0] == ('the host key changed: it does not match known_hosts, refusing to '
                            'connect (at 127.0.0.1): nothing was built or copied for it'), lines
        assert any(line.startswith('  ssh said: ') for line in lines), lines
        assert lines[-1].startswith('  to fix: if the host was reinstalled'), lines
        assert _probe.host_key_message([]) == ''
        # unchecked (nix_host_key_unchecked): the phases judge it, as before
        assert _probe.reach(good, ['127.0.0.1'], timeout=5) == ('127.0.0.1', [])
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_probe_reads_the_profiles_generation_and_only_its_framed_line(tmp_path):
    """The probe's program, run by a real sh against a profile link: the
    generation in one framed line; nothing for a profile that is no
    generation link or is missing; any other output of the host is not
    read."""
    import subprocess
    profile = tmp_path / 'system'

    mark = 'c0ffee'

    def run():
        program = _probe.probe_program(str(profile), mark)
        done = subprocess.run(['sh'], input=program, stdout=subprocess.PIPE,
                              universal_newlines=True, check=False)
        assert done.returncode == 0, done
        return _probe.generation_of(done.stdout, mark)
    assert run() is None                      # a host never deployed
    profile.symlink_to('system-42-link')
    assert run() == 42
    profile.unlink()
    profile.symlink_to('/nix/store/abc-nixos-system')
    assert run() is None
    assert _probe.probe_program(None, mark) == _probe.PROBE_PROGRAM
    # a motd or a shell's greeting printing a look-alike is not the framed
    # line: without the probe's own mark, the word alone frames nothing
    assert _probe.generation_of('x nixdeploy-probe-generation-c0ffee 9\n'
                                'nixdeploy-probe-generation-c0ffee 9x\n'
                                'nixdeploy-probe-generation 7\n'
                                'nixdeploy-probe-generation-beef 8', mark) is None
