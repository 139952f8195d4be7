"""Attacks on a batch server's work as data (plugin_utils/task/_batch_serve.py,
task/_batch_server.py): what the serving process reads from ``<stem>.serve``
(a name it imports and calls, a context it hands over) and what a host
that starts the server writes there. Each runs a real serving process
(a fork of this one) over real batch files.

A work file is planted before the first host asks where the attack is on
the file itself: the host that starts the server writes its own only when
none is there, so the planted one is what the process reads."""

import datetime
import json
import os
import shutil
import signal
import sys
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible._internal._datatag._tags import Origin, TrustedAsTemplate  # noqa: E402
from ansible.utils.unsafe_proxy import AnsibleUnsafeText  # noqa: E402

from tests.unit.plugins.plugin_utils.task.batch_serves import (  # noqa: E402
    ECHO_CONTEXT, named_serve)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _batch_serve, _batch_server as _batch_server_module)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (  # noqa: E402
    _entry_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)

PLUGINS = _batch_serve.COLLECTION
HOSTS = ('h1', 'h2', 'h3')
# each host's bound in these tests; a refusal must come well within it
BOUND = 60
# a refused work fails its hosts in a few seconds (the server's start and
# one wave), never at the bound
QUICK = 30


def _planted(tmp_path, kind, work):
    """A server of ``kind`` whose work file already holds ``work`` (text)."""
    server = BatchServer(str(tmp_path), kind, 'planted')
    with open(server.serve_path, 'w') as handle:
        handle.write(work)
    return server


def _every_host_fails(server, serve='ignored:name'):
    """{host: its error} for HOSTS asking ``server`` together, each within
    QUICK seconds: an entry's ``error``, or the BatchError it raised."""
    for host in HOSTS:
        server.request(host, 'r', serve)
    started = time.monotonic()
    errors = {}
    for host in HOSTS:
        try:
            entry = server.answer(host, 'r', serve, timeout=BOUND)[0]
        except BatchError as exc:
            errors[host] = u'%s' % exc
            continue
        assert 'error' in entry, (host, entry)
        assert 'traceback' not in entry, (host, entry)
        errors[host] = entry['error']
    assert time.monotonic() - started < QUICK, errors
    return errors


# ------------------------------------------------------------ the name
@pytest.mark.parametrize('name', [
    # a dotted path that climbs: the name's pattern has no empty part
    PLUGINS + '..plugin_utils.task._serial:judge',
    PLUGINS + '.plugin_utils.task.._serial:judge',
    # a class of the collection, not a function
    PLUGINS + '.plugin_utils.task._batch_server:BatchServer',
    # a module the collection imported
    PLUGINS + '.plugin_utils.task._batch_server:os',
    # a builtin, which every module sees but none defines
    PLUGINS + '.plugin_utils.task._batch_server:open',
    PLUGINS + '.plugin_utils.task._batch_server:__builtins__',
    # a collection function imported into another module under another name
    PLUGINS + '.plugin_utils.task._batch_server:_read',
    # a standard library function imported into a collection module
    PLUGINS + '.plugin_utils.publish._publish:quote',
    # the collection's package itself, and a name with a newline after it
    PLUGINS + ':serve',
    PLUGINS + '.plugin_utils.task._serial:judge\n',
    # not a string
    42, ['%s.plugin_utils.task._serial:judge' % PLUGINS],
    {'module': PLUGINS + '.plugin_utils.task._serial', 'function': 'judge'},
    b'%s.plugin_utils.task._serial:judge' % PLUGINS.encode()])
def test_a_name_that_is_no_function_defined_in_the_collection_is_refused(name):
    with pytest.raises(BatchError, match=r'^the channel batch: its serve function .*(refused|'
                                         r'no such module)'):
        _batch_serve.serve_function('channel-x', name)


@pytest.mark.parametrize('function', [os.system, shutil.rmtree], ids=['os.system', 'rmtree'])
def test_a_dangerous_function_imported_under_another_name_is_refused(monkeypatch, function):
    """A collection module that imported ``os.system`` (a builtin) or
    ``shutil.rmtree`` (a Python function) under a name of its own: the
    name is the collection's, the function is not defined there."""
    monkeypatch.setattr(_batch_server_module, 'tidy', function, raising=False)
    with pytest.raises(BatchError, match=r'^the build batch: its serve function .* refused'):
        _batch_serve.serve_function('build-x', _batch_server_module.__name__ + ':tidy')


@pytest.mark.parametrize('serve', [
    PLUGINS + '.plugin_utils.task._batch_server:BatchServer',
    PLUGINS + '.plugin_utils.publish._publish:quote', 42, None])
def test_a_refused_name_in_the_work_file_fails_every_waiting_host_quickly(tmp_path, serve):
    """Planted in the work file: the three hosts that wait each get the
    refusal, naming the batch's kind, no traceback, well within their
    bound."""
    server = _planted(tmp_path, 'publish', json.dumps({'serve': serve, 'context': {}}))
    for host, error in _every_host_fails(server).items():
        assert error.startswith('the publish batch: its serve function '), (host, error)
        assert error.endswith(': refused'), (host, error)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    'serve_function calls any function defined in a module of the collection, not only a '
    'serve function: report._retry:update(path, unreached, reached) writes the file the '
    'context names (its requests\' host names in it)'))
def test_a_function_of_the_collection_that_is_no_serve_function_is_not_called(tmp_path):
    written = tmp_path / 'written-by-the-server'
    serve = PLUGINS + '.plugin_utils.report._retry:update'
    server = _planted(tmp_path, 'publish', json.dumps({'serve': serve,
                                                        'context': str(written)}))
    errors = _every_host_fails(server)
    assert not written.exists(), written.read_text()
    for host, error in errors.items():
        assert error.endswith(': refused'), (host, error)


