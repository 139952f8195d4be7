# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each host's worker pays for its batch, by the batch's size (issue 64).

    python -m benchmarks.batch_per_host [--hosts 250,1000] [--repeat 3]
                                        [--before COLLECTIONS] [--output FILE]
                                        [--dir FOLDER] [--hold [T,...]] [--forks F]
                                        [--processes]

Every host of a play batch runs the batch machinery once per phase in its
own Ansible worker; one host (the first) computes for the batch, the others
read. This drives the collection's real per-host functions, in the order a
deploy runs them, for every host of one batch of N, in one process and
temp folder (``C.DEFAULT_LOCAL_TMP``), no Ansible, no Nix, no lab:

  eval     nix_eval's ``_serial_gate`` (a batch server's work, foreseen
           by the first host), then ``stage/_stage.batch_entry``
           (``task_batch``, the server's key, the first host foreseeing
           every host's request, ``BatchServer.request`` and ``answer``),
           then ``record_facts`` as a host whose request the task templated
           does
  build    nix_build's ``_build_work`` through ``batch_answer`` (the
           server's key, ``BatchServer.request`` with the hosts expected,
           ``BatchServer.answer``)
  copy, closure, publish, channel
           ``NixdeployAction.batch_answer`` of a work whose first host
           foresees the batch's requests (its key, the foreseen requests,
           ``BatchServer.request`` and ``answer``), then the batch's size
           from the entry, as publish and channel read it

Every phase goes through ``plugin_utils/task/_batch_work.answer``; a
version from before it (``--before``) is driven through the entry points
it had (``from_batch``, ``_from_batch``).

The detached processes are not forked: the harness plays them, outside the
clock (a stream's entry is written just before the host looks for it;
``.running`` is held by the harness; where one process serves the run, a
work's registration with it is played too). Where one batch server
answers, this checkout is measured twice: "now", each answer given as its
host begins to wait (a host that came before its wave had it), and "now,
ready", each answer there at the host's first look (a host that came after
its wave, which reads its file and nothing else: the way a version before
the server is played). Where a host may ask the run's process over its
socket (``BatchServer.ask``), "now" runs that process for real, in threads
of the harness (its ``fork`` starts a thread): a host asks over the socket
and each wave answers it as it asks; a host's figure is its own thread's
CPU and reads and writes. A version from
before the batch server ran the copy, closure, publish, channel and serial
works in the first host's worker (``Batch``): there the computing host's
figure holds that work. Printed: CPU
seconds (the host's thread's time) of the computing host and of the other hosts (their
median and largest), at each N, and their growth from the smallest N to
the largest. The growth of the other hosts' figure is what grows with the
batch in every worker: it should be about 0.

``--before`` names an ``ansible_collections`` tree of another version of
the collection (say a copy of ``plugins/`` from before a change, in
``<dir>/ansible_collections/nixdeploy/fleet/plugins``): it is measured the
same way, beside this checkout. Each version runs in a child Python of its
own. Figures only: nothing here asserts on time.

``--dir`` names the folder each run makes its temp folder in (default: the
system's temp folder, as Ansible's local temp is on its disk). A file
system can cost far more to create a file in than the code around it: on
ext4, a folder whose neighbours saw many files made and removed (a temp
folder after a test run) makes each new inode cost hundreds of
microseconds of kernel time (the allocator skips every inode removed in
the last minutes), against about 10 on tmpfs. ``--dir /dev/shm`` measures
the collection's own cost; both versions are measured in the same folder.

``--hold T`` (seconds, a list: ``--hold 1,5``; alone: 5, about what a
fleet's evaluation or copy takes) plays the batch as a run with forks F
(``--forks``, 50) does, phase after phase, each version the same way: the
first F hosts of the batch arrive while the batch's work of the phase is
computed, each in a thread of its own (the computing host first; the others
once its work has started), and each phase's work takes T seconds; then
the other hosts come one after another, their answers ready (the build
foresees nothing in either version: a later host's request is answered by
a wave of its own, at once). What computes, and for T:

  before   (a version with ``_batch_work`` and no batch server) the
           serial gate, copy, closure, publish and channel are ONCE: the
           first host computes in its worker under the batch's flock, its
           compute held T (the serial gate's own, one small file, is not
           held); the others run their real lock polls. The evaluation's
           stream process and the build's service are threads of the
           harness running their real ``_run`` (the service its real
           ``_serve`` loop), whose work is played: the evaluation puts
           every host's entry after T, the build's first wave answers after
           T, through the real ``put`` (the entry, then its doorbell rung);
           the hosts wait on their real doorbells
  now      the run's serving process, for real, in threads of the harness
           (as the "now" rows), each stem's first wave answering after T

A host's figures are its own thread's: CPU, bytes read and written, and its
wake-ups (voluntary context switches, /proc/thread-self/status: each sleep,
poll or wait it returned from). Printed for the computing host, the hosts
that waited (the first F less it) and the hosts that came later.

In threads, 50 hosts and the serving threads pass one interpreter lock
among them: each pass a wake-up, and CPU, that a run never pays.
``--processes`` (with ``--hold``) plays the same batch with every host a
process of its own, as Ansible runs each host's task in a worker forked
from ansible-playbook (``_ProcessHarness``): for each phase, each host's
part runs in a child forked from the harness, its patches in place, and
sends back its own process's figures (CPU from ``getrusage``, bytes from
/proc/self/io, wake-ups from /proc/self/status, and its page faults: the
pages of the fork it writes first, which a forked worker pays too), taken
around the host's work only. The first F hosts of a phase are forked
together (the computing host first, the others once it says, on a pipe,
that its work has started), the later ones one after another. What serves
is each version's own process, forked for real by the host that starts it
(its double fork, ``setsid``, closed descriptors), only the Nix work in it
played as above: this checkout's run process (its socket, its stems), each
stem's first wave after T; the version before's evaluation stream and build
service, reached by the hosts through their real files and doorbells, and
its ONCE compute held T in the first host's child under its real flock.
Nothing is played in the harness's own threads any more; the only parts
played are the Nix work and the hosts' variables (as in every mode). The
harness adopts the detached processes (``PR_SET_CHILD_SUBREAPER``), reaps
them, and stops by its pid any left ``STUCK`` seconds after the last phase.
"""

import argparse
import contextlib
import ctypes
import fcntl
import gc
import json
import os
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# a host's CPU: its worker's own thread (where this checkout's serving
# process runs in threads of the harness, their CPU is not the host's)
_clock = time.thread_time
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (250, 1000)
REPEAT = 3
# the phases whose first host foresees the batch's requests
BATCH_PHASES = ('copy', 'closure', 'publish', 'channel')
# every phase a host runs, in a deploy's order (the serial gate is in eval's)
PHASES = ('eval', 'build') + BATCH_PHASES
# --hold: the hosts that arrive while a phase's work is computed (a run's
# forks), and how long the work takes alone (a fleet's evaluation or copy
# takes seconds)
FORKS = 50
HOLD = 5.0
# how long the harness waits for a host or a played process before it
# calls the run stuck (every wait of it is bounded)
STUCK = 300
# the batch files' folder in the run's temporary folder (both versions)
BATCH_FOLDER = 'nixdeploy-batch'


def collections_of_checkout():
    """An ansible_collections tree holding this checkout (tests/collection.py)."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from tests.collection import collections_path
    return collections_path()


