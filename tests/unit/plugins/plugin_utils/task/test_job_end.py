"""What a batch's detached process does when the job that started it ends
(task/_job_end.py), for real: a forked "job" process forks a worker, which
asks a batch server whose wave runs the work, and waits for its host's
answer; then the worker and the job end, as ansible-playbook does once
every host has its result.

- every host answered, work still finishing (an evaluator keeping its
  record for the next job): it finishes, and the job-end hooks run;
- a host still owed its answer (a cancelled job): the process stops at
  once, its Nix processes (here a ``sleep``) with it, its folders removed;
- finishing that does not end: stopped at the bound;
- the folder of a process killed from outside goes with the next one made;
- the job's own end (the summary callback's) waits for what its batch
  processes finish, within its bound: in a container nothing outlives it."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible import constants as C  # noqa: E402

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _detached, _job_end)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)


def run_job(tmp_path, work, at_end=None, reap=True):
    """A job process whose worker asks a batch server whose one wave is
    ``work(put)``, waits for h1's answer, and ends; the job ends right after its worker (after
    ``at_end()``, which must return True, when given). ``reap=False``: the
    job's pid, its exit not read (``reaped``)."""
    job = os.fork()
    if job == 0:
        code = 1
        try:
            worker = os.fork()
            if worker == 0:
                code = 1
                try:
                    server = BatchServer(str(tmp_path), 'eval', 'k')

                    @named
                    def serve(_requests, put):
                        work(put)
                    server.request('h1', 'r', serve)
                    answer = server.answer('h1', 'r', serve, timeout=30)[0]
                    code = 0 if answer == {'answer': 'h1'} else 1
                finally:
                    os._exit(code)  # pylint: disable=protected-access
            _pid, status = os.waitpid(worker, 0)
            code = os.waitstatus_to_exitcode(status)
            if code == 0 and at_end is not None:
                code = 0 if at_end() else 1
        finally:
            os._exit(code)  # pylint: disable=protected-access
    if not reap:
        return job
    return reaped(job)


def reaped(job):
    """Read the exit of the job process ``job``, which must have succeeded."""
    _pid, status = os.waitpid(job, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return job


def write(path, text=''):
    with open(path, 'w') as handle:
        handle.write(text)


def read(path):
    with open(path) as handle:
        return handle.read()


def wait_for(check, bound, what):
    deadline = time.monotonic() + bound
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def begin(owed, named):
    """In the work: ``owed`` answers owed, a folder of its own (its name
    written to the file ``named``)."""
    _job_end.owe(owed)
    folder = _job_end.temporary_folder('nixdeploy-test-')
    write(named, folder)
    return folder


def answer_h1(put):
    put('h1', {'answer': 'h1'})
    _job_end.owe(-1)


def never_done(pids, kept):
    """A work that answers h1, then finishes something for a minute (its
    process id written to ``pids``, ``kept`` written at the end)."""
    def work(put):
        _job_end.owe(1)
        with _job_end.finishing():
            write(pids, '%d' % os.getpid())
            answer_h1(put)
            time.sleep(60)
            write(kept)
        return {}
    return work


def job_folder(tmp_path, monkeypatch):
    """The job's temporary folder (Ansible's), as its processes see it."""
    folder = tmp_path / 'job'
    folder.mkdir()
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(folder))


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def test_a_record_being_kept_when_the_job_ends_is_kept(tmp_path):
    kept, hooked, named = (str(tmp_path / n) for n in ('kept', 'hooked', 'folder'))

    def work(put):
        folder = begin(1, named)
        _job_end.when_job_ends(lambda: write(hooked))
        with _job_end.finishing():
            answer_h1(put)
            # the job ends meanwhile: its worker had its answer
            time.sleep(4)
            write(kept, 'the record')
        _job_end.remove_folder(folder)
        return {}

    started = time.monotonic()
    run_job(tmp_path, work)
    # the record takes 4 s: a job that ends before is one that did not
    # wait for it (the margin is for a loaded machine's forks)
    assert time.monotonic() - started < 4, 'the job waited for the record'
    wait_for(lambda: os.path.exists(kept), 20, 'the record was cut off with the job')
    assert read(kept) == 'the record'
    assert os.path.exists(hooked), 'the job-end hook did not run'
    folder = read(named)
    assert folder.startswith('/') and 'nixdeploy-test-' in folder
    wait_for(lambda: not os.path.exists(folder), 10, 'its folder stays')


def test_a_cancelled_job_stops_its_evaluators_at_once(tmp_path):
    kept, named, pids = (str(tmp_path / n) for n in ('kept', 'folder', 'pids'))

    def work(put):
        # h2 never gets its answer: the job ends with it owed
        begin(2, named)
        with _job_end.finishing():
            child = subprocess.Popen(['sleep', '60'], start_new_session=True)
            _detached.CHILD_GROUPS.add(child.pid)
            write(pids, '%d %d' % (os.getpid(), child.pid))
            answer_h1(put)
            time.sleep(30)
            write(kept)
        return {}

    run_job(tmp_path, work)
    ended = time.monotonic()
    process, child = (int(p) for p in read(pids).split())
    try:
        wait_for(lambda: not alive(process), 5, 'the batch process outlived a cancelled job')
        # the sleep is the detached process's child: once stopped it is
        # nobody's, and init reaps it
        wait_for(lambda: not alive(child), 5, 'its evaluator outlived a cancelled job')
        assert time.monotonic() - ended < 5
        assert not os.path.exists(kept)
        assert not os.path.exists(read(named)), 'a stopped process left its folder'
    finally:
        for pid in (process, child):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def zombie(pid):
    with open('/proc/%d/stat' % pid) as handle:
        return handle.read().rsplit(')', 1)[1].split()[0] == 'Z'


