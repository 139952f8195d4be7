"""nix_build's waits have bounds (plugin_utils/task/_waits.py, the batch
table of docs/architecture.md): a host's wait for its build server's answer
grows with the task's timeout only; the look for finished systems during a
build stops a nix-store that hangs (a real process) at its own time limit;
a retry of a host's build asks a server of its own."""

import os
import signal
import sys
import time

import pytest
from ansible import constants as C

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.action import nix_build  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _build  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixOptions)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _waits, _work_keys)
from tests.unit.plugins.plugin_utils.task.test_wait_bounds import ended  # noqa: E402
from tests.unit.plugins.plugin_utils.task.batch_place import batch_of  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (  # noqa: E402
    Place)


def test_the_builds_wait_grows_with_the_tasks_timeout_only():
    assert nix_build.answer_wait(None) == _waits.ANSWER_WAIT
    assert nix_build.answer_wait(60) == _waits.ANSWER_WAIT
    assert nix_build.answer_wait(36000) == 3 * 36000 + 600


def test_the_build_watch_stops_within_its_bound_when_nix_store_hangs(tmp_path, monkeypatch):
    """The look for finished systems during a build: its nix-store (a
    real process here, that never ends) is stopped at WATCH_TIMEOUT, and
    ``stop`` returns; the look had the build's time limit, none by default."""
    monkeypatch.setattr(_build._Watch, 'WATCH_TIMEOUT', 1)  # pylint: disable=protected-access
    monkeypatch.setattr(_build._Watch, 'PERIOD', 0.05)  # pylint: disable=protected-access
    pid_file = tmp_path / 'nix-store.pid'
    (tmp_path / 'nix').write_text('#!/bin/sh\nexit 1\n')
    (tmp_path / 'nix-store').write_text('#!/bin/sh\necho $$ > %s\nexec sleep 3600\n' % pid_file)
    for name in ('nix', 'nix-store'):
        (tmp_path / name).chmod(0o755)
    watch_class = _build._Watch  # pylint: disable=protected-access
    builder = _build.Builder(NixOptions(nix_bin=str(tmp_path / 'nix')), watch_class.WATCH_TIMEOUT)
    watch = watch_class(builder, {'a.drv': ['/nix/store/x-a']}, lambda drv: None)
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    error, _value, took = ended(watch.stop)
    assert error is None and took < 10, (error, took)
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except OSError:
        pass
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail('the hung nix-store outlived its time limit')


def test_a_build_retry_asks_a_server_of_its_own(tmp_path, monkeypatch):
    """Asked again by a later run of the host's task (a retry), the build
    server's name is this host's own: a new serving process, which waits
    for no other host, builds again."""
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    action = nix_build.ActionModule.__new__(nix_build.ActionModule)
    task_vars = {'inventory_hostname': 'h1', 'ansible_play_batch': ['h1', 'h2']}
    action.__dict__.update(
        _args={'gc_root_dir': '/gc', 'builder_min_free_mb': None}, _check_mode=False,
        _opts=None, _vars=task_vars, filled=_role_vars.Filled({}, [], []))
    place = Place('h1', type('Task', (), {'_uuid': 'build-task'})(), task_vars)
    _work_keys.new_run('h1', {})
    first = batch_of(place, action._build_work({'system': 'a'}))  # pylint: disable=protected-access
    _work_keys.new_run('h1', {})
    retry = batch_of(place, action._build_work({'system': 'a'}))  # pylint: disable=protected-access
    assert retry.lock_path != first.lock_path
    # h2's first ask is the batch's: the first server's files
    _work_keys.new_run('h2', {})
    other = batch_of(Place('h2', place.task, dict(task_vars, inventory_hostname='h2')),
                     action._build_work({'system': 'b'}))  # pylint: disable=protected-access
    assert other.lock_path == first.lock_path
