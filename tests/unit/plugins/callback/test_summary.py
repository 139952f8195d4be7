"""The callback nixdeploy.fleet.summary: the NIXDEPLOY SUMMARY after each
serial batch, the batch-stop reason and the progress lines, fed the task
results Ansible would send it and shown on a small fake display."""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from ansible import constants as C

from tests.collection import BIN, ansible_env, collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.callback import summary as plugin  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _progress  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._closing_lines import (  # noqa: E402
    evaluation_line)

ACTIONS = {'eval': 'nix_eval', 'build': 'nix_build', 'copy': 'nix_copy_closure',
           'activate': 'nix_activate', 'stats': 'ansible.builtin.set_stats'}
STOP = ('nixdeploy: 1 of 2 hosts of batch 1 failed (web2), more than max_fail_percentage 40%: '
        'no further batch starts')


class Display:
    verbosity = 0

    def __init__(self):
        self.lines = []

    def banner(self, msg, color=None, cows=True):
        self.lines.append(('banner', msg, color))

    def display(self, msg, color=None, **kwargs):
        self.lines.append(('line', msg, color))

    def warning(self, msg, **kwargs):
        self.lines.append(('warning', msg, None))

    def text(self):
        return [msg for _kind, msg, _color in self.lines]


class Summary(plugin.CallbackModule):
    """The callback with its option set as ansible.cfg would (Ansible's loader
    is not involved here)."""
    interval = 0
    # no file of unreachable hosts in the folder the tests run in
    unreachable_file = ''

    def get_option(self, k, hostvars=None):
        return {'progress_interval': self.interval, 'unreachable_file': self.unreachable_file}[k]


class Named:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class Task:
    def __init__(self, phase):
        self.resolved_action = ACTIONS[phase]
        if '.' not in self.resolved_action:
            self.resolved_action = 'nixdeploy.fleet.' + self.resolved_action


class Result:
    def __init__(self, host, phase, data):
        self._host, self._task, self._result = Named(host), Task(phase), data


class Play:
    check_mode = False

    def __init__(self, **extra_vars):
        self.extra_vars = extra_vars

    def get_variable_manager(self):
        return self


EVAL = {'changed': False, 'platform': 'nixos', 'batch': 1, 'play_hosts': 4}


def switched(before):
    return {'changed': True, 'goal': 'switch', 'platform': 'nixos',
            'previous': {'generation': before}, 'new': {'generation': before + 1}}


def first_batch(callback):
    """web1 switches, web2's build fails; then batch 2 starts."""
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_ok(Result('web1', 'eval', EVAL))
    callback.v2_runner_on_ok(Result('web2', 'eval', EVAL))
    callback.v2_runner_on_failed(Result('web2', 'build', {
        'failed': True, 'phase': 'build', 'msg': 'web2: error: builder for hello.drv failed'}))
    callback.v2_runner_on_ok(Result('web1', 'build', {'changed': True}))
    callback.v2_runner_on_ok(Result('web1', 'stats', {'changed': False}))   # not a deploy phase
    callback.v2_runner_on_ok(Result('web1', 'activate', switched(3)))


@pytest.fixture
def callback():
    callback = Summary(display=Display())
    callback.play = Play()
    yield callback
    callback.v2_playbook_on_stats(None)


def test_a_summary_line_per_host_when_the_next_batch_starts(callback):
    first_batch(callback)
    assert callback._display.lines == []      # nothing while the batch runs
    callback.v2_playbook_on_play_start(callback.play)
    shown = callback._display.lines
    assert shown[0] == ('banner', 'NIXDEPLOY SUMMARY', None)
    assert [line.split() for _kind, line, _color in shown[1:]] == [
        ['web1', 'nixos', 'gen', '3', '->', '4', 'switched'],
        ['web2', 'nixos', 'gen', '-', '->', '-', 'FAILED', 'at', 'build:', 'error:', 'builder',
         'for', 'hello.drv', 'failed']]
    assert [color for _kind, _line, color in shown[1:]] == [None, 'red']


