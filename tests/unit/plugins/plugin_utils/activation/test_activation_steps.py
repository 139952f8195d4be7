"""The bound an activation's step file gives (activation/_activation_steps.py),
read as an interrupted run's summary reads it (report/_interrupted.py): once
the activation has ended and awaits its confirmation, the watchdog's window
is all that is left before an unconfirmed rollback, not the activation's
timeout too (a user told "within 268 s" saw it roll back 40 s later)."""

import sys
import time

import pytest
from ansible import constants as C

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_fields import (  # noqa: E402
    AWAITING)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_steps import (  # noqa: E402
    ActivationSteps, read_window)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import _interrupted  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _progress  # noqa: E402

HOST = 'steps-test-host'


class Task:
    host = HOST
    args = {'lock_timeout': 60}


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    yield Clock(time.time())
    _progress.clear_step(C.DEFAULT_LOCAL_TMP, HOST)


def said(clock):
    step = _progress.read_step_record(C.DEFAULT_LOCAL_TMP, HOST, clock.now - 60)
    return _interrupted.in_flight(step, clock.now)


def test_an_activation_under_way_is_bounded_by_its_timeout_and_the_window(clock):
    steps = ActivationSteps(Task(), 240, 30, clock=clock)
    steps.seen(None)
    clock.now += 3
    steps.seen({'state': 'running'})
    words, within = said(clock)
    assert within == 240 + 30 - 3, words


def test_an_activation_that_awaits_its_confirmation_rolls_back_within_the_window(clock):
    steps = ActivationSteps(Task(), 240, 30, clock=clock)
    steps.seen(None)
    clock.now += 5
    steps.seen({'state': AWAITING})
    clock.now += 2
    words, within = said(clock)
    assert within == 28, words
    assert words.endswith('unconfirmed, it rolls back by itself within 28 s'), words
    # a later poll of the same state moves nothing
    clock.now += 4
    steps.seen({'state': AWAITING})
    assert said(clock)[1] == 24


def test_an_activation_still_running_says_its_window_and_the_most(clock):
    """Interrupted while the activation itself runs: the rollback comes the
    watchdog's window after the activation ends; the most it may take
    comes first. Both are said (the trial saw "within 268 s" for a
    rollback 40 s later)."""
    steps = ActivationSteps(Task(), 240, 30, clock=clock)
    steps.seen(None)
    started = clock.now
    clock.now += 2
    step = _progress.read_step_record(C.DEFAULT_LOCAL_TMP, HOST, started - 1)
    window = read_window(C.DEFAULT_LOCAL_TMP, HOST, started - 1)
    words, within = _interrupted.in_flight(step, clock.now, window)
    assert (window, within) == (30, 268), (window, within)
    assert words.endswith('unconfirmed, it rolls back by itself 30 s after its activation ends, '
                          'within 268 s at the latest'), words
    # the task is done with it: nothing is left to read
    steps.over()
    assert read_window(C.DEFAULT_LOCAL_TMP, HOST, started - 1) is None


def test_a_host_interrupted_while_awaiting_its_confirmation_may_keep_its_system(clock):
    """Interrupted while the task confirms: the confirmation may have
    reached the host a moment before (the controller learns it only when
    its login returns), so both ends are said, with the watchdog's bound
    (the trial saw "it rolls back" said of a host that kept its system)."""
    _progress.set_step(C.DEFAULT_LOCAL_TMP, HOST, _progress.AWAITING_CONFIRMATION,
                       until=clock.now + 25, rolls_back=True)
    words, within = said(clock)
    assert within == 25, words
    assert 'if the confirmation reached it, it keeps its new system' in words, words
    assert 'if not, it rolls back by itself within 25 s' in words, words


def test_a_confirmed_host_keeps_its_system_when_interrupted(clock):
    """Confirmed, its run finishing on the target (the boot entry): it
    keeps its new system; nothing rolls it back."""
    _progress.set_step(C.DEFAULT_LOCAL_TMP, HOST, _progress.CONFIRMED)
    words, within = said(clock)
    assert within is None, words
    assert words.startswith('confirmed when interrupted: it keeps its new system'), words
    assert 'rolls back' not in words, words
