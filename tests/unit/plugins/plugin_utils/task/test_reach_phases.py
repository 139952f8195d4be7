"""plugin_utils/task/_reach.py: a run asks for its hosts (the login probe)
only when a phase its tags select logs in to them (docs/networks.md, "Which
phases reach the hosts"). The lab proves each case end to end: the publish
role with hosts off (tests/integration/roles/test_publish_role.py) and
``--tags build`` beside an off host (test_deploy_role.py)."""

import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _reach  # noqa: E402


def task_vars(run=None, skip=None):
    out = {}
    if run is not None:
        out['ansible_run_tags'] = run
    if skip is not None:
        out['ansible_skip_tags'] = skip
    return out


@pytest.mark.parametrize('run, skip, phases', [
    (None, None, ('build', 'copy', 'activate')),
    (['all'], [], ('build', 'copy', 'activate')),
    (['eval'], [], ()),
    (['eval', 'never'], [], ()),
    (['build'], [], ('build',)),
    (['eval', 'build'], [], ('build',)),
    (['copy'], [], ('copy',)),
    (['keys'], [], ('keys',)),
    (['activate'], [], ('activate',)),
    (['all'], ['copy', 'activate'], ('build',)),
    (['all'], ['activate'], ('build', 'copy')),
    (['tagged'], [], ('build', 'copy', 'activate')),
    # a tag of the user's own playbook: its tasks may log in anywhere
    (['web'], [], _reach.LOGIN_PHASES),
    (['eval', 'web'], [], _reach.LOGIN_PHASES),
])
def test_the_phases_a_run_selects(run, skip, phases):
    assert _reach.login_phases(task_vars(run, skip)) == phases


def asked():
    """A builds_on_target that says where it was asked."""
    calls = []

    def builds_on_target():
        calls.append(True)
        return True
    return builds_on_target, calls


def test_a_build_on_the_controller_needs_no_login():
    assert not _reach.needs_login(task_vars(['build']), lambda: False)
    assert not _reach.needs_login(task_vars(['eval']), lambda: True)
    assert _reach.needs_login(task_vars(['build']), lambda: True)


def test_the_build_place_is_asked_only_when_it_decides():
    on_target, calls = asked()
    assert _reach.needs_login(task_vars(['all']), on_target)
    assert calls == []   # copy logs in anyway
    assert _reach.needs_login(task_vars(['build']), on_target)
    assert calls == [True]


def test_no_probe_starts_where_no_phase_logs_in():
    # the probe would need a connection; none is given: start must not get there
    args = {'probe_timeout': 10}
    assert _reach.start(None, task_vars(['eval']), args) is None
    assert _reach.start(None, task_vars(['build']), args, lambda: False) is None
    assert _reach.start(None, task_vars(['all']), {'probe_timeout': 0}) is None