def test_a_host_deployed_with_its_key_unchecked_says_so_on_its_line(callback):
    """nix_host_key_unchecked let web1's copy and activation go on although
    ssh does not check its key: its results say host_key_unchecked, and so
    does its line; web2, refused for the same reason, fails naming it."""
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_ok(Result('web1', 'eval', EVAL))
    callback.v2_runner_on_ok(Result('web1', 'copy', {'changed': True, 'host_key_unchecked': True}))
    callback.v2_runner_on_ok(Result('web1', 'activate', dict(switched(3), host_key_unchecked=True)))
    callback.v2_runner_on_ok(Result('web2', 'eval', EVAL))
    callback.v2_runner_on_failed(Result('web2', 'copy', {
        'failed': True, 'phase': 'copy', 'connection_lost': False,
        'msg': 'web2: refused: ssh would not check the host key of web2 (...)'}))
    callback.v2_playbook_on_stats(None)
    lines = dict((line.split()[0], line) for line in callback._display.text()[1:])
    assert lines['web1'].endswith('switched (host key unchecked)'), lines
    assert 'FAILED at copy: refused: ssh would not check the host key of web2' in lines['web2']
    assert 'unchecked)' not in lines['web2'].split('(...)')[-1], lines


def test_the_last_batch_is_summarised_with_the_stats(callback):
    first_batch(callback)
    callback.v2_playbook_on_stats(None)
    assert callback._display.text()[0] == 'NIXDEPLOY SUMMARY' and len(callback._display.lines) == 4
    # the run's closing line counts as the PLAY RECAP does
    assert callback._display.text()[-1] == \
        'nixdeploy: 2 hosts: 1 failed, 1 changed, 0 unchanged'


def test_a_batch_that_does_not_start_says_why_once(callback):
    first_batch(callback)
    callback.v2_playbook_on_play_start(callback.play)
    del callback._display.lines[:]
    for host in ('web3', 'web4'):
        callback.v2_runner_on_ok(Result(host, 'eval', {'changed': False, 'batch': 2, 'play_hosts': 4,
                                                       'stopped': True, 'msg': STOP}))
    callback.v2_playbook_on_stats(None)
    # said once, in red; the stopped hosts get no summary line and are not
    # counted in the run's closing line (the first batch's two hosts are),
    # and the end says how many hosts were not deployed
    assert callback._display.lines == [
        ('line', STOP, 'red'),
        ('line', 'nixdeploy: 2 hosts: 1 failed, 1 changed, 0 unchanged', 'red'),
        ('line', 'nixdeploy: 2 hosts not deployed: no batch started for them: web3, web4', 'red')]


def test_every_host_of_the_last_batch_failed(callback):
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_failed(Result('web1', 'eval', dict(EVAL, failed=True, msg='web1: error: x')))
    callback.v2_playbook_on_stats(None)
    assert callback._display.text()[-1] == ('nixdeploy: every host of the last batch failed: no '
                                            'further batch starts (3 hosts not deployed)')


def test_a_host_ansible_could_not_reach_is_summarised_unreachable(callback):
    """The login probe reached web2 at no address: nix_eval's result is
    Ansible's unreachable, which the summary names and counts apart."""
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_ok(Result('web1', 'eval', EVAL))
    callback.v2_runner_on_ok(Result('web1', 'activate', switched(3)))
    callback.v2_runner_on_unreachable(Result('web2', 'eval', dict(
        EVAL, unreachable=True, unreachable_at=['10.0.0.2'],
        msg='web2: web2 is unreachable at 10.0.0.2: no route')))
    callback.v2_playbook_on_stats(None)
    lines = callback._display.lines
    assert lines[2][1].endswith('UNREACHABLE: web2 is unreachable at 10.0.0.2: no route'), lines
    assert lines[3:] == [
        ('line', 'nixdeploy: 2 hosts: 0 failed, 1 unreachable, 1 changed, 0 unchanged', 'red'),
        ('line', 'nixdeploy: 1 unreachable (nothing was built or copied for it): web2', 'red')]


def test_nix_summary_false_silences_the_summary(callback):
    callback.play = Play(nix_summary='false')
    first_batch(callback)
    callback.v2_playbook_on_stats(None)
    assert callback._display.lines == []