# ------------------------------------------------------------------ child
class _Node(object):
    """A task or play as the batch functions read it (its uuid, its parent,
    its play, its arguments)."""

    def __init__(self, uuid, parent=None, play=None):
        self._uuid, self._parent, self._play = uuid, parent, play
        self.args = {}


def _system(host, kind):
    return '/nix/store/%032d-%s-%s' % (abs(hash(host)) % 10 ** 32, kind, host)


def _modules(base_dir):
    """The measured version's modules (the child's sys.path names it), as
    the harness drives them, and the ones it patches: (modules, _stream,
    what uses the stream, what uses the service or server)."""
    from ansible import constants as C
    from ansible_collections.nixdeploy.fleet.plugins.action import nix_build, nix_eval
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import _eval
    try:
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage import (
            _stage)
    except ImportError:  # a version whose evaluation stage was one flat folder
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import (
            _eval_stage as _stage)
    try:
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run
    except ImportError:  # a version whose phases' names were in _batch
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (
            _batch as _run)
    try:
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _stream
    except ImportError:  # a version whose batch server has no stream beneath
        _stream = None
    try:
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (
            _batch_server)
    except ImportError:  # a version from before the one batch server
        _batch_server = None
    try:
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _batch_work
    except ImportError:  # a version from before the one entry point
        _batch_work = None
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import (
        NixdeployAction)
    C.DEFAULT_LOCAL_TMP = base_dir
    modules = dict(nix_build=nix_build, nix_eval=nix_eval, role_vars=_role_vars,
                   eval=_eval, eval_stage=_stage, batch=_run,
                   action=NixdeployAction, batch_work=_batch_work,
                   batch_server=_batch_server)
    return modules, _stream, _batch_work or _stage, _batch_work or nix_build


