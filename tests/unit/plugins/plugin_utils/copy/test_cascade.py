"""The cascade planner of plugin_utils/copy/_cascade.py: rounds, sites, faults,
and what a hop said.

The planner is pure: ``simulate`` runs it in lockstep rounds. The
controller's side of the hops has tests of its own (test_peer.py,
test_hop_agent.py).
"""

import math
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _cascade, _peer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy._cascade import (  # noqa: E402
    CONTROLLER, Cascade, Hop, simulate)


def controller_hops(cascade):
    """How many receivers got the closure from the controller itself."""
    return sum(1 for _r, s in cascade.got_from.items() if s == CONTROLLER)


def names(count, prefix='h'):
    return ['%s%d' % (prefix, i) for i in range(1, count + 1)]


def hops_of(rounds):
    return [[hop.label for hop in r] for r in rounds]


# ------------------------------------------------------------------ doubling
@pytest.mark.parametrize('count', [1, 2, 3, 4, 5, 8, 16, 100])
def test_holders_double_each_round_and_the_controller_sends_once(count):
    cascade = Cascade(names(count))
    rounds = simulate(cascade)
    # the controller's seed, then doubling: ceil(log2 N) + 1 rounds
    assert len(rounds) == int(math.ceil(math.log(count, 2))) + 1
    assert controller_hops(cascade) == 1
    assert sorted(cascade.got_from) == sorted(names(count)) and cascade.done()
    sizes = [len(r) for r in rounds]
    assert sum(sizes) == count and sizes[:2] == [1, 1][:len(sizes)]
    assert all(later <= 2 * earlier for earlier, later in zip(sizes[1:], sizes[2:]))


def test_eight_hosts_tree():
    cascade = Cascade(names(8))
    assert hops_of(simulate(cascade)) == [
        ['controller -> h1'], ['h1 -> h2'], ['h1 -> h3', 'h2 -> h4'],
        ['h1 -> h5', 'h2 -> h6', 'h3 -> h7', 'h4 -> h8']]
    assert [cascade.depth(h) for h in names(8)] == [1, 2, 2, 3, 2, 3, 3, 4]
    assert cascade.sent_to['h1'] == ['h2', 'h3', 'h5']


def test_hosts_that_hold_it_serve_and_the_controller_sends_nothing():
    cascade = Cascade(['h3', 'h4', 'h5'], holders=['h1', 'h2'])
    rounds = simulate(cascade)
    assert controller_hops(cascade) == 0 and len(rounds) == 2
    assert hops_of(rounds)[0] == ['h1 -> h3', 'h2 -> h4']


def test_nothing_to_do():
    cascade = Cascade([], holders=['h1'])
    assert simulate(cascade) == [] and cascade.done()


# ------------------------------------------------------------------ sites
def test_each_site_is_entered_once_and_seeded_first():
    hosts = ['a1', 'a2', 'a3', 'a4', 'b1', 'b2', 'b3', 'b4']
    cascade = Cascade(hosts, sites=dict((h, h[0]) for h in hosts))
    rounds = simulate(cascade)
    assert len(rounds) == 4  # no slower than one site
    crossings = [(s, r) for r, s in cascade.got_from.items()
                 if s != CONTROLLER and s[0] != r[0]]
    assert crossings == [('a1', 'b1')]
    assert hops_of(rounds)[1] == ['a1 -> b1']  # the other site first


def test_the_controller_seeds_the_biggest_site():
    hosts = ['a1', 'b1', 'b2', 'b3', 'c1']
    cascade = Cascade(hosts, sites=dict((h, h[0]) for h in hosts))
    rounds = simulate(cascade)
    assert hops_of(rounds)[0] == ['controller -> b1']
    crossings = sorted(r for r, s in cascade.got_from.items()
                       if s != CONTROLLER and s[0] != r[0])
    assert crossings == ['a1', 'c1']  # one per other site


def test_site_of():
    assert _cascade.site_of({'nix_site': 'fra', 'nix_tags': ['vps']}) == 'fra'
    assert _cascade.site_of({'nix_tags': ['vps', 'hk'], 'group_names': ['hk', 'vps']}) == 'vps'
    assert _cascade.site_of({'group_names': ['all', 'ungrouped', 'nixos']}) == 'nixos'
    assert _cascade.site_of({}) == _cascade.DEFAULT_SITE