def test_progress_line_counts_the_batch_in_each_phase_and_names_who_runs_it(tmp_path):
    callback = Summary(display=Display())
    callback.v2_playbook_on_play_start(Play())
    try:
        for host in ('web0', 'web1', 'web2', 'web3'):
            callback.v2_runner_on_start(Named(host), Task('eval'))
            callback.v2_runner_on_ok(Result(host, 'eval', EVAL))
        for host in ('web0', 'web1', 'web3'):
            callback.v2_runner_on_start(Named(host), Task('copy'))
        callback.v2_runner_on_failed(Result('web3', 'copy', {'failed': True, 'msg': 'x'}))
        callback.v2_runner_on_start(Named('web2'), Task('activate'))
        progress = callback._progress.copy()
    finally:
        callback.v2_playbook_on_stats(None)
    now = max(t for hosts in progress.running.values() for t in hosts.values())
    progress.running['copy'].update(web0=now - 60, web1=now - 100)
    progress.running['activate']['web2'] = now - 95
    assert plugin.progress_line(progress, now, 10, str(tmp_path)) == (
        'nixdeploy: progress: eval: 4 of 4 done; copy: 1 of 4 done (1 failed), 2 running: '
        'web1 (100s), web0 (60s); activate: 0 of 4 done, 1 running: web2 (95s)')
    # web2's activation awaits its confirmation (its worker's step file)
    _progress.set_step(str(tmp_path), 'web2', _progress.AWAITING_CONFIRMATION)
    line = plugin.progress_line(progress, now + 1, 10, str(tmp_path))
    assert line.endswith('activate: 0 of 4 done, 1 running: web2 (96s, awaiting confirmation 0s)') \
        or line.endswith('(96s, awaiting confirmation 1s)'), line
    # nothing has run 10 s yet: no line
    progress.running['copy'] = {}
    progress.running['activate']['web2'] = now - 5
    assert plugin.progress_line(progress, now, 10, str(tmp_path)) is None


def test_a_long_task_gets_progress_lines_until_it_ends(monkeypatch):
    # what the ticker computed, in order: (hosts running, the line or None);
    # it computes under the callback's lock, so each look is wholly before or
    # after the task's end, and shows its line before it looks again
    looks = []

    def progress_line(progress, now, interval, base_dir=None):
        line = real(progress, now, interval, base_dir)
        looks.append((sorted(h for hosts in progress.running.values() for h in hosts), line))
        return line
    real = plugin.progress_line
    monkeypatch.setattr(plugin, 'progress_line', progress_line)

    def wait_until(predicate, timeout=60):
        # a busy machine may starve the ticker thread for a while
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.05)
        return predicate()

    callback = Summary(display=Display())
    callback.interval = 0.5
    callback.v2_playbook_on_play_start(Play())
    try:
        callback.v2_runner_on_start(Named('web1'), Task('copy'))
        assert wait_until(lambda: callback._display.lines)
        (line,) = callback._display.text()[:1]
        assert line.startswith('nixdeploy: progress: copy: 0 of 1 done, 1 running: web1 (')
        callback.v2_runner_on_ok(Result('web1', 'copy', {'changed': True}))
        ended = len(looks)
        # two looks after the end (the ticker wakes once a second): the line
        # of a look before it is shown by then
        assert wait_until(lambda: len(looks) >= ended + 2)
        assert all(line is None and running == [] for running, line in looks[ended:]), looks
        # every progress line shown is one computed while web1 still ran
        before = [line for _running, line in looks[:ended] if line]
        shown = [text for text in callback._display.text() if 'progress' in text]
        assert shown == before, (shown, looks)
    finally:
        callback.v2_playbook_on_stats(None)


