"""One context a batch server (task/_batch_server.py): two hosts share a
server only where they give the same context, since the server's key
holds it (``_batch_work.server_key``); a retry's server is its own, so a
retry's context is its own.

The phases are asked for their ``BatchWork`` as their tasks ask for it:
the status closure's ``closure_work``, a probe action through the real
action base (``NixdeployAction.run``) for the retry."""

import sys

from ansible import constants as C
import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import ECHO_CONTEXT

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    options_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import (  # noqa: E402
    _status_closure)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _action  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (  # noqa: E402
    BatchWork, Place, server_key)
# run_probe's action: the test action's real run for a host
from tests.unit.plugins.plugin_utils.task.test_action import action_of  # noqa: E402

REQUEST = {'current': '/nix/store/00000000000000000000000000000000-a',
           'desired': '/nix/store/00000000000000000000000000000000-b'}


def test_hosts_whose_context_differs_get_servers_of_their_own(tmp_path, monkeypatch):
    """The status closure's context holds the task's timeout, templated per
    host: two hosts whose timeout differs ask servers of their own, each
    served with its own; two whose timeout is the same share one."""
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    options = options_of({'nix_options': {'substituters': ''}})
    task = type('Task', (), {'_uuid': 'task-keys'})()

    def key(host, timeout):
        place = Place(host, task, {'inventory_hostname': host,
                                   'ansible_play_batch': ['h1', 'h2', 'h3']})
        return server_key(place, _status_closure.closure_work(options, REQUEST, timeout))[1]
    assert key('h1', 10) != key('h2', 600)
    assert key('h3', 10) == key('h1', 10)


class ContextProbe(_action.NixdeployAction):
    """A phase whose context is its ``value`` argument and whose key holds
    it too (as a phase's key must): its answer is the context it was
    served with."""

    _requires_connection = False
    ARGUMENT_SPEC = {'value': {'type': 'str', 'required': True}}
    PHASE = 'probe'

    def host_result(self, args, result):
        got = self.batch_answer(BatchWork('probe', [], 'asked', ECHO_CONTEXT,
                                          context={'value': args['value']}))
        return dict(result, served_with=got.entry['context']['value'], here=got.here)


@pytest.fixture
def run_context_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))

    def run(value, host='h1'):
        action = action_of(ContextProbe, {'value': value})
        return action.run(task_vars={'inventory_hostname': host,
                                     'ansible_play_batch': [host], 'hostvars': {}})
    return run


def test_a_retry_is_served_with_its_own_context(run_context_probe):
    """``until`` runs the task again in the same worker, its arguments
    templated anew: the retry's server is its own and reads the retry's
    context, not the work file of the first attempt."""
    first = run_context_probe('first attempt')
    assert first['served_with'] == 'first attempt', first
    again = run_context_probe('second attempt')
    assert again['served_with'] == 'second attempt' and again['here'] is True, again
