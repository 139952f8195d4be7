# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's side of a closure cascade: plain ssh to each host, the hops.

``CascadeDriver(...).run()`` takes the hosts of a play batch
(``_cascade_peer.Peer``: a name, a ``Host`` built from its connection vars,
its system), and for each
system: probes every host over ssh (the same sh probe as a push), lets
``_cascade.Cascade`` plan, and runs the hops in threads until every host
holds the closure or has failed. It returns one entry per host.

A hop is ``ssh SENDER sh`` (the controller's own ssh, the sender's connection
vars, host keys checked: ``Host.ssh``) running ``_copy_send.hop_script``:
``nix copy --to ssh-ng://RECEIVER PATH`` on the sender, logged in to the receiver through a
destination-constrained agent of its own (``_hop_agent``, where the trust and
access of a hop are told); what the controller's ssh knows about each host is
read in ``_peer_ssh``. Nothing is written on any host but the temp folder of
the hop, and what OpenSSH 10.1+ sshd makes for the forwarded agent, which the
hop removes again (``_hop_agent.hop_leftovers``).

Every wait of a cascade has a bound: the whole run (``CASCADE_TIMEOUT``),
and within it each host's probe (``PROBE_TIMEOUT``), each hop
(``HOP_TIMEOUT``) and each push from the controller
(``_copy_send.COPY_TIMEOUT``); a hop or push past its bound is stopped with
its process group.
"""

import resource
import tempfile
import threading
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (
    _cascade, _copy, _copy_send)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy._hop_agent import (
    HopAgent, HopError, hop_leftovers)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script, _diagnosis
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (
    PROGRAM_TIMEOUT, AddressError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._peer_ssh import (
    TimedOut, host_keys, key_files, run_no_tty)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix, _nix_stderr

# ssh sessions the controller opens at once to probe the hosts
PROBE_PARALLEL = 32
# hops of one cascade at once: each holds an ssh and its pipes (about three
# descriptors) and a thread in this worker; a tree of 128 senders at once
# still reaches 1,000 hosts in about 14 rounds instead of 11
MAX_HOPS_INFLIGHT = 128
# Seconds one hop may take: the same nix copy of one closure to one host as
# the controller's push, from a peer (_copy_send.COPY_TIMEOUT says why the value).
# Past it the controller's ssh to the sender is stopped with its process
# group; the sender sends no more and the controller pushes to the receiver.
HOP_TIMEOUT = _copy_send.COPY_TIMEOUT
# Seconds the probe of one host over ssh may take: the host's bound for any
# program of the collection (Host.sh's PROGRAM_TIMEOUT); the probe asks its
# store one query and plants one GC root.
PROBE_TIMEOUT = PROGRAM_TIMEOUT
# Seconds one cascade may take, from its closure listing to its last hop:
# four hops' bounds. A cascade is about log2(hosts) + 1 rounds of one
# closure's transfer (11 at 1,000 hosts), each minutes on a LAN; a hop that
# stalls costs its bound and the controller's push after it. Past it no hop
# starts and the hosts not served fail, each saying so. The hosts that wait
# for the cascade's answer from the batch server wait this and a margin
# (_cascade_stage.CASCADE_ANSWER_WAIT).
CASCADE_TIMEOUT = 4 * HOP_TIMEOUT
# what to do about a cascade that ran out of time
_LATE_FIX = ('deploy again (the hosts served keep what they got), or deploy fewer hosts at once '
             '(serial) if the cascade is slow rather than stuck')


def hops_inflight():
    """MAX_HOPS_INFLIGHT, or fewer under a low open-files limit (1,024 is
    a login shell's default on Debian): four descriptors a hop, 64 kept."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ValueError, OSError):
        return MAX_HOPS_INFLIGHT
    if soft == resource.RLIM_INFINITY:
        return MAX_HOPS_INFLIGHT
    return max(4, min(MAX_HOPS_INFLIGHT, (soft - 64) // 4))


# ------------------------------------------------------------------ the run
class CascadeDriver:
    """Cascade the systems of ``peers`` (Peer list, in inventory order).

    ``opts``: NixOptions of the controller's nix; ``settings``: the task's
    copy settings (``_copy_send.CopySettings``).
    """

    def __init__(self, opts, peers, settings, tmp_dir=None):
        self.opts = opts
        self.peers = list(peers)
        self.by_name = dict((p.name, p) for p in self.peers)
        self.settings = settings
        self.signing_key = settings.signing_key
        self.compress = settings.compress
        self.tmp_dir = tmp_dir
        self.sent = {}             # receiver -> store paths the hop that served it sent
        self.deadline = None       # time.monotonic() past which nothing new starts

    def left(self, bound):
        """Seconds a step with its own ``bound`` may take now: the bound, or
        what is left of CASCADE_TIMEOUT when less (0 or below: too late)."""
        return min(bound, self.deadline - time.monotonic())

    def run(self):
        """{host: entry}; hosts whose system the controller does not hold get
        no entry (their own task copies for them)."""
        self.deadline = time.monotonic() + CASCADE_TIMEOUT
        groups, closures = {}, {}
        for peer in self.peers:
            groups.setdefault(peer.path, []).append(peer)
        for path in groups:
            try:
                closures[path] = _copy_send.closure(
                    self.opts, path, timeout=max(0.1, self.left(_copy_send.CLOSURE_TIMEOUT)))
            except _nix.NixError:
                continue
        members = [p for p in self.peers if p.path in closures]
        _parallel(members, lambda peer: self._prepare(peer, closures[peer.path]),
                  PROBE_PARALLEL)
        entries = {}
        threads = []
        for path in closures:
            thread = threading.Thread(target=self._group, args=(
                path, groups[path], closures[path], entries))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        return entries

    # -------------------------------------------------------------- probe
    def _prepare(self, peer, closure):
        try:
            conf = peer.target.ssh_config()
            peer.host_keys = host_keys(conf)
            peer.key_files = key_files(peer.target, conf)
            peer.proxied = any(v not in ('', 'none') for option in ('proxyjump', 'proxycommand')
                               for v in conf.get(option) or [])
            self._probe(peer, [p['path'] for p in closure])
        except (AddressError, _copy.CopyError) as exc:
            peer.error = u'%s' % exc
            return
        except Exception as exc:  # pylint: disable=broad-except
            # in a thread: an unexpected error must fail this host, not pass silently
            peer.error = u'%s: preparing the cascade failed: %r' % (peer.name, exc)
            return
        invalid = set(peer.facts['invalid'])
        peer.missing = [p for p in closure if p['path'] in invalid]
        # before any hop: room for it
        problem = _copy.space_problem(peer.name, peer.facts, peer.missing,
                                      self.settings.free_space_margin)
        if problem:
            peer.error = problem
            return
        if peer.facts.get('gc_root_error'):
            peer.warnings.append(
                '%s: the copied system is not protected from a garbage collection on the host '
                'before its activation: %s' % (peer.name, peer.facts['gc_root_error']))
        peer.trust = self.settings.trust(peer.facts, peer.target)

    def _probe(self, peer, paths):
        # the GC root of the peer's system first (copy-probe.sh)
        probe = _copy.probe_script(peer.remote_nix_dir, paths=paths,
                                   root_key=peer.name, root_path=peer.path)
        timeout = self.left(PROBE_TIMEOUT)
        if timeout <= 0:
            raise _copy.CopyError('%s: not probed: the cascade\'s time limit of %ss '
                                  '(CASCADE_TIMEOUT) passed first; %s'
                                  % (peer.name, CASCADE_TIMEOUT, _LATE_FIX))
        # never an agent here (whatever ssh_config says): on OpenSSH 10.1+ a
        # forwarded one would make the ~/.ssh/agent/ the probe looks for
        try:
            rc, out, err = run_no_tty(peer.target.ssh_argv(first=['-o', 'ForwardAgent=no']),
                                      stdin_data=_copy.stdin_free(probe), timeout=timeout)
        except TimedOut:
            raise _copy.CopyError(_copy.timeout_message(
                peer.name, 'the probe of its store over ssh', round(timeout, 1),
                'look at the host\'s nix-daemon (another process holding its store lock) '
                'and deploy again'))
        facts = _copy.parse_probe(out, probe)
        if rc == _cascade.SSH_EXIT:
            why = _diagnosis.ssh_problem(err) or (err.strip().splitlines() or ['ssh failed'])[-1]
            peer.connection_lost = 'host key' not in why
            raise _copy.CopyError('%s: cannot reach the host over ssh to copy: %s' % (
                peer.name, why), err)
        if facts is None:
            raise _copy.CopyError('%s: no nix-store found on the target; set remote_nix_dir to '
                                  'the folder holding nix' % peer.name)
        if rc != 0 or not facts.get('complete'):
            said = (err or out).strip()[-2000:]
            raise _copy.CopyError(_diagnosis.fault_message(
                peer.name, said, 'when asked what it lacks', facts.get('store_mount')) or
                '%s: querying the target\'s store failed (rc %s): %s' % (peer.name, rc, said),
                err)
        peer.facts = facts

    # -------------------------------------------------------------- one system
    def _group(self, path, members, closure, entries):
        started = time.time()
        sizes = dict((p['path'], p['narSize']) for p in closure)
        ready = [m for m in members if m.error is None and m.trust is not None]
        receivers = [m.name for m in ready if m.missing]
        cascade = _cascade.Cascade(
            receivers, holders=[m.name for m in ready if not m.missing],
            sites=dict((m.name, m.site) for m in ready),
            can_send=[m.name for m in ready if m.can_send],
            peer_reachable=[m.name for m in ready if m.reachable_by_peers],
            max_inflight=hops_inflight())
        sign_error = None
        if self.signing_key and any(m.trust[2] == 'signed' for m in ready if m.missing):
            try:
                _copy_send.sign(self.opts, path, self.signing_key,
                                timeout=max(0.1, self.left(_copy_send.CLOSURE_TIMEOUT)))
            except _nix.NixError as exc:
                sign_error = u'%s' % exc
        if sign_error is None and receivers:
            self._drive(path, cascade)
        seconds = round(time.time() - started, 3)
        controller_paths = [p for r, s in cascade.got_from.items() if s == _cascade.CONTROLLER
                            for p in self.sent.get(r, [])]
        summary = {'system': path, 'hosts': len(members), 'receivers': len(receivers),
                   'seconds': seconds, 'controller_paths': len(controller_paths),
                   'controller_bytes': sum(sizes.get(p, 0) for p in controller_paths),
                   'hops': sum(len(v) for v in cascade.sent_to.values()),
                   'rounds': max([cascade.depth(r) for r in cascade.got_from] or [0])}
        for member in members:
            entries[member.name] = self._entry(member, cascade, closure, sizes, summary,
                                               sign_error)

    def _drive(self, path, cascade):
        cond = threading.Condition()

        def work(hop, timeout):
            try:
                kind, reason, sent = self._hop(path, hop, timeout)
            except Exception as exc:  # pylint: disable=broad-except
                # a bug or OS error in one hop must not hang the others
                kind, reason, sent = _cascade.FAILED, 'internal error: %s' % exc, None
            with cond:
                if kind == _cascade.OK:
                    receiver = self.by_name[hop.receiver]
                    self.sent[hop.receiver] = (sent if sent is not None
                                               else [p['path'] for p in receiver.missing])
                cascade.finished(hop, kind, reason)
                cond.notify_all()

        with cond:
            while True:
                hops = cascade.next_hops()
                for hop in hops:
                    # each hop in flight ends within its own bound: cond.wait is bounded
                    timeout = self.left(HOP_TIMEOUT)
                    if timeout <= 0:
                        # a hop from a peer goes to the controller, whose hop ends here too
                        cascade.finished(hop, _cascade.FAILED, (
                            'not started: the cascade\'s time limit of %ss (CASCADE_TIMEOUT) '
                            'passed first; %s' % (CASCADE_TIMEOUT, _LATE_FIX)))
                        continue
                    threading.Thread(target=work, args=(hop, timeout)).start()
                if not cascade.inflight:
                    if hops:
                        continue  # each ended at once, too late to start: plan again
                    return
                cond.wait()

    def _hop(self, path, hop, timeout):
        receiver = self.by_name[hop.receiver]
        if hop.sender == _cascade.CONTROLLER:
            return self._push(path, receiver, timeout)
        sender = self.by_name[hop.sender]
        folder = tempfile.mkdtemp(prefix='ndh-', dir=self.tmp_dir)
        agent = HopAgent(folder)
        try:
            try:
                sock = agent.start(sender.key_files + [k for k in receiver.key_files
                                                       if k not in sender.key_files],
                                   sender.host_keys, receiver.host_keys)
            except HopError as exc:
                return _cascade.FAILED, u'%s' % exc, None
            no_check_sigs = receiver.trust[0]
            script = _script.assignments(hop_leftovers(sender.facts)) + _copy_send.hop_script(
                sender.facts['nix_dir'], receiver.host_keys,
                receiver.store_uri(receiver.peer_target, compress=self.compress), path,
                self.settings.nix_copy_flags(), port=receiver.target.port,
                no_check_sigs=no_check_sigs)
            # the hop agent signs the login to the sender too, which binds the
            # forwarded agent to this session (what the constraints check)
            first = ['-o', 'IdentityAgent=%s' % sock, '-o', 'ForwardAgent=%s' % sock,
                     '-o', 'ControlMaster=no', '-o', 'ControlPath=none']
            try:
                rc, _out, err = run_no_tty(sender.target.ssh_argv(first=first),
                                           stdin_data=_copy.stdin_free(script), timeout=timeout)
            except TimedOut:
                return _cascade.STALLED, (
                    'the hop (nix copy on %s to %s) did not end within %ss and was stopped; '
                    '%s sends no more, the controller pushes instead; look at both hosts\' '
                    'nix-daemon and at the link between them' % (
                        hop.sender, hop.receiver, round(timeout, 1), hop.sender)), None
        finally:
            agent.stop()
        kind = _cascade.hop_failure(rc, err)
        if kind == _cascade.OK:
            return kind, '', _nix_stderr.sent_paths(err)
        return kind, _cascade.failure_reason(kind, err, rc), None

    def _push(self, path, receiver, timeout):
        try:
            sent = _copy_send.push(self.opts, path, receiver.store_uri(compress=self.compress),
                                   receiver.target.nix_env(), self.settings.nix_copy_flags(),
                                   no_check_sigs=receiver.trust[0], timeout=timeout)
        except AddressError as exc:
            return _cascade.FAILED, u'%s' % exc, None
        except _copy.CopyTimeout as exc:
            return _cascade.FAILED, '%s did not end within %ss and was stopped; %s' % (
                exc.message, round(exc.seconds, 1), _copy.COPY_STUCK_FIX), None
        except _nix.NixError as exc:
            if _copy_send.looks_unsigned(exc.stderr):
                why = _copy_send.unsigned_message(receiver.name, receiver.facts.get('user')
                                                  or receiver.target.user, exc.stderr)
                return _cascade.FAILED, why, None
            fault = _diagnosis.fault_message(
                receiver.name, exc.stderr, 'during the copy', receiver.facts.get('store_mount'))
            if fault:
                return _cascade.FAILED, fault, None
            problem = _diagnosis.ssh_problem(exc.stderr)
            if problem and 'host key' not in problem and 'sudo' not in problem:
                receiver.connection_lost = True
            reason = exc.nix_message() or exc.message
            return _cascade.FAILED, '%s: %s' % (problem, reason) if problem else reason, None
        return _cascade.OK, '', sent

    # -------------------------------------------------------------- answers
    def _entry(self, peer, cascade, closure, sizes, summary, sign_error):
        # the mode is the host's task's to add (_cascade_stage.py)
        result = {'path': peer.path, 'closure_paths': len(closure),
                  'closure_bytes': sum(sizes.values()), 'paths_sent': 0, 'bytes_sent': 0,
                  'changed': False, 'copied_from': None,
                  'sent_to': list(cascade.sent_to.get(peer.name, [])),
                  'hop_errors': list(cascade.errors.get(peer.name, [])),
                  'cascade': dict(summary, depth=cascade.depth(peer.name), site=peer.site)}
        if peer.error or peer.trust is None:
            return {'error': peer.error or '%s: the host was not probed' % peer.name,
                    'connection_lost': peer.connection_lost, 'result': result}
        if peer.warnings:
            result['warnings'] = list(peer.warnings)
        free_kb = peer.facts.get('free_kb')
        result.update(free_bytes=None if free_kb is None else free_kb * 1024,
                      gc_root=peer.facts.get('gc_root'))
        result.update(remote_nix_dir=peer.facts['nix_dir'], trust=peer.trust[2],
                      store_uri=peer.store_uri(compress=self.compress),
                      paths_missing=len(peer.missing),
                      bytes_missing=sum(p['narSize'] for p in peer.missing))
        if sign_error and peer.missing:
            return {'error': '%s: %s' % (peer.name, sign_error), 'result': result}
        if peer.name in cascade.failed:
            tried = cascade.errors.get(peer.name, [])
            return {'error': '%s: the cascade could not copy %s: %s' % (
                peer.name, peer.path, '; '.join(tried)),
                'connection_lost': peer.connection_lost, 'result': result}
        if peer.name in cascade.got_from:
            sent = self.sent.get(peer.name, [])
            result.update(copied_from=cascade.got_from[peer.name], changed=True,
                          paths_sent=len(sent), bytes_sent=sum(sizes.get(p, 0) for p in sent))
        return {'result': result}


def _parallel(items, action, limit):
    """``action(item)`` for every item, at most ``limit`` at a time."""
    gate = threading.Semaphore(limit)

    def one(item):
        with gate:
            action(item)

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