def test_a_host_awaiting_its_confirmation_says_so_in_the_progress_lines():
    """The activation (a worker process) keeps its step in the run's temp
    folder, the same path in every process of the run; the ticker reads it."""
    callback = Summary(display=Display())
    callback.interval = 0.5
    callback.v2_playbook_on_play_start(Play())
    try:
        callback.v2_runner_on_start(Named('web1'), Task('activate'))
        _progress.set_step(C.DEFAULT_LOCAL_TMP, 'web1', _progress.AWAITING_CONFIRMATION)
        deadline = time.monotonic() + 60
        while not any('awaiting' in text for text in callback._display.text()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        line = [text for text in callback._display.text() if 'awaiting' in text][0]
        assert line.startswith('nixdeploy: progress: activate: 0 of 1 done, 1 running: web1 ('), line
        assert ', awaiting confirmation ' in line, line
    finally:
        _progress.clear_step(C.DEFAULT_LOCAL_TMP, 'web1')
        callback.v2_playbook_on_stats(None)


def test_documented_option_and_ansible_doc_reads_it():
    doc = yaml.safe_load(plugin.DOCUMENTATION)
    option = doc['options']['progress_interval']
    assert option['default'] == 10 and option['env'] == [{'name': 'NIXDEPLOY_PROGRESS_INTERVAL'}]
    assert option['ini'] == [{'section': 'callback_nixdeploy_summary', 'key': 'progress_interval'}]
    assert plugin.CallbackModule.CALLBACK_NEEDS_ENABLED
    proc = subprocess.run([os.path.join(BIN, 'ansible-doc'), '-t', 'callback', '--json',
                           'nixdeploy.fleet.summary'], env=ansible_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)['nixdeploy.fleet.summary']['doc']['options']) == \
        {'progress_interval', 'unreachable_file'}
    option = doc['options']['unreachable_file']
    assert option['default'] == 'nixdeploy-unreachable.txt'
    assert option['env'] == [{'name': 'NIXDEPLOY_UNREACHABLE_FILE'}]


# A flake host name that ends its line, erases it and starts a forged green
# line for another host; a target's message that writes the operator's
# clipboard (OSC 52), moves the cursor up and prints a forged `switched` line.
EVIL = 'evil\n\x1b[2K\x1b[32mweb2           nixos         gen   3 -> 4   switched'
OSC52 = '\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07'
FORGED = 'check said: %s\x1b[1A\x1b[2K\rweb1  nixos  gen 3 -> 4  switched' % OSC52
RAW = ('\x1b', '\x07', '\r', '\n', '\x9b')


def shown_raw(callback):
    """Every shown line that holds a character a terminal would act on."""
    return [msg for msg in callback._display.text() if any(c in msg for c in RAW)]


def test_the_summary_shows_host_names_and_target_text_escaped(callback):
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_ok(Result(EVIL, 'eval', EVAL))
    callback.v2_runner_on_failed(Result(EVIL, 'activate', {
        'failed': True, 'phase': 'checks', 'rolled_back': True, 'rollback_reason': FORGED,
        'msg': FORGED}))
    callback.v2_runner_on_ok(Result('web2', 'eval', EVAL))
    callback.v2_runner_on_failed(Result('web2', 'copy', {
        'failed': True, 'phase': 'copy', 'msg': 'web2: ' + FORGED}))
    callback.v2_playbook_on_play_start(callback.play)
    assert not shown_raw(callback), shown_raw(callback)
    shown = callback._display.text()
    assert shown[0] == 'NIXDEPLOY SUMMARY', shown
    # one line per host, each host's own; a long one goes on over indented
    # lines (the escaped host name makes this one long), never a line that
    # starts like a host's
    lines = [shown[0]]
    for line in shown[1:]:
        if line.startswith(' '):
            assert line.startswith(' ' * 40) and len(lines) > 1, shown
            lines[-1] += ' ' + line.strip()
        else:
            lines.append(line)
    assert len(lines) == 3, shown
    assert lines[1].startswith('evil\\n\\x1b[2K\\x1b[32mweb2 ') and \
        'FAILED: rolled back (check said: \\x1b]52;c;' in lines[1], lines[1]
    assert lines[2].startswith('web2 ') and 'FAILED at copy: check said: \\x1b]52;c;' in lines[2]


def test_progress_and_stop_lines_show_host_names_escaped(callback):
    progress = _progress.BatchProgress()
    progress.start(EVIL, 'copy', 0.0)
    line = plugin.progress_line(progress, 100.0, 10)
    assert line.startswith('nixdeploy: progress: copy: 0 of 1 done, 1 running: evil\\n\\x1b[2K') \
        and \
        not any(c in line for c in RAW), line
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_ok(Result('web3', 'eval', {
        'stopped': True, 'msg': 'nixdeploy: 1 of 2 hosts of batch 1 failed (%s): no further '
                                'batch starts' % EVIL}))
    assert callback._display.text() == [
        'nixdeploy: 1 of 2 hosts of batch 1 failed (evil\\n\\x1b[2K\\x1b[32mweb2           nixos'
        '         gen   3 -> 4   switched): no further batch starts']


