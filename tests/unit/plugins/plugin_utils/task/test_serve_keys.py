"""One context a batch server, the first host's (task/_batch_server.py): it
holds only where two hosts of one key would give the same context. A
phase's key must hold every argument its context carries; a retry's
server is its own, so a retry's context is its own.

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
    BatchWork)
# run_probe's action: the test action's real run for a host
from tests.unit.plugins.plugin_utils.task.test_action import action_of  # noqa: E402

REQUEST = {'current': '/nix/store/00000000000000000000000000000000-a',
           'desired': '/nix/store/00000000000000000000000000000000-b'}


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    'the status closure\'s key is its Nix options only while its context holds the task\'s '
    'timeout: two hosts whose timeout differs share one server, served with the first '
    'one\'s timeout'))
def test_the_status_closure_keys_every_argument_of_its_context():
    options = options_of({'nix_options': {'substituters': ''}})
    first = _status_closure.closure_work(options, REQUEST, timeout=10)
    second = _status_closure.closure_work(options, REQUEST, timeout=600)
    assert first.key_parts != second.key_parts or first.context == second.context, (
        first.key_parts, first.context, second.context)


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