# ------------------------------------------------------------ the file
def test_an_unreadable_work_file_fails_every_waiting_host_quickly(tmp_path):
    """A work file cut short (a host's write seen half-way): the process
    reads no work and calls nothing; each host fails with the kind named."""
    server = _planted(tmp_path, 'build', '{"serve": "%s.plugin_utils.task._ser' % PLUGINS)
    for host, error in _every_host_fails(server).items():
        assert error.startswith('the build batch: its serve function None '), (host, error)


@pytest.mark.parametrize('work', ['"%s.plugin_utils.task._serial:judge"' % PLUGINS, '[1]'])
@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    'a work file that is JSON but no object kills the serving process outside the wave '
    '(BatchServer._serve: work.get, AttributeError): each host fails with Python traceback '
    'frames of the process\'s log in its message'))
def test_a_work_file_that_is_no_object_fails_its_hosts_without_a_traceback(tmp_path, work):
    server = _planted(tmp_path, 'build', work)
    for host, error in _every_host_fails(server).items():
        assert host in error and 'File "' not in error and 'line ' not in error, (host, error)
        assert 'internal error' in error or 'refused' in error, (host, error)


# ------------------------------------------------------------ the context
@pytest.mark.parametrize('value', [
    {'a', 'set'}, b'bytes', datetime.date(2026, 11, 30)],
    ids=['set', 'bytes', 'date'])
@pytest.mark.xfail(strict=True, raises=TypeError, reason=(
    'a context that is no JSON data raises TypeError out of BatchServer.request in the host '
    'that starts the server (write_json), not a BatchError naming the batch; the key took it '
    '(short_digest digests with default=str)'))
def test_a_context_that_is_no_json_is_a_batch_error_naming_the_kind(tmp_path, value):
    server = BatchServer(str(tmp_path), 'eval', 'k')
    with pytest.raises(BatchError, match='the eval batch'):
        server.request('h1', 'r', ECHO_CONTEXT, context={'option': value})


def test_after_a_context_that_is_no_json_the_next_host_is_served(tmp_path):
    """The starter that failed left the server's mark without a process and
    without a work file: the next host starts the server with its own
    context and both requests are served."""
    server = BatchServer(str(tmp_path), 'eval', 'k')
    with pytest.raises(Exception):  # pylint: disable=broad-except
        server.request('h1', 'r1', ECHO_CONTEXT, context={'option': {'a', 'set'}})
    server.request('h2', 'r2', ECHO_CONTEXT, context={'option': 'data'})
    assert server.answer('h2', 'r2', ECHO_CONTEXT, timeout=BOUND)[0] == {
        'request': 'r2', 'context': {'option': 'data'}}


def test_tagged_and_unsafe_strings_reach_the_server_as_plain_data(tmp_path):
    """ansible-core's trusted-template and origin tags and the unsafe text
    type are strings: the server gets their text, lists as lists."""
    context = {'template': TrustedAsTemplate().tag('{{ x }}'),
               'origin': Origin(path='/inventory.yml', line_num=1).tag('value'),
               'unsafe': AnsibleUnsafeText('{{ lookup("pipe", "id") }}'),
               'tagged_list': Origin(path='/inventory.yml', line_num=2).tag(['a'])}
    server = BatchServer(str(tmp_path), 'eval', 'k')
    server.request('h1', 'r', ECHO_CONTEXT, context=context)
    assert server.answer('h1', 'r', ECHO_CONTEXT, timeout=BOUND)[0]['context'] == {
        'template': '{{ x }}', 'origin': 'value', 'unsafe': '{{ lookup("pipe", "id") }}',
        'tagged_list': ['a']}


# ------------------------------------------------------------ the lifecycle
def test_a_server_restarted_after_a_death_serves_with_the_first_context(tmp_path):
    """The first process is killed (a kill -9) with h2's request written
    and not yet taken; h2 starts another, giving a context of its own,
    which is not used: the one the first host wrote serves (one context a
    server), read again from the file by the new process."""
    server = BatchServer(str(tmp_path), 'eval', 'k')
    second = _entry_path(server.requests.folder, 'h2')
    started = str(tmp_path / 'first-wave-started')

    def killed_once(context, requests, put):
        if os.path.exists(started):
            for host, request in requests.items():
                put(host, {'request': request, 'context': context, 'pid': os.getpid()})
            return
        open(started, 'w').close()
        deadline = time.monotonic() + QUICK
        while not os.path.exists(second) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
    serve = named_serve(killed_once)

    server.request('h1', 'r1', serve, waves_at_once=1, context={'n': 1})
    deadline = time.monotonic() + QUICK
    while not os.path.exists(started) and time.monotonic() < deadline:
        time.sleep(0.01)
    server.request('h2', 'r2', serve, waves_at_once=1, context={'n': 2})
    entry = server.answer('h2', 'r2', serve, waves_at_once=1, timeout=BOUND,
                          context={'n': 2})[0]
    assert entry['context'] == {'n': 1} and entry['pid'] != os.getpid(), entry
    # the killed process's own host is told, by name, not left waiting
    with pytest.raises(BatchError, match='^h1: '):
        server.answer('h1', 'r1', serve, waves_at_once=1, timeout=QUICK, context={'n': 1})
    # the work file is private to the run's user, as every batch file
    assert oct(os.stat(server.serve_path).st_mode & 0o777) == '0o600'