# ------------------------------------------------------------------ faults
def test_a_lost_sender_is_never_used_again_and_its_receiver_is_served():
    def outcome(hop, _round):
        return _cascade.SENDER_LOST if hop.label == 'h1 -> h3' else _cascade.OK
    cascade = Cascade(names(8))
    simulate(cascade, outcome)
    assert 'h1' in cascade.dead and cascade.done() and not cascade.failed
    assert cascade.got_from['h3'] not in ('h1', CONTROLLER)
    assert cascade.errors['h3'] == ['h1 -> h3: sender_lost']
    assert all(s != 'h1' for r, s in cascade.got_from.items() if r not in ('h2',))


def test_when_the_only_holder_dies_the_controller_seeds_again():
    def outcome(hop, _round):
        return _cascade.SENDER_LOST if hop.sender == 'h1' else _cascade.OK
    cascade = Cascade(names(4))
    simulate(cascade, outcome)
    # h2 lost its only holder: the controller seeds once more, then h2 is served
    assert controller_hops(cascade) == 2 and cascade.got_from['h2'] not in ('h1', CONTROLLER)
    assert cascade.done() and not cascade.failed


def test_host_key_failure_gets_a_direct_push_at_once():
    def outcome(hop, _round):
        if hop.receiver == 'h3' and hop.sender != CONTROLLER:
            return _cascade.HOST_KEY, 'host key verification failed'
        return _cascade.OK
    cascade = Cascade(names(4))
    simulate(cascade, outcome)
    assert cascade.got_from['h3'] == CONTROLLER
    assert cascade.errors['h3'] == ['h1 -> h3: host key verification failed']
    assert not cascade.strikes  # the sender is not blamed


def test_a_receiver_no_peer_reaches_gets_a_direct_push_and_never_sends():
    def outcome(hop, _round):
        if hop.receiver == 'h2' and hop.sender != CONTROLLER:
            return _cascade.UNREACHABLE, 'No route to host'
        return _cascade.OK
    cascade = Cascade(names(8))
    simulate(cascade, outcome)
    tried = [e.split(':')[0] for e in cascade.errors['h2']]
    assert len(tried) == _cascade.MAX_STRIKES and len(set(tried)) == _cascade.MAX_STRIKES
    assert cascade.got_from['h2'] == CONTROLLER and 'h2' not in cascade.sent_to
    assert cascade.done() and not cascade.failed


def test_a_sender_that_reaches_nobody_stops_sending():
    def outcome(hop, _round):
        if hop.sender == 'h1' and hop.receiver != 'h2':
            return _cascade.UNREACHABLE, 'Connection timed out'
        return _cascade.OK
    cascade = Cascade(names(8))
    simulate(cascade, outcome)
    assert cascade.strikes[('sender', 'h1')] == _cascade.MAX_STRIKES
    assert cascade.sent_to['h1'] == ['h2'] and cascade.done() and not cascade.failed


def test_a_broken_sender_and_a_nix_failure():
    def outcome(hop, _round):
        if hop.sender == 'h1' and hop.receiver == 'h2':
            return _cascade.SENDER_BROKEN
        if hop.receiver == 'h4' and hop.sender != CONTROLLER:
            return _cascade.FAILED, 'lacks a valid signature'
        return _cascade.OK
    cascade = Cascade(names(4))
    simulate(cascade, outcome)
    assert 'h1' not in cascade.able and 'h1' not in cascade.sent_to
    assert cascade.got_from['h4'] == CONTROLLER and cascade.done()


def test_a_failed_push_from_the_controller_is_final():
    def outcome(hop, _round):
        if hop.receiver == 'h1':
            return _cascade.FAILED, 'connection refused'
        return _cascade.OK
    cascade = Cascade(names(3))
    simulate(cascade, outcome)
    assert cascade.failed == {'h1': 'connection refused'}
    assert cascade.got_from['h2'] == CONTROLLER and cascade.got_from['h3'] == 'h2'


def test_hosts_peers_cannot_use_get_direct_pushes_beside_the_cascade():
    cascade = Cascade(names(4), peer_reachable=['h1', 'h2', 'h3'], can_send=['h1', 'h2', 'h3'])
    rounds = simulate(cascade)
    assert sorted(h.label for h in rounds[0]) == ['controller -> h1', 'controller -> h4']
    assert rounds[0][0].direct and not rounds[0][1].direct
    assert cascade.done() and len(rounds) == 3


