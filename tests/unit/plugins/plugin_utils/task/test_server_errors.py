"""No traceback reaches a person (issue 61): what a batch server's
detached process (task/_batch_server.py, _detached.py) says when its work
raises or the process dies, for real (a forked process, real files)."""

import os
import sys
import time

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixError, cannot_run)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _stem_serving  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError, without_tracebacks)

ONE_LINE = ('internal error in the eval batch: KeyError: \'system\'; rerun with -vvv for the '
            'traceback')


def test_an_unexpected_exception_is_one_line_with_the_traceback_kept_apart(tmp_path):
    """h1 is answered, then the work raises: h2's answer is one line, the
    traceback beside it (for -vvv) and in the process's log."""
    server = BatchServer(str(tmp_path), 'eval', 'k1')

    @named
    def serve(requests, put):
        put('h1', {'answer': 'h1'})
        return {}['system']

    server.request('h1', 'r1', serve, expected=['h1', 'h2'])
    server.request('h2', 'r2', serve, expected=['h1', 'h2'])
    assert server.answer('h1', 'r1', serve, timeout=60)[0] == {'answer': 'h1'}
    answer = server.answer('h2', 'r2', serve, timeout=60)[0]
    assert answer['error'] == ONE_LINE
    assert 'Traceback (most recent call last)' in answer['traceback']
    assert 'return {}[\'system\']' in answer['traceback']
    # the log keeps it too (the process's stderr)
    with open(server.process.log_path) as handle:
        assert 'Traceback' in handle.read()


def test_an_error_of_the_family_is_its_own_sentence(tmp_path):
    server = BatchServer(str(tmp_path), 'eval', 'k2')
    sentence = cannot_run('/opt/nonexistent/nix')

    @named
    def serve(requests, put):
        raise NixError(sentence)

    server.request('h1', 'r1', serve)
    answer = server.answer('h1', 'r1', serve, timeout=60)[0]
    assert answer == {'error': sentence}
    assert sentence == (
        "nix_bin: cannot run /opt/nonexistent/nix (No such file or directory); set nix_bin to "
        "the nix executable or put nix on the controller's PATH")


def test_a_process_that_died_shows_its_log_without_the_traceback(tmp_path):
    server = BatchServer(str(tmp_path), 'eval', 'k3')

    @named
    def serve(requests, put):
        os.write(2, b'evaluating h1\nTraceback (most recent call last):\n  File "x.py", line 1, '
                    b'in <module>\n    boom()\nMemoryError: out of memory\n')
        os._exit(9)  # pylint: disable=protected-access

    server.request('h1', 'r1', serve)
    with pytest.raises(BatchError) as info:
        server.answer('h1', 'r1', serve, timeout=60)
    text = str(info.value)
    assert text.startswith('h1: the batch\'s work stopped before answering this host'), text
    assert 'Traceback' not in text and 'File "x.py"' not in text, text
    assert text.endswith('evaluating h1\ninternal error: MemoryError: out of memory'), text


def test_without_tracebacks_keeps_everything_else():
    log = ('warning: Git tree is dirty\nTraceback (most recent call last):\n'
           '  File "a.py", line 3, in f\n    g()\n\nValueError: bad\nnext line')
    assert without_tracebacks(log) == (
        'warning: Git tree is dirty\ninternal error: ValueError: bad\nnext line')


def test_a_wave_that_raises_answers_each_of_its_hosts_in_one_line(tmp_path):
    server = BatchServer(str(tmp_path), 'eval', 'k4')

    @named
    def serve(requests, put):
        time.sleep(0.01)
        raise KeyError('system')

    server.request('h1', 'r1', serve)
    answer = server.answer('h1', 'r1', serve, timeout=60)[0]
    assert answer['error'] == ONE_LINE
    assert 'Traceback' in answer['traceback']


def test_a_wave_answers_every_host_it_took_and_keeps_the_answers_it_gave(tmp_path):
    """A wave's work that gives no answer to a host (a thread of its work
    died) or raises after answering another: the host left out is told at
    once, in one line, instead of waiting until the process ends ("the
    batch's work stopped before answering this host", naming nothing); a
    host answered keeps its answer."""
    expected = ['h1', 'h2']

    def forgets_to(requests, put):
        if 'h1' in requests:
            put('h1', {'answer': requests['h1']})
        # what a dying thread of its work leaves in the process's log
        os.write(2, b'a thread of the wave died\n')

    @named
    def raises(requests, put):
        forgets_to(requests, put)
        raise KeyError('system')

    forgets = named(forgets_to)

    for kind, serve, told in (('eval', forgets, _stem_serving.UNANSWERED % 'eval'
                               + ': a thread of the wave died'),
                              ('build', raises, ONE_LINE.replace('eval batch', 'build batch'))):
        server = BatchServer(str(tmp_path), kind, 'k5')
        server.request('h1', 'r1', serve, expected=expected)
        server.request('h2', 'r2', serve, expected=expected)
        assert server.answer('h1', 'r1', serve, timeout=60)[0] == {'answer': 'r1'}
        assert server.answer('h2', 'r2', serve, timeout=60)[0]['error'] == told
