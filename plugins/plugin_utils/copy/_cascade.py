# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning a closure cascade: who sends one system's closure to whom, and when.

Pure Python, no I/O: ``plugins/plugin_utils/copy/_peer.py`` runs the hops and
reports back here, the unit tests drive it in lockstep rounds (``simulate``).

The controller sends the closure to ONE host (the seed); from then on every
host that holds it sends it on to one more host at a time, so the holders
double each round: N hosts take about log2(N) + 1 rounds of one closure's
transfer time, and the controller's uplink carries one closure however many
hosts there are. Hosts that already hold the whole closure are holders from
the start (the controller then sends nothing at all).

Sites (``nix_site``, else the host's first tag or group): a site with no holder
is seeded first, from any holder, with one crossing; after that its hosts
are served from holders on the same site, so the closure crosses each
inter-site link once. Seeding other sites first costs no round (they then
double in parallel with the first).

Faults, by what the hop's failure says (``hop_failure``):
- ``sender_lost``: the controller lost its connection to the sender. The
  sender is dead for this run; its receiver goes back to the queue and gets
  the closure from another holder (or the controller, when no host can send).
- ``host_key``: the receiver, as the sender reached it, did not present the
  host key the controller knows for it. Another peer would see the same, so
  the hop fails, named, and the controller pushes directly, checking the key
  itself.
- ``unreachable``: the sender could not connect or log in to the receiver.
  One strike for each; a receiver with ``MAX_STRIKES`` strikes (from
  different senders) is unreachable from peers (firewalled, NAT) and gets a
  direct push, and never sends; a sender with ``MAX_STRIKES`` strikes stops
  sending.
- ``sender_broken``: the sender cannot send at all (no ssh client, agent
  forwarding refused, no temp folder): it stops sending, the receiver is
  queued again.
- ``failed``: Nix itself failed (say the receiver refused a path): the
  controller pushes directly, and that push's own error is the answer.
- ``stalled``: the hop did not end within its bound and was stopped. Either
  end may be stuck: the sender stops sending and the controller pushes to
  the receiver directly (that push has its own bound).
A failed push FROM the controller is final for that receiver.
"""

import re

CONTROLLER = 'controller'
DEFAULT_SITE = 'default'
MAX_STRIKES = 2

OK = 'ok'
SENDER_LOST = 'sender_lost'
SENDER_BROKEN = 'sender_broken'
HOST_KEY = 'host_key'
UNREACHABLE = 'unreachable'
FAILED = 'failed'
STALLED = 'stalled'
KINDS = (OK, SENDER_LOST, SENDER_BROKEN, HOST_KEY, UNREACHABLE, FAILED, STALLED)

# Exit codes of the hop script (plugins/plugin_utils/copy/_peer.py) that mean the
# SENDER cannot send; 255 is ssh's own: the controller lost the sender.
EXIT_NO_AGENT = 96
EXIT_NO_TMP = 97
EXIT_NO_SSH = 98
SSH_EXIT = 255

# What ssh (run by Nix on the sender) prints when it did not get through
# to the receiver; host key problems first, they are not a reachability issue.
_HOST_KEY_MARKERS = ('REMOTE HOST IDENTIFICATION HAS CHANGED', 'Host key verification failed',
                     'No ED25519 host key is known', 'No RSA host key is known',
                     'No ECDSA host key is known', 'host key is known for')
_UNREACHABLE_MARKERS = ('Connection refused', 'Connection timed out', 'No route to host',
                        'Network is unreachable', 'Permission denied', 'Could not resolve',
                        'not responding', 'Connection closed by', 'Connection reset',
                        'kex_exchange_identification', 'Too many authentication failures')


class Hop:
    """One transfer: ``sender`` (a host name or CONTROLLER) to ``receiver``."""

    __slots__ = ('sender', 'receiver', 'direct')

    def __init__(self, sender, receiver, direct=False):
        self.sender = sender
        self.receiver = receiver
        # a push from the controller that is not the seed (a fallback)
        self.direct = direct

    @property
    def label(self):
        return '%s -> %s' % (self.sender, self.receiver)

    def __eq__(self, other):
        return isinstance(other, Hop) and (self.sender, self.receiver) == (
            other.sender, other.receiver)

    def __hash__(self):
        return hash((self.sender, self.receiver))

    def __repr__(self):
        return 'Hop(%s%s)' % (self.label, ', direct' if self.direct else '')


def site_of(hostvars, name=None):
    """A host's site: ``nix_site``, else its first tag (``nix_tags``), else its
    first group other than ``all``/``ungrouped``, else DEFAULT_SITE."""
    site = hostvars.get('nix_site')
    if site not in (None, ''):
        return str(site)
    tags = hostvars.get('nix_tags') or []
    if isinstance(tags, (list, tuple)) and tags:
        return str(tags[0])
    groups = [g for g in (hostvars.get('group_names') or []) if g not in ('all', 'ungrouped')]
    if groups:
        return str(groups[0])
    return DEFAULT_SITE


def hop_failure(rc, stderr):
    """The kind of a failed hop, from the exit code of the controller's ssh to
    the sender (which runs the hop script) and what came back on stderr."""
    if rc == 0:
        return OK
    if rc == SSH_EXIT:
        return SENDER_LOST
    if rc in (EXIT_NO_AGENT, EXIT_NO_TMP, EXIT_NO_SSH):
        return SENDER_BROKEN
    text = stderr or ''
    if any(marker in text for marker in _HOST_KEY_MARKERS):
        return HOST_KEY
    if any(marker in text for marker in _UNREACHABLE_MARKERS):
        return UNREACHABLE
    return FAILED


_NOISE = re.compile(r'^(@|IT IS POSSIBLE|Someone could|It is also possible|Please contact|'
                    r'Add correct host key|Offending|  remove with|  ssh-keygen|The fingerprint|'
                    r'SHA256:|copying |warning: )')


def failure_reason(kind, stderr, rc=None):
    """A short reason for a failed hop, in ssh's or Nix's own words."""
    lines = [ln.strip() for ln in (stderr or '').splitlines() if ln.strip()]
    useful = [ln for ln in lines if not _NOISE.match(ln)]
    said = '; '.join(useful[-3:])[:600]
    if kind == HOST_KEY:
        return ('host key verification failed: the receiver did not present the host key the '
                'controller knows for it (%s)' % said)
    if kind == SENDER_LOST:
        return 'the controller lost its connection to the sender (%s)' % (said or 'ssh exit 255')
    if kind == SENDER_BROKEN:
        why = {EXIT_NO_AGENT: 'the sender\'s sshd did not forward the agent (AllowAgentForwarding)',
               EXIT_NO_TMP: 'no private temp folder on the sender',
               EXIT_NO_SSH: 'no ssh client or nix on the sender'}.get(rc, 'the sender cannot send')
        return '%s%s' % (why, ' (%s)' % said if said else '')
    if kind == UNREACHABLE:
        return 'the sender could not reach the receiver (%s)' % said
    return said or 'failed (exit %s)' % rc


class Cascade:
    """The state of one system's cascade.

    ``receivers``: hosts that lack part of the closure, in a stable order;
    ``holders``: hosts that hold all of it already; ``sites``: host -> site;
    ``can_send``: hosts able to send (ssh client and nix there; default all);
    ``peer_reachable``: receivers peers may try (the controller knows their
    host key and has a key for them; default all), the others get direct pushes;
    ``max_inflight``: at most this many hops at once (each is an ssh and a
    Nix process pair on the controller's side, with their pipes: unbounded, a
    batch of 1,000 hosts would start about 500 and run out of open files).

    ``next_hops()`` gives the hops to start now; ``finished(hop, kind,
    reason)`` records how one ended. Done when ``busy`` is empty and
    ``next_hops()`` gives nothing.
    """

    def __init__(self, receivers, holders=(), sites=None, can_send=None, peer_reachable=None,
                 max_inflight=None):
        self.order = list(receivers)
        self.max_inflight = max_inflight
        self.sites = dict(sites or {})
        everyone = list(receivers) + list(holders)
        self.able = set(everyone if can_send is None else can_send)
        self.pending = list(receivers)
        self.direct = set(r for r in receivers
                          if peer_reachable is not None and r not in peer_reachable)
        self.held = list(holders)            # hosts holding the closure, in order of arrival
        self.dead = set()                    # senders the controller lost
        self.inflight = {}                   # receiver -> Hop
        self.busy = set()                    # host senders now sending
        self.got_from = {}                   # receiver -> sender
        self.failed = {}                     # receiver -> reason (final)
        self.errors = {}                     # receiver -> [hop errors]
        self.sent_to = {}                    # sender -> [receivers]
        self.strikes = {}                    # receiver or sender -> count
        self.tried = {}                      # receiver -> senders that failed it

    # ---------------------------------------------------------- queries
    def site(self, name):
        return self.sites.get(name, DEFAULT_SITE)

    def _can_send(self, name):
        return (name in self.able and name not in self.dead
                and self.strikes.get(('sender', name), 0) < MAX_STRIKES)

    def _senders(self):
        return [h for h in self.held if self._can_send(h)]

    def _becoming_senders(self):
        """Receivers in flight that will be able to send when they arrive."""
        return [r for r in self.inflight if self._can_send(r)]

    def _site_seeded(self, site):
        return any(self.site(h) == site for h in self._senders()) or any(
            self.site(r) == site for r in self._becoming_senders())

    def done(self):
        return not self.pending and not self.inflight

    def _full(self):
        return bool(self.max_inflight) and len(self.inflight) >= self.max_inflight

    # ---------------------------------------------------------- planning
    def next_hops(self):
        """Hops to start now (each marks its receiver in flight)."""
        hops = []
        for receiver in [r for r in self.pending if r in self.direct]:
            if self._full():
                return hops
            hops.append(self._start(Hop(CONTROLLER, receiver, direct=True)))
        peers = [r for r in self.pending if r not in self.direct]
        if self._full():
            return hops
        if peers and not self._senders() and not self._becoming_senders():
            if any(self._can_send(r) for r in peers):
                hops.append(self._start(Hop(CONTROLLER, self._seed(peers))))
            else:
                # no host could ever send it on: the controller serves them all now
                self.direct.update(peers)
                return hops + self.next_hops()
        for sender in self._senders():
            if self._full():
                return hops
            if sender in self.busy:
                continue
            receiver = self._pick(sender)
            if receiver is not None:
                hops.append(self._start(Hop(sender, receiver)))
        if not hops and not self.inflight and self.pending:
            # nobody left who could serve the rest from a peer: the controller does
            self.direct.update(self.pending)
            return self.next_hops()
        return hops

    def _seed(self, peers):
        """The controller's one host: on the site with the most receivers
        left, a host that can then send on."""
        able = [r for r in peers if self._can_send(r)]
        counts = {}
        for name in peers:
            counts[self.site(name)] = counts.get(self.site(name), 0) + 1
        best = max(sorted(counts), key=lambda s: counts[s])
        on_site = [r for r in able if self.site(r) == best]
        return (on_site or able)[0]

    def _pick(self, sender):
        candidates = [r for r in self.pending if r not in self.direct
                      and sender not in self.tried.get(r, ())]
        if not candidates:
            return None
        # 1. a site no holder serves yet: one crossing, then it doubles on its own
        unseeded = {}
        for name in candidates:
            site = self.site(name)
            if site != self.site(sender) and not self._site_seeded(site):
                unseeded.setdefault(site, []).append(name)
        if unseeded:
            site = max(sorted(unseeded), key=lambda s: len(unseeded[s]))
            able = [r for r in unseeded[site] if self._can_send(r)]
            return (able or unseeded[site])[0]
        # 2. the sender's own site
        same_site = [r for r in candidates if self.site(r) == self.site(sender)]
        if same_site:
            able = [r for r in same_site if self._can_send(r)]
            return (able or same_site)[0]
        # 3. other sites are served by their own holders: stay off their links
        return None

    def _start(self, hop):
        self.pending.remove(hop.receiver)
        self.inflight[hop.receiver] = hop
        if hop.sender != CONTROLLER:
            self.busy.add(hop.sender)
        return hop

    # ---------------------------------------------------------- outcomes
    def finished(self, hop, kind, reason=''):
        """Record how ``hop`` ended (``kind`` one of KINDS)."""
        receiver, sender = hop.receiver, hop.sender
        self.inflight.pop(receiver, None)
        self.busy.discard(sender)
        if kind == OK:
            self.got_from[receiver] = sender
            self.held.append(receiver)
            self.sent_to.setdefault(sender, []).append(receiver)
            return
        self.errors.setdefault(receiver, []).append('%s: %s' % (hop.label, reason or kind))
        if sender == CONTROLLER:
            self.failed[receiver] = reason or kind
            return
        if kind == SENDER_LOST:
            self.dead.add(sender)
        elif kind == SENDER_BROKEN:
            self.able.discard(sender)
        elif kind in (HOST_KEY, FAILED):
            self.direct.add(receiver)
        elif kind == STALLED:
            self.able.discard(sender)
            self.direct.add(receiver)
        elif kind == UNREACHABLE:
            self.tried.setdefault(receiver, set()).add(sender)
            for who in (('receiver', receiver), ('sender', sender)):
                self.strikes[who] = self.strikes.get(who, 0) + 1
            if self.strikes[('receiver', receiver)] >= MAX_STRIKES:
                # peers cannot reach it (firewall, NAT): nor, likely, can it reach them
                self.direct.add(receiver)
                self.able.discard(receiver)
        self.pending.append(receiver)

    # ---------------------------------------------------------- results
    def depth(self, name):
        """Hops between the controller and ``name`` (the seed is 1)."""
        steps, seen = 0, set()
        while name in self.got_from and name not in seen:
            seen.add(name)
            name = self.got_from[name]
            steps += 1
        return steps


def simulate(cascade, outcome=None, max_rounds=1000):
    """Run ``cascade`` in lockstep rounds (every hop of a round takes as long
    as any other). ``outcome(hop, round)`` -> (kind, reason) or a kind; default
    every hop succeeds. Returns the list of rounds (lists of hops)."""
    rounds = []
    while len(rounds) < max_rounds:
        hops = cascade.next_hops()
        if not hops and not cascade.inflight:
            break
        started = list(cascade.inflight.values())
        for hop in started:
            hop_outcome = outcome(hop, len(rounds)) if outcome else OK
            kind, reason = hop_outcome if isinstance(hop_outcome, tuple) else (hop_outcome, '')
            cascade.finished(hop, kind, reason)
        rounds.append(started)
    return rounds
