"""A run stopped by a signal ends as a run: the summary callback says what
each host had reached and what happens to the ones in flight, the report
callback writes an interrupted run (tests/integration/test_interrupted_run.py
does it all for real, Ctrl-C included). Here: the callbacks fed the results
Ansible would send them, with the step file an activation under way keeps;
and the signal hook (task/_interrupt.py) in a process of its own, sent real
SIGINT and SIGTERM in front of a handler that does what ansible-core's does."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jsonschema
import pytest
from ansible import constants as C

from tests.collection import REPO, collections_path
from tests.unit.plugins.callback import test_summary
from tests.unit.plugins.callback.test_summary import EVAL, Display, Play, Summary, switched

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.callback import report as report_plugin  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import _interrupted  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _progress  # noqa: E402

SCHEMA = os.path.join(REPO, 'docs', 'report.schema.json')


class Task(test_summary.Task):
    """A task of the role as both callbacks read it (the report keys its
    starts by the task's uuid, one a phase)."""

    def __init__(self, phase):
        super(Task, self).__init__(phase)
        self._uuid = 'task-%s' % phase
        self.args = {}

    def get_name(self):
        return 'nixdeploy.fleet.deploy : %s' % self.resolved_action


class Result(test_summary.Result):
    def __init__(self, host, phase, data):
        super(Result, self).__init__(host, phase, data)
        self._task = Task(phase)


def started(callback, host, phase):
    callback.v2_runner_on_start(test_summary.Named(host), Task(phase))


def stopped_batch(callback):
    """web1 switched, web2's activation under way (its step file says it
    rolls back within 30 s), web3 at its copy; web4 never began (the
    evaluation counts 4 hosts in the play)."""
    callback.v2_playbook_on_play_start(Play())
    for host in ('web1', 'web2', 'web3'):
        started(callback, host, 'eval')
        callback.v2_runner_on_ok(Result(host, 'eval', EVAL))
        started(callback, host, 'copy')
    for host in ('web1', 'web2'):
        callback.v2_runner_on_ok(Result(host, 'copy', {'changed': True}))
        started(callback, host, 'activate')
    callback.v2_runner_on_ok(Result('web1', 'activate', switched(3)))
    _progress.set_step(C.DEFAULT_LOCAL_TMP, 'web2', _progress.ACTIVATING,
                       until=time.time() + 30, rolls_back=True)


@pytest.fixture
def steps():
    yield
    _progress.clear_step(C.DEFAULT_LOCAL_TMP, 'web2')


def test_the_summary_of_an_interrupted_run_names_each_host_and_what_comes_next(steps):
    callback = Summary(display=Display())
    stopped_batch(callback)
    callback.interrupted('SIGINT')
    text = callback._display.text()
    assert text[0] == 'NIXDEPLOY SUMMARY (interrupted by SIGINT)'
    lines = dict((line.split()[0], line) for line in text[1:4])
    assert lines['web1'].split()[-1] == 'switched', lines
    assert 'activation under way when interrupted; unconfirmed, it rolls back by itself within ' \
        in lines['web2'], lines
    within = int(lines['web2'].rsplit('within ', 1)[1].split()[0])
    assert 28 <= within <= 30, lines
    assert lines['web3'].endswith('stopped at copy when interrupted: not activated, '
                                  'nothing changed on it'), lines
    assert text[4] == ('nixdeploy: interrupted by SIGINT: 1 changed, 1 activating, '
                       '1 stopped before activation, 1 not started')
    # the run's end, should ansible-core still send it, says nothing twice
    callback.v2_playbook_on_stats(None)
    assert len(callback._display.text()) == 5 or 'NIXDEPLOY SUMMARY' not in \
        callback._display.text()[5:], callback._display.text()


def test_without_a_step_file_the_activation_in_flight_is_said_without_a_bound():
    callback = Summary(display=Display())
    stopped_batch(callback)
    _progress.clear_step(C.DEFAULT_LOCAL_TMP, 'web2')
    callback.interrupted('SIGTERM')
    line = [t for t in callback._display.text() if t.startswith('web2 ')][0]
    assert line.endswith('activation under way when interrupted; it goes on on the target, and '
                         'with magic rollback, unconfirmed, rolls back by itself'), line


def test_a_playbook_that_ran_nothing_of_the_collection_says_nothing_when_interrupted():
    callback = Summary(display=Display())
    callback.v2_playbook_on_play_start(Play())
    callback.interrupted('SIGINT')
    assert callback._display.lines == []


class Report(report_plugin.CallbackModule):
    def __init__(self, folder):
        super(Report, self).__init__(display=Display())
        self.folder = folder

    def get_option(self, k, hostvars=None):
        return {'report_dir': self.folder, 'unique_names': True, 'html': True,
                'flake_metadata': False, 'nix_bin': 'nix'}[k]


def test_the_report_of_an_interrupted_run_keeps_every_host_under_its_own_name(tmp_path, steps):
    callback = Report(str(tmp_path))
    stopped_batch(callback)
    callback.interrupted('SIGINT')
    with open(str(tmp_path / 'nixdeploy-report.json')) as handle:
        report = json.load(handle)
    with open(SCHEMA) as handle:
        jsonschema.validate(report, json.load(handle))
    run = report['runs'][0]
    assert (run['state'], run['interrupted_by']) == ('interrupted', 'SIGINT')
    hosts = report['hosts']
    assert sorted(hosts) == ['web1', 'web2', 'web3']
    assert hosts['web1']['interrupted'] == {'state': 'changed', 'phase': None,
                                            'rolls_back_within': None}
    assert hosts['web2']['interrupted']['state'] == 'activating'
    assert 28 <= hosts['web2']['interrupted']['rolls_back_within'] <= 30
    assert hosts['web3']['interrupted'] == {'state': 'stopped', 'phase': 'copy',
                                            'rolls_back_within': None}
    assert (tmp_path / ('nixdeploy-report-%s.json' % run['id'])).exists()
    page = (tmp_path / ('nixdeploy-report-%s.html' % run['id'])).read_text()
    assert 'interrupted by SIGINT' in page and 'activation under way when interrupted' in page
    assert callback._display.text() == ['nixdeploy report (interrupted run): %s' % ', '.join(
        str(tmp_path / name) for name in (
            'nixdeploy-report.json', 'nixdeploy-report.html',
            'nixdeploy-report-%s.json' % run['id'], 'nixdeploy-report-%s.html' % run['id']))]


def test_the_interrupted_report_counts_and_words_agree_with_the_console(tmp_path, steps):
    """The JSON, the page and the console's closing line say one word for
    each host (an activation under way is "activating", not "not
    activated") and count them alike."""
    summary = Summary(display=Display())
    stopped_batch(summary)
    summary.interrupted('SIGINT')
    closing = summary._display.text()[-1]
    callback = Report(str(tmp_path))
    stopped_batch(callback)
    callback.interrupted('SIGINT')
    with open(str(tmp_path / 'nixdeploy-report.json')) as handle:
        report = json.load(handle)
    assert report['totals']['interrupted'] == {'changed': 1, 'activating': 1, 'stopped': 1}
    assert closing.startswith('nixdeploy: interrupted by SIGINT: 1 changed, 1 activating, '
                              '1 stopped before activation'), closing
    page = (tmp_path / 'nixdeploy-report.html').read_text()
    assert '<small>not activated</small>' not in page, page
    assert '<span class="badge activating">activating</span>' in page
    assert '<span class="badge stopped">stopped before activation</span>' in page
    assert '<b>1</b><small>activating</small>' in page
    assert '<b>1</b><small>stopped before activation</small>' in page
    assert 'every host went through' not in page
    assert 'None before the run was interrupted' in page


def test_an_interrupted_lock_wait_says_the_target_may_give_up():
    """A host whose run waited for another run's lock: its run on the
    target waits on up to its bound and may give up; never "it activates
    once the lock is free" (it does not when the wait runs out)."""
    words, within = _interrupted.in_flight(
        {'step': _progress.WAITING_ACTIVATION, 'since': 0, 'until': 100.0,
         'rolls_back': True}, 58.2)
    assert within is None
    assert words == ("waiting for another run's activation when interrupted; its run on the "
                     "target waits on (at most 42 s more): if the lock is freed in time it "
                     "activates and, unconfirmed, rolls back by itself; else it gives up and "
                     "nothing changes on the host"), words


# A process with ansible-core's way of handling the two signals (its task
# queue manager's handler: the default back, then KeyboardInterrupt for
# SIGINT, the same signal again for SIGTERM), then the hook in front.
HOOKED = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _interrupt

    def core(signum, frame):
        signal.signal(signum, signal.SIG_DFL)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt()
        os.kill(os.getpid(), signum)

    class Listener:
        def interrupted(self, name):
            print('told', name, flush=True)

    signal.signal(signal.SIGINT, core)
    signal.signal(signal.SIGTERM, core)
    listener = Listener()
    _interrupt.listen(listener)
    _interrupt.listen(listener)   # a second listen installs nothing twice
    try:
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))
        signal.pause()
    except KeyboardInterrupt:
        print('KeyboardInterrupt', flush=True)
        sys.exit(99)
''')


@pytest.mark.parametrize('name,rc,after', [('SIGINT', 99, 'KeyboardInterrupt'),
                                           ('SIGTERM', -signal.SIGTERM, None)])
def test_the_hook_tells_its_listeners_once_then_ansible_core_ends_the_run(name, rc, after):
    proc = subprocess.run([sys.executable, '-c', HOOKED, collections_path(), name],
                          stdout=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)
    assert proc.returncode == rc, proc.stdout
    assert proc.stdout.splitlines() == ['told %s' % name] + ([after] if after else [])