class _Harness(object):
    """One batch of ``size`` hosts through every phase, host after host;
    with ``hold`` (seconds), phase after phase, the first ``forks`` hosts
    waiting for the phase's work (``run_held``)."""

    # held mode: whether the serving processes are forked for real (each
    # host a process of its own, ``_ProcessHarness``) or played in threads
    real_forks = False

    def __init__(self, size, base_dir, waiting=True, hold=None, forks=FORKS):
        # where the one batch server answers: as each host begins to wait
        # for its answer (waiting: it came before its wave had it), or
        # before the host's first look (its answer ready, as a version
        # before the server is played: the stream's entry written just
        # before the host looks for it)
        self.waiting = waiting
        self.hold, self.forks = hold, forks
        self.modules, _stream, stream_user, service_user = _modules(base_dir)
        self.base_dir = base_dir
        self.hosts = ['h%04d' % i for i in range(size)]
        # what the harness does in a host's thread that the host does not
        # pay (``off_clock``): its own per thread, hosts run in threads
        self._off = threading.local()
        self.held = []
        # the threads that play the serving processes
        self.serving = []
        self.entries = {}
        self.task_vars = {}
        # held mode: the phases whose work has started (the others of the
        # first F hosts arrive then), and the works held already
        self._started = {}
        self._held_kinds = set()
        self._mutex = threading.Lock()
        play = _Node('play-1')
        block = _Node('block-1', play=play)
        self.tasks = dict((phase, _Node('task-%s' % phase, parent=block)) for phase in PHASES)
        if hold is not None:
            self._patch_held(_stream, stream_user, service_user)
        else:
            self._patch_processes(_stream, stream_user, service_user)

    @contextlib.contextmanager
    def off_clock(self):
        """What the harness does within it is not the host's (its CPU and
        bytes are taken off the figure of the thread's host)."""
        started, io_before = _clock(), _io()
        try:
            yield
        finally:
            off = self._off
            off.seconds = getattr(off, 'seconds', 0.0) + _clock() - started
            off.io = getattr(off, 'io', 0) + _io() - io_before

    def _patch_processes(self, _stream, stream_user, service_user):
        """The detached processes, played by the harness off the clock."""
        harness = self
        _batch_server = self.modules['batch_server']

        def fork(stream, _work):
            running = os.open(stream.running_path, os.O_WRONLY | os.O_CREAT, 0o600)
            fcntl.flock(running, fcntl.LOCK_EX)
            harness.held.append(running)

        def entry(stream, host, *args, **kwargs):
            with harness.off_clock():
                if kwargs.get('path'):
                    # a batch server's answer: the entry, and whether its
                    # host opened the wave
                    stream.put_at(kwargs['path'], {'answer': harness.answer(stream.kind, host),
                                                   'opened': host == harness.hosts[0]})
                else:
                    stream.put(host, harness.entries[(stream.kind, host)])
            return stream.__class__.__mro__[1].entry(stream, host, *args, **kwargs)

        if _stream is None:
            self._patch_server(_batch_server, service_user)
            return

        class LabStream(_stream.Stream):
            _fork = fork

        LabStream.entry = entry

        stream_user.Stream = LabStream
        if _batch_server is None:
            class LabService(_stream.Service):
                _fork = fork

            LabService.entry = entry
            service_user.Service = LabService
        else:
            class LabServer(_batch_server.BatchServer):
                _fork = fork

            LabServer.entry = entry
            service_user.BatchServer = LabServer

    def _patch_server(self, _batch_server, server_user):
        """The batch server of this version: its process played by holding
        its ``.running`` lock, each host's answer written just before the
        host looks for it, both off the clock. Where a host may ask the
        run's process over its socket, the waiting path runs that process
        for real (``_serve_in_threads``)."""
        harness = self
        if self.waiting and hasattr(_batch_server.BatchServer, 'ask'):
            self._serve_in_threads(_batch_server, server_user)
            return

        class LabServer(_batch_server.BatchServer):
            def __init__(self, *args, **kwargs):
                super(LabServer, self).__init__(*args, **kwargs)
                self.process.fork = self._fork
                self.asking = None
                real_wait = self.answers.wait

                def wait(path, *args):
                    # the wave's answer, written as the host begins to wait
                    with harness.off_clock():
                        self.answers.put(path, {'answer': harness.answer(self.kind, self.asking),
                                                'opened': self.asking == harness.hosts[0]})
                    return real_wait(path, *args)
                self.answers.wait = wait
                if getattr(self, 'run', None) is not None:
                    # the run's one serving process: a work's registration
                    # is played, the process's lock held, off the clock
                    self.run.register = self._register

            def ask(self, host, request, *args, **kwargs):
                self.ready(host, request)
                return super(LabServer, self).ask(host, request, *args, **kwargs)

            def request(self, host, request, *args, **kwargs):
                self.ready(host, request)
                return super(LabServer, self).request(host, request, *args, **kwargs)

            def ready(self, host, request):
                if not harness.waiting and host != harness.hosts[0]:
                    # ready: written before the host's first look, off the clock
                    with harness.off_clock():
                        path = self.answer_path(host, _batch_server.as_json(request))
                        if not os.path.exists(path):
                            self.answers.put(path, {'answer': harness.answer(self.kind, host),
                                                    'opened': False})

            def _register(self, _host, _kind, _message, _files_of):
                with harness.off_clock():
                    if self.run.token() is None:
                        self._fork(None)
                        with open(self.run.alive_path, 'w') as handle:
                            handle.write('harness')
                    with open(self.alive_path, 'w') as handle:
                        handle.write('harness')

            def _fork(self, _work, keep=()):
                running = os.open(self.process.running_path, os.O_WRONLY | os.O_CREAT, 0o600)
                fcntl.flock(running, fcntl.LOCK_EX)
                harness.held.append(running)

            def answer(self, host, *args, **kwargs):
                self.asking = host
                return super(LabServer, self).answer(host, *args, **kwargs)

        server_user.BatchServer = LabServer

    def thread_fork(self, process, work):
        """The ``fork`` of this checkout's ``DetachedProcess``: its work in
        a thread of this process, its ``.running`` lock held while it runs
        (the harness's part off the clock; its CPU, reads and writes are not
        the host's thread's)."""
        import socket
        with self.off_clock():
            running = open(process.running_path, 'a')
            fcntl.flock(running, fcntl.LOCK_EX)
            serving = work.__self__
            # the caller closes its listening socket once this returns
            serving.listening = socket.socket(fileno=os.dup(serving.listening.fileno()))
            self.start_thread(work, running)

    def start_thread(self, work, running):
        """``work()`` in a thread of the harness, ``running`` (an open file
        whose lock says the process runs) closed when it ends."""
        def run():
            try:
                work()
            finally:
                running.close()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.serving.append(thread)

    def _serve_in_threads(self, _batch_server, server_user):
        """This checkout's waiting path: the run's serving process runs for
        real in threads of this process (``thread_fork``), and each wave
        answers a host as that host begins to wait: when it asks over the
        socket, or when it starts to wait on its doorbell (a host that
        registers the work)."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _stem_serving
        harness = self
        arrived, arrived_lock = {}, threading.Lock()

        def arrival(kind, host):
            with arrived_lock:
                return arrived.setdefault((kind, host), threading.Event())

        def serve_function(kind, _name):
            def serve(_context, requests, put):
                for host in requests:
                    if not arrival(kind, host).wait(60):
                        raise RuntimeError('%s never asked its %s answer' % (host, kind))
                    put(host, harness.answer(kind, host))
            return serve
        _stem_serving.serve_function = serve_function
        stem_ask = _stem_serving.StemServing.ask

        def ask(stem, host, request, waiter):
            kept = stem_ask(stem, host, request, waiter)
            if kept:
                arrival(stem.files.kind, host).set()
            return kept
        _stem_serving.StemServing.ask = ask

        class LabServer(_batch_server.BatchServer):
            def __init__(self, *args, **kwargs):
                super(LabServer, self).__init__(*args, **kwargs)
                process, kind = self.process, self.kind
                process.fork = lambda work, keep=(): harness.thread_fork(process, work)
                self.asking = None
                doorbell_wait = self.answers.wait

                def wait(path, *args):
                    arrival(kind, self.asking).set()
                    return doorbell_wait(path, *args)
                self.answers.wait = wait

            def answer(self, host, *args, **kwargs):
                self.asking = host
                return super(LabServer, self).answer(host, *args, **kwargs)

        server_user.BatchServer = LabServer

    # ------------------------------------------------------------ held mode
    def _patch_held(self, _stream, stream_user, service_user):
        """Held mode (``run_held``): each phase's work takes ``hold``
        seconds, in each version's own place of it."""
        _batch_server = self.modules['batch_server']
        if _batch_server is not None and hasattr(_batch_server.BatchServer, 'ask'):
            self._serve_held(_batch_server, service_user)
        elif _stream is not None and _batch_server is None and self.modules['batch_work']:
            self._patch_held_before(_stream, stream_user, self.modules['nix_build'])
        else:
            raise SystemExit('--hold plays a version with _batch_work and its stream and '
                             'service (da1c887), or one whose hosts ask the run\'s process '
                             '(BatchServer.ask); not this one')

    def _serve_held(self, _batch_server, server_user):
        """This checkout held: the run's serving process for real in threads
        (``thread_fork``); each stem's first wave answers after ``hold``
        (``played_wave``), later waves at once. A phase's work has started
        once its first host registered its stem with the process."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _stem_serving
        harness = self

        def serve_function(kind, _name):
            def serve(_context, requests, put):
                harness.played_wave(kind, requests, put)
            return serve
        _stem_serving.serve_function = serve_function

        class LabServer(_batch_server.BatchServer):
            def __init__(self, *args, **kwargs):
                super(LabServer, self).__init__(*args, **kwargs)
                process = self.process
                if not harness.real_forks:
                    process.fork = lambda work, keep=(): harness.thread_fork(process, work)
                else:
                    process._detach = harness.counted(process._detach)

            def _start(self, *args, **kwargs):
                here = super(LabServer, self)._start(*args, **kwargs)
                if here:
                    harness.started(self.kind)
                return here

        server_user.BatchServer = LabServer

    def _patch_held_before(self, _stream, batch_work, nix_build):
        """A version from before the batch server, held: ONCE's compute
        holds its flock ``hold`` seconds in the first host's worker; the
        evaluation's stream and the build's service run their real
        ``DetachedWork._run`` (the service its real ``_serve``) in threads
        of the harness, their work played (``played_stream``, the build's
        waves ``played_wave``), their answers given through their real
        ``put``, which rings each host's doorbell (with ``--processes``,
        in their own processes: ``_before_detached``)."""
        harness = self
        batch_work.Stream, batch_work.Service = self._before_detached(_stream)

        class LabStage(nix_build.BuildStage):
            # made in the host's worker as before; only its wave is played
            def wave(self, requests, put):
                harness.played_wave('build', requests, put)
        nix_build.BuildStage = LabStage

        # the version's own Batch, not the one an earlier run of this
        # process put there: that one would hold with its own harness too
        batch = batch_work.__dict__.setdefault('_unplayed_batch', batch_work.Batch)

        class LabBatch(batch):
            def results(self, compute, host=None):
                kind = self.kind

                def held():
                    # in the first host's worker, under the batch's flock
                    harness.started(kind)
                    harness.hold_work(kind)
                    return compute()
                return super(LabBatch, self).results(held, host)
        batch_work.Batch = LabBatch

    def _before_detached(self, _stream):
        """(Stream, Service) of a version from before the batch server, held:
        the evaluation's work played, the service's loop real; each run in
        a thread of the harness, or (``real_forks``) in its own detached
        process, forked for real and counted (``counted``)."""
        harness = self
        real_fork = _stream.Stream._fork

        def fork(stream, work):
            played = work
            if not isinstance(stream, _stream.Service):
                # the evaluation itself, played; the service's loop is real
                def played(put, kind=stream.kind):
                    return harness.played_stream(kind, put)
            if harness.real_forks:
                # the version's own detached process (``--processes``)
                real_fork(stream, played)
            else:
                with harness.off_clock():
                    running = open(stream.running_path, 'a')
                    fcntl.flock(running, fcntl.LOCK_EX)
                    harness.start_thread(lambda: stream._run(played, os.getpid()), running)
            harness.started(stream.kind)

        real_detach = _stream.Stream._detach

        def detach(stream, keep):
            return harness.counted(lambda: real_detach(stream, keep))()

        class LabStream(_stream.Stream):
            _fork, _detach = fork, detach

        class LabService(_stream.Service):
            _fork, _detach = fork, detach

        return LabStream, LabService

    def started(self, kind):
        """The first host's work of ``kind`` has started."""
        self.work_started(kind).set()

    @staticmethod
    def counted(detach):
        """A detached process's ``_detach``, counted where processes are
        forked for real (``_ProcessHarness``)."""
        return detach

    def work_started(self, kind):
        with self._mutex:
            return self._started.setdefault(kind, threading.Event())

    def hold_work(self, kind):
        """The batch's work of ``kind``, the first time: ``hold`` seconds
        (the serial gate's, one small file: none)."""
        with self._mutex:
            first = kind not in self._held_kinds
            self._held_kinds.add(kind)
        if first and kind in PHASES:
            time.sleep(self.hold)

    def played_wave(self, kind, requests, put):
        """A wave of ``kind`` for ``requests`` ({host: request}): each
        host's answer, after ``hold`` for the kind's first wave."""
        self.hold_work(kind)
        for host in requests:
            put(host, self.answer(kind, host))

    def played_stream(self, kind, put):
        """The before version's evaluation process: every host's entry
        after ``hold``; what the batch shares, {}, is its end mark."""
        self.hold_work(kind)
        for host in self.hosts:
            put(host, self.entries[(kind, host)])
        return {}

    def answer(self, kind, host):
        """A batch server's answer to ``host`` of ``kind``."""
        if kind == 'serial':
            return {'batch': 1, 'stop': None, 'failed': []}
        if (kind, host) in self.entries:
            return self.entries[(kind, host)]
        return {'answer': {'published': True}, 'batch': {'hosts': len(self.hosts), 'processes': 1}}

    def action(self, module, phase, host, args):
        """An action of ``module`` as Ansible hands it to ``host``'s worker."""
        cls = module.ActionModule if module is not None else self.modules['action']
        action = cls.__new__(cls)
        task_vars = self.task_vars[host]
        filled = self.modules['role_vars'].Filled(args, ['flake', 'attr'], [])
        action.__dict__.update(
            host=host, task_vars=task_vars, _vars=task_vars, _task=self.tasks[phase],
            _loader=_Loader(), filled=filled, _args=args, _opts=None, _check_mode=False,
            _play_context=_PlayContext())
        return action

    def eval_args(self, host):
        return {'flake': 'path:/lab/flake',
                'attr': 'nixosConfigurations.%s.config.system.build.toplevel' % host,
                'platform': 'nixos', 'max_fail_percentage': None}

    def prepare(self):
        """Each host's answers, as the detached processes would write them."""
        _eval = self.modules['eval']
        # every host's own variables, as Ansible's hostvars hold them: the
        # first host foresees each host's request from them
        hostvars = dict((host, {'inventory_hostname': host,
                                'nix_flake': self.eval_args(host)['flake'],
                                'nix_attr': self.eval_args(host)['attr']})
                        for host in self.hosts)
        for host in self.hosts:
            # as Ansible hands them to the worker (made by the main process)
            self.task_vars[host] = {
                'inventory_hostname': host, 'ansible_play_batch': list(self.hosts),
                'ansible_play_hosts': list(self.hosts),
                'ansible_play_hosts_all': list(self.hosts), 'hostvars': hostvars}
            request = _eval.normalised(_eval.host_request(
                host, self.eval_args(host), {}, lambda flake: flake))
            self.entries[('eval', host)] = {
                'request': request, 'answer': {'drv_path': _system(host, 'drv'),
                                               'out_path': _system(host, 'system')}}
            self.entries[('build', host)] = {'request': self.build_request(host),
                                             'result': {'built': False}}

    def build_request(self, host):
        return {'drv': _system(host, 'drv'), 'eval': None, 'build_on': 'controller'}

    def host(self, host):
        """Every phase of ``host``'s worker (this process's CPU seconds)."""
        for phase in PHASES:
            self.step(phase, host)

    def step(self, phase, host):
        """``phase`` of ``host``'s worker."""
        if phase == 'eval':
            self._eval_step(host)
        elif phase == 'build':
            self._build_step(host)
        else:
            self._batch_step(phase, host)

    def _eval_step(self, host):
        mods = self.modules
        args = self.eval_args(host)
        action = self.action(mods['nix_eval'], 'eval', host, args)
        mods['nix_eval'].ActionModule._serial_gate(action, None)
        entry, _here, hosts, _request = mods['eval_stage'].batch_entry(action, args, None)
        # the batch's answer to this host's own request, not a wave of its own
        assert entry['answer']['out_path'] == _system(host, 'system'), entry
        mods['batch'].record_facts(self.base_dir, hosts, {host: {
            'nix_out_path': _system(host, 'system'), 'nix_drv_path': _system(host, 'drv')}})

    def _build_step(self, host):
        mods = self.modules
        build_args = {'gc_root_dir': '/nix/var/nix/gcroots/nixdeploy', 'timeout': None,
                      'builder_min_free_mb': None}
        action = self.action(mods['nix_build'], 'build', host, build_args)
        if mods['batch_work'] is None:
            mods['nix_build'].ActionModule._from_batch(action, host, self.build_request(host))
        else:
            action.batch_answer(action._build_work(self.build_request(host)))

    def _batch_step(self, phase, host):
        mods = self.modules
        action = self.action(None, phase, host, {})
        wanted = {'path': _system(host, 'system')}

        def foreseen(batch):
            return dict((name, {'path': _system(name, 'system')}) for name in batch)

        def compute(batch):
            return {'hosts': dict((name, {'request': {'path': _system(name, 'system')},
                                          'answer': {'published': True}})
                                  for name in batch), 'processes': 1}
        parts = [{'nix_bin': 'nix'}, False, 'file:///lab/cache', None]
        if mods['batch_work'] is None:
            _entry, data, _here = mods['action'].from_batch(
                action, phase, parts, compute, wanted)
            len(data['hosts'])
        elif mods['batch_server'] is None:
            data = action.batch_answer(mods['batch_work'].BatchWork(
                phase, parts, wanted, compute)).data
            len(data['hosts'])
        else:
            action.batch_answer(mods['batch_work'].BatchWork(
                phase, parts, wanted, None, foresee=foreseen)).entry['batch']['hosts']

    def run(self):
        """{computing, others: [seconds]}: each host's CPU, in the order
        the hosts came (the first computes)."""
        self.prepare()
        seconds, io_bytes = [], []
        for number, host in enumerate(self.hosts):
            # the collector's passes cost by the size of the whole heap (the
            # harness's, here): off the clock, between hosts
            if number % 100 == 0:
                gc.collect()
            gc.disable()
            self._off.seconds, self._off.io = 0.0, 0
            started, io_before = _clock(), _io()
            self.host(host)
            seconds.append(_clock() - started - self._off.seconds)
            io_bytes.append(_io() - io_before - self._off.io)
            gc.enable()
        self._end()
        return {'computing': seconds[0], 'others': seconds[1:],
                'computing_io': io_bytes[0], 'others_io': io_bytes[1:]}

    def _end(self):
        for descriptor in self.held:
            os.close(descriptor)
        # the serving processes end once every stem is served (a second or
        # so): before their folder is removed
        for thread in self.serving:
            thread.join(STUCK)
            if thread.is_alive():
                raise RuntimeError('a played serving process still runs after %ds' % STUCK)

    def run_held(self):
        """Phase after phase, as a run with forks F plays the batch: the
        first F hosts together, the first computing (or registering its
        work), the others once its work has started; then, once they have
        all ended, the later hosts one after another (one at a time: no
        host's thread waits for the interpreter's lock behind another's
        where nothing is waited for; in a run they come F at a time).
        {host: [CPU seconds, bytes, wake-ups, page faults]} summed over the
        phases (page faults: ``_ProcessHarness`` only, 0 here)."""
        self.prepare()
        figures = dict((host, [0.0, 0, 0, 0]) for host in self.hosts)
        for phase in PHASES:
            # the collector's passes cost by the size of the whole heap:
            # between phases, off the clock
            gc.collect()
            gc.disable()
            try:
                self._group(phase, self.hosts[:self.forks], figures)
                for host in self.hosts[self.forks:]:
                    self._group(phase, [host], figures)
            finally:
                gc.enable()
        self._end()
        return figures

    def _group(self, phase, group, figures):
        """``phase`` of the hosts of ``group`` at once, each in a thread."""
        failed = []

        def play(host):
            try:
                self._off.seconds, self._off.io = 0.0, 0
                waits = _wakeups()
                started, io_before = _clock(), _io()
                self.step(phase, host)
                seconds = _clock() - started - self._off.seconds
                io_bytes = _io() - io_before - self._off.io
                figures[host][2] += _wakeups() - waits
                figures[host][0] += seconds
                figures[host][1] += io_bytes
            except BaseException:  # pylint: disable=broad-except
                failed.append('%s, %s: %s' % (host, phase, traceback.format_exc()))
        threads = [threading.Thread(target=play, args=(host,), daemon=True) for host in group]
        rest = threads
        if group[0] == self.hosts[0]:
            # the others come while the first host's work is computed
            threads[0].start()
            deadline = time.monotonic() + STUCK
            while not self.work_started(phase).wait(0.01) and threads[0].is_alive():
                if time.monotonic() > deadline:
                    raise RuntimeError('%s never started its %s work' % (group[0], phase))
            rest = threads[1:]
        for thread in rest:
            thread.start()
        for thread in threads:
            thread.join(STUCK)
            if thread.is_alive():
                raise RuntimeError('a host of the %s phase still waits after %ds' % (phase, STUCK))
        if failed:
            raise RuntimeError('\n'.join(failed))