def test_a_job_that_ended_unreaped_is_over(tmp_path):
    # the job's ansible-playbook has exited, but its parent (a wrapper that
    # has not waited for it yet) has not read its exit: a zombie, which
    # kill(pid, 0) still finds. Its batch process stops all the same.
    kept, pids = str(tmp_path / 'kept'), str(tmp_path / 'pids')

    def work(put):
        _job_end.owe(2)  # h2 is owed when the job ends
        write(pids, '%d' % os.getpid())
        answer_h1(put)
        time.sleep(30)
        write(kept)
        return {}

    job = run_job(tmp_path, work, reap=False)
    process = None
    try:
        wait_for(lambda: os.path.exists(pids) and zombie(job), 10, 'the job never ended')
        process = int(read(pids))
        wait_for(lambda: not alive(process), 5,
                 'the batch process went on while its job was a zombie')
        assert zombie(job), 'reaped before the check'
        assert not os.path.exists(kept)
    finally:
        reaped(job)
        if process is not None and alive(process):
            os.kill(process, signal.SIGKILL)


def test_finishing_that_does_not_end_is_stopped_at_the_bound(tmp_path, monkeypatch):
    # the forked process takes the module as it is here
    monkeypatch.setattr(_job_end, 'AFTER_JOB_WAIT', 2)
    kept, pids = str(tmp_path / 'kept'), str(tmp_path / 'pids')
    run_job(tmp_path, never_done(pids, kept))
    process = int(read(pids))
    try:
        time.sleep(1)
        assert alive(process), 'stopped before its bound'
        wait_for(lambda: not alive(process), 8, 'still finishing past its bound')
        assert not os.path.exists(kept)
    finally:
        if alive(process):
            os.kill(process, signal.SIGKILL)


def test_a_killed_process_folder_goes_when_the_next_is_made(tmp_path, monkeypatch):
    """A batch process killed from outside (SIGKILL, the OOM killer) could
    not remove its folder: the next one made removes it. A live process's
    folder stays, and so does a link of that name (never followed)."""
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    gone = subprocess.Popen(['true'])
    gone.wait()
    dead = tmp_path / ('nixdeploy-test-%d-abc' % gone.pid)
    dead.mkdir()
    (dead / 'strace.log').write_text('x')
    live = tmp_path / ('nixdeploy-test-%d-abc' % os.getpid())
    live.mkdir()
    link = tmp_path / ('nixdeploy-test-%d-link' % gone.pid)
    os.symlink(str(live), str(link))
    folder = _job_end.temporary_folder('nixdeploy-test-')
    try:
        assert os.path.dirname(folder) == str(tmp_path)
        assert os.path.basename(folder).startswith('nixdeploy-test-%d-' % os.getpid())
        assert not dead.exists()
        assert live.is_dir() and os.path.islink(str(link))
    finally:
        _job_end.remove_folder(folder)
    assert not os.path.exists(folder)


def test_the_job_end_waits_for_what_its_batch_processes_finish(tmp_path, monkeypatch):
    """As the summary callback does at the end of a job: the record the
    batch process keeps after h1's answer is kept before the job ends."""
    job_folder(tmp_path, monkeypatch)
    kept, waited = str(tmp_path / 'kept'), str(tmp_path / 'waited')

    def work(put):
        _job_end.owe(1)
        with _job_end.finishing():
            answer_h1(put)
            time.sleep(1.5)
            write(kept, 'the record')
        return {}

    def at_end():
        seconds = _job_end.wait_for_finishing(bound=20)
        write(waited, repr(seconds))
        return os.path.exists(kept)

    run_job(tmp_path, work, at_end)
    seconds = float(read(waited))
    assert 0.5 < seconds < 20, seconds
    assert read(kept) == 'the record'


def test_the_job_end_waits_no_longer_than_its_bound(tmp_path, monkeypatch):
    """Past its first seconds the wait says what it waits for, and at its
    bound it says that it gave up (the summary callback's lines)."""
    job_folder(tmp_path, monkeypatch)
    monkeypatch.setattr(_job_end, 'NOTICE_AFTER', 1)
    monkeypatch.setattr(_job_end, 'AFTER_JOB_WAIT', 3)
    pids, waited = str(tmp_path / 'pids'), str(tmp_path / 'waited')

    def at_end():
        started, lines = time.monotonic(), []
        _job_end.wait_at_job_end(lambda line: lines.append(('say', line)),
                                 lambda line: lines.append(('warn', line)))
        write(waited, json.dumps({'took': time.monotonic() - started, 'lines': lines}))
        return True

    run_job(tmp_path, never_done(pids, str(tmp_path / 'kept')), at_end)
    process = int(read(pids))
    try:
        seen = json.loads(read(waited))
        assert 3 <= seen['took'] < 5, seen
        assert [kind for kind, _line in seen['lines']] == ['say', 'warn'], seen
        assert 'keeping the evaluation records' in seen['lines'][0][1]
        assert 'gave up after 3 s' in seen['lines'][1][1]
    finally:
        if alive(process):
            os.kill(process, signal.SIGKILL)
    # a job whose batch processes finished nothing does not wait at all
    assert _job_end.wait_for_finishing(str(tmp_path / 'none'), bound=5) == 0.0
