"""Every wait of a copy has a bound (issue 80), each met by a real process
that never ends, the bound made short by setting its constant:

- the controller's ``nix copy`` whose ssh never answers (a script that
  sleeps) is stopped with that ssh (``_copy_send.COPY_TIMEOUT``), and the host
  fails naming it, what it waited for and for how long;
- a host waiting for the batch's closure listing from a server that never
  answers (its work never ends) gives up
  (``_copy_stage.CLOSURE_ANSWER_WAIT``) and lists its own closure, with a
  warning.

The cascade's bounds are test_cascade_bounds.py's, with the helpers here.
The targets and the fake ssh are the copy stages' (copy_target.py): real
Nix stores, real pushes; only ssh's login is faked."""

import os
import sys
import time

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.stages.copy_target import REAL_SSH, copy_args
from tests.unit.plugins.plugin_utils.stages.stage_nix import options
# the cascade stage's own fixtures (pytest finds them by name here): its
# closure and the controller's fake ssh, as the stages' tests set it up
# pylint: disable=unused-import
from tests.unit.plugins.plugin_utils.stages.test_cascade_stage import (  # noqa: F401
    Play, closure, ssh)
# pylint: enable=unused-import
from tests.unit.plugins.plugin_utils.stages.test_copy_stage import task_host
from tests.unit.plugins.plugin_utils.task.batch_place import batch_answer
# holders: LockHolders started by a test, stopped after it (a fixture)
from tests.unit.plugins.plugin_utils.task.batch_serves import Hung
from tests.unit.plugins.plugin_utils.task.lock_holders import (  # noqa: F401  pylint: disable=unused-import
    holders)

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _copy, _copy_send, _copy_stage)

# an ssh that connects nowhere and never ends (``-G`` and ``-V`` are the
# real ssh's, so a probe still finds an OpenSSH); it notes its pid
STALLED_SSH = '''#!/bin/sh
for word in "$@"; do case $word in -G|-V) exec %(ssh)s "$@" ;; esac; done
echo $$ >>%(pids)s
exec sleep 3600
'''


@pytest.fixture
def hung(tmp_path):
    """A batch work that never answers, run by the real serving process,
    which is stopped by its pid after the test."""
    work = Hung(tmp_path)
    yield work
    work.stop()


@pytest.fixture
def pair(tmp_path, ssh, closure):
    """h1 holding the closure, h2 lacking it."""
    play = Play(tmp_path, ssh, closure.top, hosts=('h1', 'h2'))
    play.targets['h1'].give(closure.top)
    yield play
    play.close()


class Stalled:
    """A folder whose ``ssh`` never ends (``bin``); ``pids`` it ran as."""

    def __init__(self, folder):
        self.bin = folder / 'stalled-bin'
        os.makedirs(str(self.bin))
        self.pid_file = folder / 'stalled-pids'
        script = self.bin / 'ssh'
        script.write_text(STALLED_SSH % {'ssh': REAL_SSH, 'pids': self.pid_file})
        script.chmod(0o755)

    def pids(self):
        return [int(p) for p in self.pid_file.read_text().split()] if self.pid_file.exists() else []

    def all_gone(self, within=10):
        """Whether every ssh it ran has ended (a zombie counts as ended)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not any(_running(pid) for pid in self.pids()):
                return True
            time.sleep(0.1)
        return False


def _running(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def stall_sender(play, host, stalled):
    """``host``'s ssh to other hosts never ends (its own sshd still answers)."""
    target = play.targets[host]
    target.env['PATH'] = '%s:%s' % (stalled.bin, target.env['PATH'])
    target.set()


def entry(play, host, copy_mode='cascade', held=None, hold=None):
    """``play.entry(host)`` in ``copy_mode``, over the real batch files; the
    batch work of kind ``held`` serves and never answers: ``hold`` (a
    ``batch_serves.Hung``) is its serve function."""
    task_vars = dict(play.hostvars[host], hostvars=play.hostvars,
                     ansible_play_batch=list(play.names))
    args, filled = copy_args(task_vars, copy_mode=copy_mode, **play.given)
    target = task_host(play.targets[host], host, play.ssh)
    play.hosts.append(target)

    def before(work, _server):
        if work.kind == held:
            work.serve = hold.name

    return _copy_stage.CopyStage(host, args, task_vars, target, filled=filled,
                                 batch_answer=batch_answer(host, task_vars, play.names,
                                                           before)).run()


# ------------------------------------------------------------------ nix copy
def test_a_push_whose_ssh_never_answers_is_stopped_with_its_ssh(tmp_path, monkeypatch, closure):
    stalled = Stalled(tmp_path)
    monkeypatch.setattr(_copy_send, 'COPY_TIMEOUT', 2)
    started = time.monotonic()
    with pytest.raises(_copy.CopyTimeout) as raised:
        _copy_send.push(options(), closure.top, 'ssh-ng://stalled.invalid',
                        {'PATH': '%s:%s' % (stalled.bin, os.environ['PATH'])}, [])
    assert time.monotonic() - started < 20
    assert raised.value.seconds == 2
    assert raised.value.message == 'the nix copy of %s to ssh-ng://stalled.invalid' % closure.top
    # Nix's ssh went with it: nothing of the copy is left running
    assert stalled.pids() and stalled.all_gone()


def test_a_push_that_stalls_fails_the_host_naming_the_wait(tmp_path, monkeypatch, ssh, closure):
    play = Play(tmp_path, ssh, closure.top, hosts=('h1',))
    stalled = Stalled(tmp_path)
    # the probe goes over Ansible's connection; the controller's nix copy over its ssh
    monkeypatch.setenv('PATH', '%s:%s' % (stalled.bin, os.environ['PATH']))
    monkeypatch.setattr(_copy_send, 'COPY_TIMEOUT', 2)
    try:
        with pytest.raises(_copy.CopyError) as raised:
            entry(play, 'h1', copy_mode='push')
    finally:
        play.close()
    assert str(raised.value).startswith(
        'h1: the nix copy of %s to ssh-ng://127.0.0.1' % closure.top)
    assert 'did not end within 2s and was stopped; look at the receiving host' in str(raised.value)
    assert stalled.all_gone()


# ------------------------------------------------------------------ closure listing
def test_a_host_waiting_on_a_closure_listing_held_forever_lists_its_own(monkeypatch, pair,
                                                                        closure, hung):
    monkeypatch.setattr(_copy_stage, 'CLOSURE_ANSWER_WAIT', 1)
    h2 = entry(pair, 'h2', copy_mode='push', held='closure', hold=hung)
    assert h2['warnings'][0].startswith(
        "h2: got no answer from the play batch's closure listing (one process lists every "
        "closure of the batch) and listed its own instead (no answer for h2 from the closure "
        "batch's process after 1s"), h2['warnings']
    assert (h2['closure_paths'], h2['paths_sent']) == (2, 2)
    assert pair.targets['h2'].lacks([closure.top, closure.base]) == []