def test_the_closing_lines_say_what_evaluation_did(callback):
    """After a one-host commit the console says which hosts were reused,
    and from which commit, without -v or the report."""
    callback.v2_playbook_on_play_start(callback.play)
    reused = {'from': {'revision': '0123456789abcdef0123456789abcdef01234567'}, 'checked': 9}
    for host, how in (('web1', 'evaluated'), ('web2', 'reused'), ('web3', 'reused'),
                      ('web4', 'cached')):
        data = dict(EVAL, answered=how, **({'reused': reused} if how == 'reused' else {}))
        callback.v2_runner_on_ok(Result(host, 'eval', data))
        callback.v2_runner_on_ok(Result(host, 'activate', switched(3)))
    callback.v2_playbook_on_stats(None)
    text = callback._display.text()
    assert text[-2] == 'nixdeploy: evaluation: 1 evaluated, 2 reused (from 0123456), 1 cached'
    assert text[-1] == 'nixdeploy: 4 hosts: 0 failed, 4 changed, 0 unchanged'


def test_an_uncommitted_tree_says_why_nothing_was_reused(callback):
    """A one-host edit left uncommitted evaluates every host: "0 reused"
    gives its reason (the trial's row 94 read it as a fault); committed,
    it says nothing more."""
    callback.v2_playbook_on_play_start(callback.play)
    for host in ('web1', 'web2'):
        data = dict(EVAL, answered='evaluated', source={'dirty': True, 'revision': None})
        callback.v2_runner_on_ok(Result(host, 'eval', data))
        callback.v2_runner_on_ok(Result(host, 'activate', switched(3)))
    callback.v2_playbook_on_stats(None)
    assert callback._display.text()[-2] == (
        'nixdeploy: evaluation: 2 evaluated, 0 reused, 0 cached (0 reused: the flake has '
        'uncommitted changes, and nothing is reused between a dirty tree and a commit; commit '
        'them to reuse)')


def test_no_evaluation_line_without_evaluations():
    assert evaluation_line({}, set()) is None
    assert evaluation_line({'reused': 1}, {'a dirty tree'}) == \
        'nixdeploy: evaluation: 0 evaluated, 1 reused (from a dirty tree), 0 cached'


def test_the_hosts_no_batch_started_for_are_named_escaped_and_bounded():
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._closing_lines import named
    assert named([]) == ''
    assert named(['web2', 'evil\x1b[2J']) == ': evil\\x1b[2J, web2'
    many = named(['h%02d' % n for n in range(12)])
    assert many == ': ' + ', '.join('h%02d' % n for n in range(10)) + ' and 2 more', many
    # two named of four: the other two were in a batch that never ran
    assert named(['web3', 'web4'], 4) == ': web3, web4 and 2 more'
    # digit runs read as numbers, as the report orders hosts
    assert named(['h10', 'h2', 'h1']) == ': h1, h2, h10'


def test_a_rollback_s_progress_is_called_rollback():
    """The rollback role runs nix_activate with state rolled_back: its
    progress line says rollback, a deploy's activation says activate."""
    lines = {}
    for state in ('rolled_back', None):
        callback = Summary(display=Display())
        callback.v2_playbook_on_play_start(Play())
        task = Task('activate')
        task.args = {'state': state} if state else {}
        callback.v2_runner_on_start(Named('web1'), task)
        lines[state] = callback._progress.line(time.time() + 60, 10)
        callback.v2_playbook_on_stats(None)
    assert lines['rolled_back'].startswith(
        'nixdeploy: progress: rollback: 0 of 1 done, 1 running: web1 ('), lines
    assert lines[None].startswith('nixdeploy: progress: activate: 0 of 1 done'), lines
    # a batch where one host rolls back and another activates says activate
    callback = Summary(display=Display())
    callback.v2_playbook_on_play_start(Play())
    for host, state in (('web1', None), ('web2', 'rolled_back')):
        task = Task('activate')
        task.args = {'state': state} if state else {}
        callback.v2_runner_on_start(Named(host), task)
    line = callback._progress.line(time.time() + 60, 10)
    callback.v2_playbook_on_stats(None)
    assert line.startswith('nixdeploy: progress: activate: 0 of 2 done, 2 running'), line


