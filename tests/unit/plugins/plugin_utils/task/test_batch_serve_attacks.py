"""Attacks on a batch server's work as data (plugin_utils/task/_batch_serve.py,
task/_batch_server.py): the serve function's name the serving process
imports and calls, and the context the host that registers it sends over
the run's socket, which the process keeps in memory (no file of the run
holds either). Each runs a real
serving process (a fork of this one) over real batch files."""

import datetime
import os
import shutil
import signal
import sys
import time

import pytest

from tests.collection import collections_path
from tests.secrets_at_rest import files_holding

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible._internal._datatag._tags import Origin, TrustedAsTemplate  # noqa: E402
from ansible.utils.unsafe_proxy import AnsibleUnsafeText  # noqa: E402

from tests.unit.plugins.plugin_utils.task.batch_serves import (  # noqa: E402
    ECHO_CONTEXT, named_serve)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _batch_serve, _batch_server as _batch_server_module)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (  # noqa: E402
    entry_path)
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
def test_a_refused_name_fails_every_waiting_host_quickly(tmp_path, serve):
    """A name no check stopped before the server (``BatchServer`` itself
    takes any): the three hosts that wait each get the refusal, naming the
    batch's kind, no traceback, well within their bound."""
    server = BatchServer(str(tmp_path), 'publish', 'refused')
    for host, error in _every_host_fails(server, serve).items():
        assert error.startswith('the publish batch: its serve function '), (host, error)
        assert error.endswith(': refused'), (host, error)


def test_a_function_of_the_collection_that_is_no_serve_function_is_not_called(tmp_path):
    """report._retry:update(path, unreached, reached) is a function of the
    collection, not a serve function: called, it would write the file its
    context names. It is refused unread."""
    written = tmp_path / 'written-by-the-server'
    serve = PLUGINS + '.plugin_utils.report._retry:update'
    server = BatchServer(str(tmp_path), 'publish', 'not-a-serve')
    errors = {}
    for host in HOSTS:
        server.request(host, 'r', serve, context=str(written))
    for host in HOSTS:
        entry = server.answer(host, 'r', serve, timeout=BOUND, context=str(written))[0]
        errors[host] = entry['error']
    assert not written.exists(), written.read_text()
    for host, error in errors.items():
        assert error.endswith(': refused'), (host, error)


# ------------------------------------------------------------ no file
SECRET = 'ContextSecret-41d9'


def _got_the_secret(context, requests, put):
    for host in requests:
        put(host, {'got_it': SECRET in context['cache']})


GOT_THE_SECRET = named_serve(_got_the_secret)


def test_no_file_of_the_run_holds_the_context(tmp_path):
    """A context may carry a cache's login: it reaches the serving process
    over its socket, and no file of the run's batch folder holds it."""
    context = {'cache': 'https://u:%s@h/' % SECRET}
    server = BatchServer(str(tmp_path), 'publish', 'secret')
    for host in HOSTS:
        server.request(host, 'r', GOT_THE_SECRET, context=context)
    for host in HOSTS:
        assert server.answer(host, 'r', GOT_THE_SECRET, timeout=BOUND,
                             context=context)[0] == {'got_it': True}, host
    assert files_holding(tmp_path, [SECRET]) == []


# ------------------------------------------------------------ the context
def _option_of(context, requests, put):
    for host in requests:
        put(host, {'option': context['option']})


OPTION_OF = named_serve(_option_of)


@pytest.mark.parametrize('value, arrives', [
    (datetime.date(2026, 11, 30), '2026-11-30'),
    (datetime.datetime(2026, 11, 30, 4, 5, 6), '2026-11-30T04:05:06'),
    ({'a-set'}, ['a-set'])], ids=['date', 'datetime', 'set'])
def test_a_context_that_is_no_json_reaches_the_serve_function_as_ansible_writes_it(
        tmp_path, value, arrives):
    """The context travels to the run's process as JSON: a value JSON
    cannot write itself (the date YAML reads from an unquoted 2026-11-30)
    arrives as ansible-core's JSON encoder writes it, never an error of the
    handing over."""
    server = BatchServer(str(tmp_path), 'eval', 'k')
    server.request('h1', 'r', OPTION_OF, context={'option': value})
    assert server.answer('h1', 'r', OPTION_OF, timeout=BOUND,
                         context={'option': value})[0] == {'option': arrives}


def test_a_context_ansible_cannot_write_fails_its_host_naming_the_value(tmp_path):
    """Bytes in the context (no inventory value is, but a plugin's may
    be): the host that would register the work fails with a message that
    names the host, the phase and where in the context the value is, not
    an internal error; nothing is registered."""
    server = BatchServer(str(tmp_path), 'eval', 'k')
    context = {'options': {'access-tokens': b'github.com=secret'}}
    with pytest.raises(BatchError) as raised:
        server.request('h1', 'r', OPTION_OF, context=context)
    message = str(raised.value)
    assert message.startswith("h1: the eval batch: context['options']['access-tokens'] "
                              "(a bytes) cannot be handed to the run's serving process as "
                              "JSON"), message
    assert 'secret' not in message
    assert not os.path.exists(server.alive_path)


def test_a_starter_whose_context_fails_leaves_no_mark_and_the_next_host_is_served(tmp_path):
    """The host that would start the server fails while it forms its
    context (a function: what it saw of the batch): it leaves no mark of a
    process that does not run, and the next host starts the server with
    its own context; both requests are served by it."""
    server = BatchServer(str(tmp_path), 'eval', 'k')

    def broken():
        raise ValueError('the first host could not form its context')
    with pytest.raises(ValueError):
        server.request('h1', 'r1', ECHO_CONTEXT, context=broken)
    assert not os.path.exists(server.alive_path)
    server.request('h2', 'r2', ECHO_CONTEXT, context={'option': 'data'})
    assert server.answer('h2', 'r2', ECHO_CONTEXT, timeout=BOUND)[0] == {
        'request': 'r2', 'context': {'option': 'data'}}
    assert server.answer('h1', 'r1', ECHO_CONTEXT, timeout=BOUND)[0] == {
        'request': 'r1', 'context': {'option': 'data'}}


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
def test_a_server_restarted_after_a_death_serves_with_its_starters_context(tmp_path):
    """The first process is killed (a kill -9) with h2's request written
    and not yet taken; h2 starts another, handing it its own context (the
    same as h1's wherever the context is data: the server's key holds it,
    _batch_work.server_key), which serves h2; h1, whose request the killed
    process had taken, is told by name, not left waiting."""
    server = BatchServer(str(tmp_path), 'eval', 'k')
    second = entry_path(server.requests.folder, 'h2')
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
    server.request('h2', 'r2', serve, waves_at_once=1, context={'n': 1})
    entry = server.answer('h2', 'r2', serve, waves_at_once=1, timeout=BOUND,
                          context={'n': 1})[0]
    assert entry['context'] == {'n': 1} and entry['pid'] != os.getpid(), entry
    with pytest.raises(BatchError, match='^h1: '):
        server.answer('h1', 'r1', serve, waves_at_once=1, timeout=QUICK, context={'n': 1})
