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
    assert _probe.reached(str(tmp_path), 'm1') is None
    _probe.keep_reached(str(tmp_path), 'm1', 'fd42::7')
    assert _probe.reached(str(tmp_path), 'm1') == 'fd42::7'
    assert _probe.reached(str(tmp_path), 'm2') is None


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