def test_a_summary_that_fails_at_the_batch_end_leaves_the_console_its_header():
    """The console calls the summary at each batch's end, before its own
    PLAY header: an error in the summary is warned about, and the other
    listeners and the caller go on. A summary whose run ended is not called."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _batch_end

    class Broken(object):
        def batch_over(self):
            raise AttributeError("'str' object has no attribute 'get'")

    broken, good = Broken(), Summary(display=Display())
    good.v2_playbook_on_play_start(Play())
    good.v2_runner_on_ok(Result('web1', 'eval', EVAL))
    good.v2_runner_on_ok(Result('web1', 'activate', switched(1)))
    _batch_end.listen(broken)
    warned = []
    try:
        _batch_end.batch_over(warned.append)
    finally:
        _batch_end.forget(broken)
    assert warned == ["nixdeploy: the summary of the last batch failed (AttributeError: 'str' "
                      "object has no attribute 'get'); the run goes on"], warned
    assert good._display.text()[0] == 'NIXDEPLOY SUMMARY', good._display.text()
    good.v2_playbook_on_stats(None)
    shown = len(good._display.lines)
    good._outcomes['web2'] = None   # would raise if it were summarised again
    _batch_end.batch_over(warned.append)
    assert len(good._display.lines) == shown and len(warned) == 1


def private_file(folder):
    """A file of the user's that only the user may read: its path."""
    secret = folder / 'id-notes'
    secret.write_text('private-token-41d9\n')
    os.chmod(str(secret), 0o600)
    return secret


def a_link_to_a_private_file(path, secret):
    os.symlink(str(secret), str(path))


def a_folder(path, secret):
    path.mkdir()


def a_fifo(path, secret):
    os.mkfifo(str(path))


def another_users_file(path, secret):
    path.write_text('private-token-41d9\n')
    os.chown(str(path), 65534, 65534)


def a_second_name_of_a_private_file(path, secret):
    os.link(str(secret), str(path))


@pytest.mark.parametrize('plant', [a_link_to_a_private_file, a_folder, a_fifo,
                                   another_users_file, a_second_name_of_a_private_file])
def test_the_unreachable_file_is_left_alone_when_not_the_users_own_file(tmp_path, plant):
    """What a co-tenant of a shared folder can put at the retry file's path:
    the run neither reads nor writes it (nothing of a private file reaches
    the world-readable list), warns naming the path, and offers no -l @file;
    the hosts are still named."""
    shared = tmp_path / 'shared'
    shared.mkdir()
    secret = private_file(tmp_path)
    path = shared / 'nixdeploy-unreachable.txt'
    plant(path, secret)
    before = os.lstat(str(path))
    callback = Summary(display=Display())
    callback.unreachable_file = str(path)
    callback.play = Play()
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_unreachable(Result('phone', 'eval', {
        'unreachable': True, 'unreachable_at': '10.0.0.23',
        'msg': 'phone is unreachable: no route'}))
    callback.v2_playbook_on_stats(None)

    warnings = [msg for kind, msg, _color in callback._display.lines if kind == 'warning']
    assert len(warnings) == 1, callback._display.lines
    assert warnings[0].startswith('nixdeploy: the file of unreachable hosts %s was left as it is: '
                                  % path), warnings
    closing = [line for line in callback._display.text() if 'unreachable (nothing' in line]
    assert closing == ['nixdeploy: 1 unreachable (nothing was built or copied for it): phone']
    # the same entry, nothing beside it, the private file as it was
    after = os.lstat(str(path))
    assert (after.st_ino, after.st_mode, after.st_uid) == \
        (before.st_ino, before.st_mode, before.st_uid)
    assert os.listdir(str(shared)) == ['nixdeploy-unreachable.txt']
    assert secret.read_text() == 'private-token-41d9\n'
    assert os.stat(str(secret)).st_mode & 0o777 == 0o600
