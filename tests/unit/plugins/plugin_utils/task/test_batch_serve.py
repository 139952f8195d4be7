"""A batch work names its serve function and gives its context as data
(plugin_utils/task/_batch_serve.py): no function of the worker crosses into
the serving process, which imports the named one itself, refuses any name
outside the collection, and calls it with the context the host that
started it wrote."""

import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from tests.unit.plugins.plugin_utils.task.batch_serves import ECHO_CONTEXT  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _batch_serve, _serial)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (  # noqa: E402
    BatchWork)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)


def test_a_batch_work_given_a_function_is_refused():
    def serve(_requests, _put):
        pytest.fail('a worker\'s function must never serve')
    with pytest.raises(BatchError, match='^the probe batch: its serve is the name of its '):
        BatchWork('probe', [], 'r', serve)
    with pytest.raises(BatchError):
        BatchWork('serial', [], 'r', _serial.judge)


@pytest.mark.parametrize('name', [
    'os:system',
    'subprocess:run',
    # the collection's package name as a prefix of another's
    'ansible_collections.nixdeploy.fleet.pluginsevil:serve',
    # a name a collection module imported, not a function defined there
    'ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_serve:import_module',
    'ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._serial:JUDGE',
    'ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._serial:judge.__globals__',
    None, '', 'no colon'])
def test_a_name_outside_the_collection_is_refused_naming_the_kind(name):
    with pytest.raises(BatchError, match=r'^the build batch: its serve function .*refused'):
        _batch_serve.serve_function('build-x', name)


def test_a_function_of_the_collection_is_found_by_its_name():
    assert _batch_serve.serve_function('serial', _serial.JUDGE) is _serial.judge


def test_the_server_refuses_a_name_outside_the_collection_and_fails_its_host(tmp_path):
    """A real serving process reads ``os:system`` from the work's file:
    it calls nothing and answers the host with the refusal, naming the
    batch's kind."""
    server = BatchServer(str(tmp_path), 'publish', 'k')
    server.request('h1', 'echo touched', 'os:system')
    entry = server.answer('h1', 'echo touched', 'os:system', timeout=60)[0]
    assert entry['error'].startswith('the publish batch: its serve function \'os:system\' is '
                                     'not a function of the collection'), entry
    assert 'traceback' not in entry


def test_the_context_is_the_starting_hosts_data_given_once(tmp_path):
    """The host that starts the server gives the context (its function is
    called there, once); a host of the batch that asks the same server
    later gives none of its own: both are served with the first one's, as
    data. h2 is expected: the server waits for it after h1's wave (a
    server that expects nobody more ends as soon as its wave is done, and
    a later host then starts another with its own context)."""
    server = BatchServer(str(tmp_path), 'build', 'k')
    calls = []

    def first_context():
        calls.append('h1')
        return {'opts': ('a', 1)}

    def later_context():
        pytest.fail('only the host that starts the server gives the context')
    assert server.request('h1', 'r1', ECHO_CONTEXT, context=first_context,
                          expected=['h1', 'h2'])
    first = server.answer('h1', 'r1', ECHO_CONTEXT, timeout=60, context=first_context)[0]
    server.request('h2', 'r2', ECHO_CONTEXT, context=later_context)
    later = server.answer('h2', 'r2', ECHO_CONTEXT, timeout=60, context=later_context)[0]
    # JSON data: the tuple reads back as a list
    assert first == {'request': 'r1', 'context': {'opts': ['a', 1]}}
    assert later == {'request': 'r2', 'context': {'opts': ['a', 1]}}
    assert calls == ['h1']