# prctl's option that makes a process the parent of its orphaned
# descendants (the detached serving processes a host forks)
PR_SET_CHILD_SUBREAPER = 36


class _ProcessHarness(_Harness):
    """Held mode with every host a process of its own (``--processes``), as
    in Ansible, where each host's task runs in a worker forked from the main
    process: each host's part of a phase runs in a child forked from the
    harness (its patches in place), which sends its own figures back on a
    pipe: its process's CPU (``getrusage``), bytes (/proc/self/io) and
    wake-ups (/proc/self/status), taken around the host's work only. No host
    passes the interpreter's lock to another, nor to a serving process.

    What serves is each version's real process, forked for real by the host
    that starts it (``real_forks``; its double fork and ``setsid``), only
    the Nix work in it played: this checkout's run process (its socket, its
    stems' threads), each stem's first wave answering after ``hold``; the
    version before's evaluation stream (every host's entry after ``hold``)
    and build service (its real ``_serve`` loop, its first wave after
    ``hold``), the hosts waiting on their real doorbells and files; its ONCE
    compute held ``hold`` in the first host's child, under its real flock.
    What in the thread mode was an event crosses processes here: the first
    host's "its work has started" comes on a pipe (``started``), and "this
    kind's work was held once" is a file made with O_EXCL (``hold_work``),
    since the work may be held in a host's child or a serving process, and a
    run process that ended between phases is forked afresh from a host.

    The harness makes itself the reaper of orphans (``PR_SET_CHILD_SUBREAPER``):
    the detached processes become its children, so it reaps them and, should
    one outlive ``STUCK`` after the last phase, stops it by its pid.
    ``counts``: hosts' children forked and reaped, detached processes started
    (each leaves a file named by its pid as it starts, ``counted``) and
    reaped, and the ones left that had to be stopped (0 in a sound run)."""

    real_forks = True

    def __init__(self, size, base_dir, hold, forks=FORKS):
        super(_ProcessHarness, self).__init__(size, base_dir, hold=hold, forks=forks)
        self.marks = os.path.join(base_dir, 'harness-held')
        os.mkdir(self.marks)
        # (the write end of the "work started" pipe, the pid that may write it)
        self._signal = None
        self.counts = {'forked': 0, 'reaped': 0, 'started': 0, 'detached': 0, 'left': 0}
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), 'prctl(PR_SET_CHILD_SUBREAPER)')

    def started(self, kind):
        """Told to the harness on the first host's pipe (a process that
        inherited the pipe's number but not the duty, a serving process,
        tells nothing)."""
        if self._signal is None or self._signal[1] != os.getpid():
            return
        with self.off_clock():
            try:
                os.write(self._signal[0], kind.encode('utf-8') + b'\n')
            except OSError:
                pass  # the harness stopped listening: its phase went on

    def counted(self, detach):
        """``detach`` (a detached process's ``_detach``, run in it as it
        starts), its process counted first: a file named by its pid, which
        ``_end`` matches against the processes it reaped."""
        def counting(*args):
            os.close(os.open(os.path.join(self.marks, 'detached.%d' % os.getpid()),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return detach(*args)
        return counting

    def hold_work(self, kind):
        """``hold`` seconds, the first time a process of the run holds
        ``kind``'s work (the serial gate's: none)."""
        if kind not in PHASES:
            return
        with self.off_clock():
            try:
                os.close(os.open(os.path.join(self.marks, kind),
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                return
        time.sleep(self.hold)

    def _group(self, phase, group, figures):
        """``phase`` of the hosts of ``group`` at once, each in a child
        process: the first host of the batch first, the others once its
        work has started; every child reaped before this returns."""
        children, failed = [], []
        try:
            rest = group
            if group[0] == self.hosts[0]:
                reader, writer = os.pipe()
                try:
                    children.append(self._fork_host(phase, group[0], writer))
                finally:
                    os.close(writer)
                self._await_start(phase, group[0], reader)
                rest = group[1:]
            for host in rest:
                children.append(self._fork_host(phase, host))
        finally:
            deadline = time.monotonic() + STUCK
            for child in children:
                self._collect(phase, child, figures, failed, deadline)
        self._reap_detached()
        if failed:
            raise RuntimeError('\n'.join(failed))

    def _fork_host(self, phase, host, starts=None):
        """(pid, the pipe its figures come on, host): ``host``'s child,
        forked; ``starts``: the pipe it says its work has started on."""
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            self._host_process(phase, host, starts, writer)
        os.close(writer)
        self.counts['forked'] += 1
        return pid, reader, host

    def _host_process(self, phase, host, starts, writer):
        """The host's child: its figures (or its failure) on ``writer``,
        then its end, without the harness's exit handlers."""
        code, payload = 1, {'error': 'no figures'}
        try:
            self._signal = None if starts is None else (starts, os.getpid())
            payload = {'figures': self._host_figures(phase, host)}
            code = 0
        except BaseException:  # pylint: disable=broad-except
            payload = {'error': '%s, %s: %s' % (host, phase, traceback.format_exc())}
        try:
            data = json.dumps(payload).encode('utf-8')
            while data:
                data = data[os.write(writer, data):]
        finally:
            os._exit(code)  # pylint: disable=protected-access

    def _host_figures(self, phase, host):
        """[CPU seconds, bytes, wake-ups, page faults] of this process's
        ``phase`` of ``host`` (what the harness does off the clock taken
        off). The page faults (minor: a page the fork shares, copied at
        the child's first write to it, a reference count's included) are
        part of the CPU: a worker forked from ansible-playbook pays them
        too, by the pages its work touches."""
        self._off.seconds, self._off.io = 0.0, 0
        waits = _wakeups('self')
        before = resource.getrusage(resource.RUSAGE_SELF)
        io_before = _io('self')
        self.step(phase, host)
        after = resource.getrusage(resource.RUSAGE_SELF)
        seconds = _cpu(after) - _cpu(before) - self._off.seconds
        io_bytes = _io('self') - io_before - self._off.io
        return [seconds, io_bytes, _wakeups('self') - waits, after.ru_minflt - before.ru_minflt]

    def _await_start(self, phase, host, reader):
        """Until the first host says its ``phase`` work has started (or has
        ended without: its pipe closes), within ``STUCK``; ``reader``
        closed."""
        deadline, told = time.monotonic() + STUCK, b''
        try:
            while phase.encode('utf-8') not in told.split(b'\n'):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError('%s never started its %s work' % (host, phase))
                if select.select([reader], [], [], left)[0]:
                    chunk = os.read(reader, 4096)
                    if not chunk:
                        return  # it ended: the others come now
                    told += chunk
        finally:
            os.close(reader)

    def _collect(self, phase, child, figures, failed, deadline):
        """``child``'s figures added to ``figures`` (or its failure to
        ``failed``), the child reaped; one that sends nothing by
        ``deadline`` is stopped by its pid."""
        pid, reader, host = child
        data = b''
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([reader], [], [], left)[0]:
                    os.kill(pid, signal.SIGKILL)
                    data = json.dumps({'error': 'no figures after %ds' % STUCK}).encode()
                    break
                chunk = os.read(reader, 65536)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(reader)
            os.waitpid(pid, 0)
            self.counts['reaped'] += 1
        told = json.loads(data.decode('utf-8')) if data else {'error': 'it sent nothing'}
        if 'figures' not in told:
            failed.append('%s, %s: %s' % (host, phase, told.get('error')))
            return
        for number, value in enumerate(told['figures']):
            figures[host][number] += value

    def _reap_detached(self):
        """The detached processes that have ended (the harness adopted
        them), reaped and counted; the hosts' children are reaped already."""
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.counts['detached'] += 1

    def _end(self):
        """The job's end, as ansible-playbook's exit takes its temporary
        folder: the batch files' folder removed, which ends a serving
        process that waits for more work (this checkout's waits a few
        seconds once it serves nothing). Then every detached process reaped
        once it has ended, within ``STUCK``; one still there then is stopped
        by its pid and counted in ``left``."""
        shutil.rmtree(os.path.join(self.base_dir, BATCH_FOLDER), ignore_errors=True)
        deadline = time.monotonic() + STUCK
        while time.monotonic() < deadline and _children():
            self._reap_detached()
            time.sleep(0.05)
        for pid in _children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.counts['left'] += 1
        self._reap_detached()
        # every detached process that started, reaped or stopped here
        self.counts['started'] = len([name for name in os.listdir(self.marks)
                                      if name.startswith('detached.')])


def _cpu(usage):
    """A ``getrusage`` figure's CPU seconds (user and system)."""
    return usage.ru_utime + usage.ru_stime


def _children():
    """The pids of this process's children (Linux's /proc: each process's
    parent), zombies included."""
    found, me = [], os.getpid()
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name, 'rb') as handle:
                line = handle.read()
        except OSError:
            continue  # it ended as this looked
        # "pid (command) state ppid ...": the command may hold any byte
        if int(line[line.rfind(b')') + 2:].split()[1]) == me:
            found.append(int(name))
    return found


def _io(who='thread-self'):
    """Bytes this thread (``who``: 'self', this process) has read and
    written through system calls so far (Linux's /proc/thread-self/io:
    rchar + wchar): unlike CPU seconds, the same in every run of the same
    code, whatever else the machine runs."""
    with open('/proc/%s/io' % who) as handle:
        fields = dict(line.split(':', 1) for line in handle.read().splitlines())
    return int(fields['rchar']) + int(fields['wchar'])


def _wakeups(who='thread-self'):
    """How often this thread (``who``: 'self', this process's main thread)
    has slept and woken so far (Linux's /proc/thread-self/status: voluntary
    context switches): each sleep, poll or blocking wait it returned from,
    and each wait for the interpreter's lock that blocked."""
    with open('/proc/%s/status' % who) as handle:
        for line in handle:
            if line.startswith('voluntary_ctxt_switches:'):
                return int(line.split(':', 1)[1])
    return 0


class _Loader(object):
    @staticmethod
    def get_basedir():
        return '/lab'


class _PlayContext(object):
    check_mode = False


def child(size, repeat, waiting=True):
    """The best of ``repeat`` runs (each in a fresh folder), as JSON data."""
    runs = []
    for _number in range(repeat):
        with tempfile.TemporaryDirectory(prefix='nixdeploy-batch-per-host-') as base_dir:
            runs.append(_Harness(size, base_dir, waiting).run())
    best = min(runs, key=lambda run: statistics.median(run['others']))
    return {'n': size, 'computing': min(run['computing'] for run in runs),
            'others_median': statistics.median(best['others']),
            'others_max': max(best['others']),
            'others_p90': sorted(best['others'])[int(len(best['others']) * 0.9)],
            'computing_io': best['computing_io'],
            'others_io': statistics.median(best['others_io'])}


def child_held(size, repeat, hold, forks, processes=False):
    """Held mode (``_Harness.run_held``): the best of ``repeat`` runs, as
    JSON data: the computing host's figures, and the median and p90 of the
    hosts that waited (the first ``forks`` less it) and of the later ones,
    each group's from the run where its median CPU was lowest.
    ``processes``: each host a process of its own (``_ProcessHarness``);
    the row's ``counts`` then sum its processes over the runs."""
    runs, counts = [], {}
    for _number in range(repeat):
        with tempfile.TemporaryDirectory(prefix='nixdeploy-batch-per-host-') as base_dir:
            if processes:
                harness = _ProcessHarness(size, base_dir, hold, forks)
            else:
                harness = _Harness(size, base_dir, hold=hold, forks=forks)
            figures = harness.run_held()
        for name, count in getattr(harness, 'counts', {}).items():
            counts[name] = counts.get(name, 0) + count
        hosts = sorted(figures)
        runs.append({'computing': figures[hosts[0]],
                     'waiting': [figures[host] for host in hosts[1:forks]],
                     'later': [figures[host] for host in hosts[forks:]]})
    row = {'n': size, 'hold': hold, 'forks': forks, 'processes': processes,
           'reported': sum(1 for run in runs for host in
                           [run['computing']] + run['waiting'] + run['later']
                           if host[0] > 0 and host[1] > 0),
           'computing': min(run['computing'][0] for run in runs),
           'computing_io': min(run['computing'][1] for run in runs),
           'computing_wakeups': min(run['computing'][2] for run in runs)}
    for group in ('waiting', 'later'):
        if not runs[0][group]:
            continue  # a batch no larger than the forks: nobody came later
        best = min((run[group] for run in runs),
                   key=lambda hosts: statistics.median(host[0] for host in hosts))
        seconds = sorted(host[0] for host in best)
        row.update({group + '_median': statistics.median(seconds),
                    group + '_p90': seconds[int(len(seconds) * 0.9)],
                    group + '_io': statistics.median(host[1] for host in best),
                    group + '_wakeups': statistics.median(host[2] for host in best)})
        if processes:
            row[group + '_faults'] = statistics.median(host[3] for host in best)
    if processes:
        row['counts'] = counts
        row['computing_faults'] = min(run['computing'][3] for run in runs)
    return row


# ------------------------------------------------------------------ parent
def measure(collections, sizes, repeat, path='waiting', folder=None, hold=None, forks=FORKS,
            processes=False):
    """[figures at each size] of the collection under ``collections``;
    ``path``: where the one batch server answers the other hosts ('waiting'
    or 'ready', ``_Harness``); ``folder``: where each run's temp folder is
    made (None: the system's temp folder); ``hold``: held mode, each
    phase's work taking that many seconds, ``forks`` hosts waiting for it;
    ``processes``: held mode with each host a process of its own."""
    rows = []
    env = dict(os.environ, TMPDIR=folder) if folder else None
    held = [] if hold is None else ['--hold', str(hold), '--forks', str(forks)]
    if processes:
        held.append('--processes')
    for size in sizes:
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), '--child', '--collections', collections,
             '--hosts', str(size), '--repeat', str(repeat), '--path', path] + held,
            check=True, stdout=subprocess.PIPE, cwd=REPO, env=env)
        rows.append(json.loads(out.stdout.decode('utf-8')))
    return rows


