"""A job that ends while an evaluator starts (task/_detached.py's
``CHILD_GROUPS``, evaluation/pool/_pool.py): the pool starts each Nix
evaluator in a session of its own, and a batch process whose job has ended
kills the groups it knows of (``_stop_children``, the watcher's, then
``os._exit``). An evaluator whose group was recorded only after its start
could be started just before that stop and recorded just after it: in no
group anyone killed, it ran on after its job, alone.

The window is made on purpose, at the one point it can open: the real Nix
evaluator has started and ``Popen`` has not returned to the pool yet. There
the stop runs, from another thread as the watcher's does, and the start goes
on once the stop has either run or waits for that start to be over. Real
Nix, a fixture flake whose first host takes two minutes to evaluate."""

import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from tests.collection import collections_path
from tests.lab import heavy
from tests.lab.fixtures import FleetFlake
from tests.unit.plugins.plugin_utils.task.test_job_end import wait_for

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (  # noqa: E402
    apply_expression)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool import (  # noqa: E402
    _pool)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._batch import (  # noqa: E402
    EvalStage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _detached, _job_end, _run)

pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')


class SaysWaiting(object):
    """A lock that sets ``waiting`` when a thread has to wait for it."""

    def __init__(self, lock, waiting):
        self.lock, self.waiting = lock, waiting

    def __enter__(self):
        if not self.lock.acquire(False):
            self.waiting.set()
            self.lock.acquire()
        return self

    def __exit__(self, *exc):
        self.lock.release()


def fresh_groups(monkeypatch, ready):
    """This test's own groups (the session's are left as they were: a stop
    is for good), whose lock, where they have one, says when the stop
    waits for it (``ready``). Its own folders too: the stop removes them."""
    groups = type(_detached.CHILD_GROUPS)()
    if getattr(groups, 'lock', None) is not None:
        groups.lock = SaysWaiting(groups.lock, ready)
    monkeypatch.setattr(_detached, 'CHILD_GROUPS', groups)
    monkeypatch.setattr(_run, 'CHILD_GROUPS', groups)
    monkeypatch.setattr(_job_end, '_LEFT', _job_end._Left())  # pylint: disable=protected-access


def stop_in_the_window(monkeypatch, started, problems):
    """``subprocess.Popen`` as the pool's evaluators meet it: each started
    evaluator (a session of its own) kept in ``started``; after the first
    has started, before the pool has it back, the job's stop runs in
    another thread, and the start goes on once the stop has run or waits
    for it. What went wrong in there goes to ``problems``."""
    real = subprocess.Popen
    ready = threading.Event()
    fresh_groups(monkeypatch, ready)

    def stop():
        _detached._stop_children()  # pylint: disable=protected-access
        ready.set()

    def popen(*args, **kwargs):
        proc = real(*args, **kwargs)
        if not kwargs.get('start_new_session'):
            # not an evaluator (the runner asking Nix its version)
            return proc
        started.append(proc)
        if len(started) == 1:
            stopper = threading.Thread(target=stop, name='test-job-end')
            stopper.daemon = True
            stopper.start()
            if not ready.wait(60):
                problems.append('the stop neither ran nor waited within 60 s')
        return proc
    monkeypatch.setattr(subprocess, 'Popen', popen)


def test_an_evaluator_started_as_the_job_ends_is_stopped_and_none_starts_after(
        tmp_path, tmp_path_factory, monkeypatch):
    calibration = heavy.calibrate(folder=heavy.session_folder(tmp_path_factory))
    names = ['slow', 'after']
    flake = FleetFlake.write(str(tmp_path / 'flake'), dict(
        (name, {'address': '127.0.0.1'}) for name in names),
        {'slow': heavy.heavy_config(seconds=120, calibration=calibration)})
    runner = EvalStage(NixOptions(options={'substituters': ''})).runner
    pool = _pool.EvalPool(runner, apply_expression, 1)
    started, problems, answers = [], [], {}
    stop_in_the_window(monkeypatch, started, problems)
    # one process for both hosts: "slow" first, "after" behind it
    run = threading.Thread(target=pool.run, args=(
        {flake.ref: [(name, flake.attr(name).split('.')) for name in names]},
        answers.__setitem__), name='test-pool')
    run.daemon = True
    run.start()
    try:
        wait_for(lambda: started or not run.is_alive(), 120, 'no evaluator started')
        assert started, answers
        # "slow" holds its evaluator for 120 s: gone well before is stopped
        wait_for(lambda: started[0].poll() is not None, 20,
                 'the evaluator started as the job ended outlived it')
        run.join(60)
        assert not run.is_alive(), 'the pool waits on a stopped evaluator'
        assert problems == []
        # "after", which the stopped process left, was given to no new one
        assert len(started) == 1, 'an evaluator started after the job ended'
        assert 'error' in answers['slow'], answers
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