def test_nobody_can_send_means_a_push_to_everyone():
    cascade = Cascade(names(4), can_send=[])
    rounds = simulate(cascade)
    assert controller_hops(cascade) == 4 and cascade.done()
    assert len(rounds) == 1  # a push to everyone at once


def test_hop_identity():
    assert Hop('h1', 'h2') == Hop('h1', 'h2', direct=True)
    assert len({Hop('h1', 'h2'), Hop('h1', 'h2')}) == 1
    assert repr(Hop(CONTROLLER, 'h2', direct=True)) == 'Hop(controller -> h2, direct)'


# ------------------------------------------------------------------ what a hop said
# stderr as the lab's hops really print it
IMPOSTOR = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
The fingerprint for the ED25519 key sent by the remote host is
SHA256:hznQ4x7yBSmsSrsSF8xtGFW44FqQdQQYaNLqww0IvwQ.
Host key for nixdeploy-receiver has changed and you have requested strict checking.
Host key verification failed.
error: cannot open connection to remote store 'ssh-ng://root@10.213.1.16': error: unexpected end-of-file
"""
NO_ROUTE = ("ssh: connect to host 10.213.1.18 port 22: No route to host\r\n"
            "error: cannot open connection to remote store 'ssh-ng://root@10.213.1.18'\n")
UNSIGNED = "error: cannot add path '/nix/store/x-a' because it lacks a valid signature\n"


@pytest.mark.parametrize('rc,stderr,kind', [
    (0, '', _cascade.OK),
    (255, 'Connection to 10.213.1.12 closed by remote host.', _cascade.SENDER_LOST),
    (96, 'nixdeploy hop: no forwarded ssh agent', _cascade.SENDER_BROKEN),
    (97, '', _cascade.SENDER_BROKEN),
    (1, IMPOSTOR, _cascade.HOST_KEY),
    (1, NO_ROUTE, _cascade.UNREACHABLE),
    (1, 'root@10.0.0.3: Permission denied (publickey).', _cascade.UNREACHABLE),
    (1, UNSIGNED, _cascade.FAILED),
])
def test_hop_failure(rc, stderr, kind):
    assert _cascade.hop_failure(rc, stderr) == kind


def test_failure_reason_keeps_what_ssh_and_nix_said():
    text = _cascade.failure_reason(_cascade.HOST_KEY, IMPOSTOR)
    assert text.startswith('host key verification failed: the receiver did not present')
    assert 'Host key verification failed.' in text and '@@@' not in text
    assert 'No route to host' in _cascade.failure_reason(_cascade.UNREACHABLE, NO_ROUTE)
    assert 'AllowAgentForwarding' in _cascade.failure_reason(_cascade.SENDER_BROKEN, '', 96)
    assert _cascade.failure_reason(_cascade.FAILED, UNSIGNED).endswith('valid signature')


def test_hops_in_flight_are_capped_at_fleet_size():
    # 1,000 receivers: unbounded, a round would start up to 500 hops at once
    # (each an ssh and its pipes in the controller's worker)
    hosts = names(1000)
    cascade = Cascade(hosts, max_inflight=128)
    rounds = simulate(cascade)
    assert max(len(r) for r in rounds) == 128
    assert sorted(cascade.got_from) == sorted(hosts)
    assert controller_hops(cascade) == 1
    assert len(rounds) <= 15, len(rounds)
    uncapped = simulate(Cascade(hosts))
    assert max(len(r) for r in uncapped) > 128 and len(uncapped) == 11


def test_direct_pushes_are_capped_too():
    hosts = names(300)
    cascade = Cascade(hosts, peer_reachable=[], max_inflight=50)
    rounds = simulate(cascade)
    assert [len(r) for r in rounds] == [50] * 6
    assert controller_hops(cascade) == 300


def test_the_cap_follows_the_open_files_limit(monkeypatch):
    monkeypatch.setattr(_peer.resource, 'getrlimit', lambda kind: (1024, 4096))
    assert _peer.hops_inflight() == min(_peer.MAX_HOPS_INFLIGHT, (1024 - 64) // 4)
    monkeypatch.setattr(_peer.resource, 'getrlimit', lambda kind: (64, 4096))
    assert _peer.hops_inflight() == 4
    monkeypatch.setattr(_peer.resource, 'getrlimit', lambda kind: (1 << 20, 1 << 20))
    assert _peer.hops_inflight() == _peer.MAX_HOPS_INFLIGHT