def growth(rows, field):
    first, last = rows[0][field], rows[-1][field]
    return (last - first) / first * 100.0 if first else 0.0


def run(sizes=SIZES, repeat=REPEAT, before=None, log=None, folder=None, holds=None,
        forks=FORKS, processes=False):
    """{'versions': {name: [rows]}} for this checkout (and ``before``),
    each run's temp folder made in ``folder`` (None: the system's);
    ``holds``: held mode at each of these seconds (rows 'before' and
    'now', each with its hold), ``forks`` hosts waiting; ``processes``:
    held, each host a process of its own."""
    if holds:
        return run_held(sizes, repeat, before, log, folder, holds, forks, processes)
    versions = {}
    if before:
        if log:
            log('  batch per host: before (%s) ...' % before)
        versions['before'] = measure(before, sizes, repeat, folder=folder)
    if log:
        log('  batch per host: this checkout ...')
    versions['now'] = measure(collections_of_checkout(), sizes, repeat, folder=folder)
    if log:
        log('  batch per host: this checkout, every answer ready at the host\'s first look ...')
    versions['now, ready'] = measure(collections_of_checkout(), sizes, repeat, path='ready',
                                     folder=folder)
    return {'sizes': list(sizes), 'repeat': repeat, 'versions': versions,
            'dir': folder or tempfile.gettempdir()}


