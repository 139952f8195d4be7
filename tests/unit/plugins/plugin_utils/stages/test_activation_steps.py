"""The step of an activation a person waits on, as the progress lines of the
callback nixdeploy.fleet.summary read it (plugin_utils/task/_progress.py):
nix_activate with state=activated on the fake target of test_activation.py,
each program it runs on the target noted with the step the run's step file
said at that moment. Activating from the launch, health checks while they
run, awaiting confirmation until the confirmation is taken (through a lost
try), nothing after; each step under magic rollback says by when the
watchdog rolls the run back, unconfirmed."""

import pytest
from ansible import constants as C

from tests.unit.plugins.plugin_utils.stages.activation_target import Target
from tests.unit.plugins.plugin_utils.stages.test_activation import activation

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _health_checks)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _progress  # noqa: E402

HOST = 'web1'   # the inventory name of activation_target's tasks


def step_now():
    found = _progress.read_step(C.DEFAULT_LOCAL_TMP, HOST, 0.0)
    return found[0] if found else None


@pytest.fixture
def target(tmp_path, monkeypatch):
    made = Target(tmp_path, monkeypatch)
    _progress.clear_step(C.DEFAULT_LOCAL_TMP, HOST)
    yield made
    made.close()
    _progress.clear_step(C.DEFAULT_LOCAL_TMP, HOST)


def noting_steps(host):
    """[(program, step when it ran)] of every program ``host`` runs from now on."""
    noted = []
    real = host.sh

    def sh(script, *args, **kwargs):
        step = step_now()
        try:
            return real(script, *args, **kwargs)
        finally:
            noted.append((host.calls[-1].name, step))
    host.sh = sh
    return noted


def test_the_step_says_health_checks_then_awaiting_confirmation_then_nothing(target):
    noted = noting_steps(target.host)
    # the first confirmation try finds no answer: the host still awaits it
    target.host.then('activate-confirm.sh', lost='Connection timed out during banner exchange')
    checks = _health_checks.validate([{'name': 'web', 'command': 'true', 'retries': 0}])
    task = target.task(target.folder.system('a'), health_checks=checks)
    res = activation(task).activate()
    assert res['state'] == 'done' and res['confirmed'] is True, res
    assert noted[:4] == [('activate-launch.sh', 'activating'), ('health-check.sh', 'health checks'),
                         ('activate-confirm.sh', 'awaiting confirmation'),
                         ('activate-confirm.sh', 'awaiting confirmation')], noted
    # once confirmed the run only ends: no step is left behind
    assert all(step is None for _name, step in noted[4:]), noted
    assert step_now() is None


def test_a_rejected_run_leaves_no_step(target):
    noted = noting_steps(target.host)
    checks = _health_checks.validate([{'name': 'web', 'command': 'exit 3', 'retries': 0}])
    res = activation(target.task(target.folder.system('b'), health_checks=checks)).activate()
    assert res['failed'] and res['phase'] == 'checks', res
    assert noted == [('activate-launch.sh', 'activating'), ('health-check.sh', 'health checks'),
                     ('activate-reject.sh', None)], noted
    assert step_now() is None


def test_each_step_says_when_the_watchdog_rolls_back_at_the_latest(target):
    bounds = []
    real = target.host.sh

    def sh(script, *args, **kwargs):
        found = _progress.read_step_record(C.DEFAULT_LOCAL_TMP, HOST, 0.0)
        if found:
            bounds.append((found['step'], found['until'] - found['since'], found['rolls_back']))
        return real(script, *args, **kwargs)
    target.host.sh = sh
    checks = _health_checks.validate([{'name': 'web', 'command': 'true', 'retries': 0}])
    task = target.task(target.folder.system('c'), health_checks=checks)
    args = task.args
    res = activation(task).activate()
    assert res['confirmed'] is True, res
    window = args['confirm_timeout'] + _health_checks.budget(checks)
    launched = bounds[0]
    # under way: its activation, then the watchdog's window
    assert launched[0] == 'activating' and launched[2] is True, bounds
    assert abs(launched[1] - (args['activation_timeout'] + window)) < 2, (bounds, window)
    # awaiting: the window, counted from when the run awaited its confirmation
    later = [b for b in bounds if b[0] in ('health checks', 'awaiting confirmation')]
    assert later and all(b[2] is True and 0 < b[1] <= window + 1 for b in later), (bounds, window)
