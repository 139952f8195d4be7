"""One job carried as AWX 24.6.1 carries it over receptor.

AWX's control node never runs the playbook itself (awx/main/tasks/receptor.py,
AWXReceptorJob): ``transmit()`` calls ``ansible_runner.interface.run(
streamer='transmit', ...)``, which writes the job's kwargs and the private
data dir (zipped) to receptor; receptor starts ``ansible-runner worker`` where
the job runs and hands it that stream on stdin; the worker's stdout (status,
events, then the artifact folder zipped) comes back, and ``processor()`` turns
it into events and artifacts with ``streamer='process'`` (ansible-runner
ansible_runner/streaming.py: Transmitter, Worker, Processor). Here a pipe is
receptor: transmit writes into the worker's stdin, process reads its stdout.

Where the worker runs is the caller's argv: a pod of a container group (the
EE image running ``ansible-runner worker --private-data-dir=/runner``) or an
execution node (``ansible-runner worker`` on the node, which starts the EE).
"""

import os
import shutil
import subprocess
import tempfile
import threading
import time

import ansible_runner


class StreamedJob:
    """What AWX learns of a job through ``process``: the worker's status
    reports, the events, the artifacts it streamed back."""

    def __init__(self, params):
        self.private = params['private_data_dir']
        self.ident = str(params['ident'])
        self.artifacts = os.path.join(self.private, 'artifacts', self.ident)
        self.status = 'unstarted'
        self.statuses = []
        self.explanation = None
        self.events = []
        self.env = {}
        self.command = None
        self.worker_rc = None
        self.worker_stderr = ''
        self.seconds = None

    # ansible-runner's process callbacks (AWX's RunnerCallback has the same three)
    def status_handler(self, data, runner_config=None):   # pylint: disable=unused-argument
        self.status = data.get('status')
        self.statuses.append(self.status)
        if self.status == 'starting':
            self.env = data.get('env') or {}
            self.command = data.get('command')
        if data.get('job_explanation'):
            self.explanation = data['job_explanation']

    def event_handler(self, event):
        self.events.append(event)
        return True   # keep it in job_events/, as AWX keeps every event

    @property
    def stdout(self):
        return '\n'.join(e['stdout'] for e in self.events if e.get('stdout'))

    @property
    def rc(self):
        """The playbook's exit code, from the artifacts the worker streamed back."""
        try:
            with open(os.path.join(self.artifacts, 'rc')) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    @property
    def stats(self):
        """The recap (playbook_on_stats: ok, changed, failures, dark ... per host)."""
        for event in reversed(self.events):
            if event.get('event') == 'playbook_on_stats':
                return event['event_data']
        raise AssertionError('no playbook_on_stats event: %s' % self.stdout[-3000:])

    def tail(self, size=6000):
        """The job's output and the worker's stderr, for an assertion message."""
        return 'status %s (%s), worker rc %s\n%s\n-- worker stderr:\n%s' % (
            self.status, self.explanation, self.worker_rc, self.stdout[-size:],
            self.worker_stderr[-2000:])


class Cancel:
    """AWX's cancel of a running job: ``when()`` turns true, then ``action()``
    (for a container group: the pod deleted, here its container stopped)."""

    def __init__(self, when, action, poll=0.3):
        self.when, self.action, self.poll = when, action, poll
        self.at = None
        self.done = threading.Event()

    def watch(self):
        while not self.done.is_set():
            if self.when():
                self.at = time.time()
                self.action()
                return
            time.sleep(self.poll)


def run(params, worker_argv, worker_env=None, cancel=None, timeout=900):
    """transmit | ``worker_argv`` | process; returns the StreamedJob once the
    worker's stream has ended and the worker has exited."""
    job = StreamedJob(params)
    # AWX removes the control node's artifacts before it reads the results
    # (AWXReceptorJob._run_internal): all of them come back from the worker
    shutil.rmtree(os.path.join(job.private, 'artifacts'), ignore_errors=True)
    started = time.time()
    with tempfile.TemporaryFile() as stderr:
        worker = subprocess.Popen(worker_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=stderr, env=worker_env)
        # a worker that never ends would hang the test: end it (by its pid) after timeout
        guard = threading.Timer(timeout, worker.kill)
        guard.start()
        sender = threading.Thread(target=_transmit, args=(params, worker.stdin), daemon=True)
        sender.start()
        watcher = None
        if cancel is not None:
            watcher = threading.Thread(target=cancel.watch, daemon=True)
            watcher.start()
        try:
            # a cancel_callback of our own: without one, run() would install a
            # SIGTERM/SIGINT handler in this (the test's) process
            processor = ansible_runner.interface.run(
                streamer='process', quiet=True, _input=worker.stdout,
                event_handler=job.event_handler, status_handler=job.status_handler,
                cancel_callback=lambda: False, **params)
            job.status = processor.status
            job.worker_rc = worker.wait(timeout=120)
        finally:
            guard.cancel()
            if cancel is not None:
                cancel.done.set()
                watcher.join(timeout=60)
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            sender.join(timeout=30)
            worker.stdout.close()
            stderr.seek(0)
            job.worker_stderr = stderr.read().decode('utf-8', 'replace')
    job.seconds = round(time.time() - started, 1)
    return job


def _transmit(params, pipe):
    """AWXReceptorJob.transmit: the kwargs and the private data dir, zipped."""
    try:
        ansible_runner.interface.run(streamer='transmit', _output=pipe, **params)
    except BrokenPipeError:
        pass   # the worker ended before it read everything: its stream says why
    finally:
        try:
            pipe.close()
        except BrokenPipeError:
            pass