def run_held(sizes, repeat, before, log, folder, holds, forks, processes=False):
    """``run``'s held mode: each version at each hold, the same way."""
    versions = {}
    named = ([('before', before)] if before else []) + [('now', collections_of_checkout())]
    for hold in holds:
        for name, collections in named:
            if log:
                log('  batch per host: %s, %d hosts waiting, each phase\'s work %ss%s ...'
                    % (name, forks, hold, ', each host a process' if processes else ''))
            versions.setdefault(name, []).extend(
                measure(collections, sizes, repeat, folder=folder, hold=hold, forks=forks,
                        processes=processes))
    return {'sizes': list(sizes), 'repeat': repeat, 'versions': versions, 'holds': list(holds),
            'forks': forks, 'processes': processes, 'dir': folder or tempfile.gettempdir()}


def table(data):
    if data.get('holds'):
        return table_held(data)
    folder = data.get('dir') or tempfile.gettempdir()
    lines = ['13. Batch per host: CPU ms of one host\'s batch machinery, every phase '
             '(best of %d; temp folders in %s)' % (data['repeat'], folder),
             '%-10s %6s %11s %11s %11s %11s %12s %12s' % (
                 'version', 'N', 'computing', 'other p50', 'other p90', 'other max',
                 'computing KB', 'other KB')]
    lines.append('-' * len(lines[-1]))
    for name in ('before', 'now', 'now, ready'):
        rows = data['versions'].get(name)
        if not rows:
            continue
        for row in rows:
            lines.append('%-10s %6d %11.2f %11.2f %11.2f %11.2f %12.1f %12.1f' % (
                name, row['n'], row['computing'] * 1000, row['others_median'] * 1000,
                row['others_p90'] * 1000, row['others_max'] * 1000, row['computing_io'] / 1024.0,
                row['others_io'] / 1024.0))
        lines.append('%-10s %6s %10.0f%% %10.0f%% %10.0f%% %11s %11.0f%% %11.0f%%' % (
            name, 'growth', growth(rows, 'computing'), growth(rows, 'others_median'),
            growth(rows, 'others_p90'), '', growth(rows, 'computing_io'),
            growth(rows, 'others_io')))
    return '\n'.join(lines)


