"""No traceback reaches a person (issue 61): what a batch's detached
process (task/_stream.py) says when its work raises, for real (a forked
process, real files)."""

import os
import sys
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixError, cannot_run)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _stream  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stream import (  # noqa: E402
    BatchServer, Stream, StreamError)

ONE_LINE = ('internal error in the eval batch: KeyError: \'system\'; rerun with -vvv for the '
            'traceback')


def test_an_unexpected_exception_is_one_line_with_the_traceback_kept_apart(tmp_path):
    stream = Stream(str(tmp_path), 'eval', 'k1')

    def work(put):
        put('h1', {'answer': 'h1'})
        return {}['system']

    assert stream.start(work)
    assert stream.entry('h1', timeout=60) == {'answer': 'h1'}
    with pytest.raises(StreamError) as info:
        stream.entry('h2', timeout=60)
    assert str(info.value) == ONE_LINE
    assert 'Traceback (most recent call last)' in info.value.traceback
    assert 'return {}[\'system\']' in info.value.traceback
    # the log keeps it too (the process's stderr)
    with open(stream.log_path) as handle:
        assert 'Traceback' in handle.read()


def test_an_error_of_the_family_is_its_own_sentence(tmp_path):
    stream = Stream(str(tmp_path), 'eval', 'k2')
    sentence = cannot_run('/opt/nonexistent/nix')

    def work(put):
        raise NixError(sentence)

    assert stream.start(work)
    with pytest.raises(StreamError) as info:
        stream.entry('h1', timeout=60)
    assert str(info.value) == sentence == (
        "nix_bin: cannot run /opt/nonexistent/nix (No such file or directory); set nix_bin to "
        "the nix executable or put nix on the controller's PATH")
    assert info.value.traceback is None


def test_a_process_that_died_shows_its_log_without_the_traceback(tmp_path):
    stream = Stream(str(tmp_path), 'eval', 'k3')

    def work(put):
        os.write(2, b'evaluating h1\nTraceback (most recent call last):\n  File "x.py", line 1, '
                    b'in <module>\n    boom()\nMemoryError: out of memory\n')
        os._exit(9)  # pylint: disable=protected-access

    assert stream.start(work)
    with pytest.raises(StreamError) as info:
        stream.entry('h1', timeout=60)
    text = str(info.value)
    assert 'Traceback' not in text and 'File "x.py"' not in text, text
    assert text.endswith('evaluating h1\ninternal error: MemoryError: out of memory'), text


def test_without_tracebacks_keeps_everything_else():
    log = ('warning: Git tree is dirty\nTraceback (most recent call last):\n'
           '  File "a.py", line 3, in f\n    g()\n\nValueError: bad\nnext line')
    assert _stream.without_tracebacks(log) == (
        'warning: Git tree is dirty\ninternal error: ValueError: bad\nnext line')


def test_a_wave_that_raises_answers_each_of_its_hosts_in_one_line(tmp_path):
    server = BatchServer(str(tmp_path), 'eval', 'k4')

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

    def forgets(requests, put):
        if 'h1' in requests:
            put('h1', {'answer': requests['h1']})
        # what a dying thread of its work leaves in the process's log
        os.write(2, b'a thread of the wave died\n')

    def raises(requests, put):
        forgets(requests, put)
        raise KeyError('system')

    for kind, serve, told in (('eval', forgets, _stream.UNANSWERED % 'eval'
                               + ': a thread of the wave died'),
                              ('build', raises, ONE_LINE.replace('eval batch', 'build batch'))):
        server = BatchServer(str(tmp_path), kind, 'k5')
        server.request('h1', 'r1', serve, expected=expected)
        server.request('h2', 'r2', serve, expected=expected)
        assert server.answer('h1', 'r1', serve, timeout=60)[0] == {'answer': 'r1'}
        assert server.answer('h2', 'r2', serve, timeout=60)[0]['error'] == told
