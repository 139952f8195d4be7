"""A job's look-up waits for the records a job that has just ended is still
keeping in the same cache folder (``EvalCache.hold_records``, held by that
job's batch process until it exits; ``EvalCache.wait_for_records``), for
at most its bound. Real processes and real locks in a temporary folder."""

import os
import sys
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache import (  # noqa: E402
    _signing)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._cache import (  # noqa: E402
    EvalCache)


@pytest.fixture(autouse=True)
def cache_key(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'config'))
    monkeypatch.delenv(_signing.KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(_signing.TRUSTED_ENV, raising=False)


def keeping(folder, seconds):
    """A process that holds the folder's records for ``seconds``, then
    exits (as a batch process does once its records are kept); its pid once
    it holds them."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_read)
            EvalCache(folder).hold_records()
            os.write(ready_write, b'x')
            time.sleep(seconds)
            code = 0
        finally:
            os._exit(code)  # pylint: disable=protected-access
    os.close(ready_write)
    assert os.read(ready_read, 1) == b'x'
    os.close(ready_read)
    return pid


def test_nobody_keeping_records_costs_no_wait(tmp_path):
    cache = EvalCache(str(tmp_path / 'cache'))
    started = time.monotonic()
    assert cache.wait_for_records(30) is True
    assert time.monotonic() - started < 1


def test_a_lookup_waits_until_the_ended_job_has_kept_its_records(tmp_path):
    folder = str(tmp_path / 'cache')
    EvalCache(folder)
    started = time.monotonic()
    pid = keeping(folder, 1.5)
    try:
        assert EvalCache(folder).wait_for_records(30) is True
        waited = time.monotonic() - started
        assert 1.4 <= waited < 10, waited
    finally:
        os.waitpid(pid, 0)


def test_the_wait_ends_at_its_bound(tmp_path):
    folder = str(tmp_path / 'cache')
    EvalCache(folder)
    pid = keeping(folder, 30)
    try:
        started = time.monotonic()
        assert EvalCache(folder).wait_for_records(1) is False
        assert 0.9 <= time.monotonic() - started < 5
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