def table_held(data):
    """Held mode's table: per hold, version and N, the computing host, the
    hosts that waited and the later ones (CPU ms, KB, wake-ups; with
    ``--processes``, their page faults too: a forked host's first writes)."""
    folder = data.get('dir') or tempfile.gettempdir()
    faults = bool(data.get('processes'))
    extra = ' %6s' if faults else ''
    lines = ['13. Batch per host, hosts that wait: CPU ms of one host\'s batch machinery, '
             'every phase; the first %d hosts arrive while each phase\'s work is computed%s '
             '(best of %d; temp folders in %s)' % (
                 data['forks'], '; each host a process of its own, its serving processes '
                 'forked for real' if faults else '', data['repeat'], folder),
             ('%-7s %5s %5s | %9s %6s %5s' + extra + ' | %9s %9s %6s %5s' + extra +
              ' | %9s %9s %6s %5s' + extra) % tuple(
                  ['version', 'hold', 'N', 'computing', 'KB', 'wakes'] + ['faults'] * faults +
                  ['wait p50', 'wait p90', 'KB', 'wakes'] + ['faults'] * faults +
                  ['later p50', 'later p90', 'KB', 'wakes'] + ['faults'] * faults)]
    lines.append('-' * len(lines[-1]))
    for hold in data['holds']:
        for name in ('before', 'now'):
            for row in data['versions'].get(name, ()):
                if row['hold'] == hold:
                    lines.append(_held_line(name, hold, row, faults))
    return '\n'.join(lines)


def _held_line(name, hold, row, faults):
    """One row of ``table_held`` (``faults``: with each group's page faults)."""
    def fault_cell(field):
        return (' %6g' % row[field] if field in row else ' %6s' % '-') if faults else ''
    cells = ['%-7s %4gs %5d | %9.2f %6.1f %5d' % (
        name, hold, row['n'], row['computing'] * 1000, row['computing_io'] / 1024.0,
        row['computing_wakeups']) + fault_cell('computing_faults')]
    for group in ('waiting', 'later'):
        if group + '_median' not in row:
            cells.append('%9s %9s %6s %5s' % ('-', '-', '-', '-') + fault_cell(group + '_faults'))
            continue
        cells.append('%9.2f %9.2f %6.1f %5g' % (
            row[group + '_median'] * 1000, row[group + '_p90'] * 1000,
            row[group + '_io'] / 1024.0, row[group + '_wakeups']) +
            fault_cell(group + '_faults'))
    return ' | '.join(cells)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hosts', default=','.join(str(n) for n in SIZES))
    parser.add_argument('--repeat', type=int, default=REPEAT)
    parser.add_argument('--before', help='an ansible_collections tree to measure beside')
    parser.add_argument('--output', help='write the figures as JSON here too')
    parser.add_argument('--dir', help='make each run\'s temp folder here (default: the '
                                      'system\'s temp folder; /dev/shm: no disk)')
    parser.add_argument('--hold', nargs='?', const=str(HOLD),
                        help='held mode: seconds each phase\'s work takes, a list (alone: '
                             '%g, about a fleet\'s evaluation or copy)' % HOLD)
    parser.add_argument('--forks', type=int, default=FORKS,
                        help='held mode: the hosts that arrive while the work is computed')
    parser.add_argument('--processes', action='store_true',
                        help='held mode: each host a process of its own, forked from the '
                             'harness, and each version\'s serving processes forked for real')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--collections', help=argparse.SUPPRESS)
    parser.add_argument('--path', default='waiting', choices=('waiting', 'ready'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.hosts.split(',') if s.strip()]
    holds = [float(s) for s in args.hold.split(',') if s.strip()] if args.hold else None
    if args.forks < 1 or any(hold < 0 for hold in holds or ()):
        parser.error('--forks is at least 1, --hold no less than 0')
    if args.processes and not holds:
        parser.error('--processes is a way of --hold: give --hold')
    if args.child:
        sys.path.insert(0, args.collections)
        if holds:
            print(json.dumps(child_held(sizes[0], args.repeat, holds[0], args.forks,
                                        args.processes)))
        else:
            print(json.dumps(child(sizes[0], args.repeat, args.path == 'waiting')))
        return 0
    data = run(sizes, args.repeat, args.before,
               log=lambda text: print(text, file=sys.stderr), folder=args.dir, holds=holds,
               forks=args.forks, processes=args.processes)
    print(table(data))
    if args.output:
        with open(args.output, 'w') as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
