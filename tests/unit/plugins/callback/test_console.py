"""The stdout callback nixdeploy.fleet.console: what it prints for a failed
result, for a cause several hosts share, for a task whose results come
between other tasks' (host_pinned), for the deploy role's rescue, for a
skipped host and for text a target wrote.

Everything here is ansible-core's own: the callback as its plugin loader
loads it (options from its DOCUMENTATION and the default callback's doc
fragments), the deploy role's real tasks as Play.load compiles them (the
role imported by its name, nixdeploy.fleet.deploy), Host objects, task
results built as the TaskQueueManager hands them to a callback, and the
real Display writing to the captured stdout. Whole runs of ansible-playbook
with it: test_console_runs.py."""

import re
import sys
import time

import pytest
from ansible import context
from ansible.executor import task_result
from ansible.executor.stats import AggregateStats
from ansible.inventory.host import Host
from ansible.module_utils.common.collections import ImmutableDict
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play import Play
from ansible.plugins.loader import callback_loader, init_plugin_loader
from ansible.template import Templar
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
from ansible.utils.display import Display
from ansible.vars.manager import VariableManager

from tests.collection import collections_path
# every task of a play's blocks, nested blocks opened
from tests.unit.plugins.plugin_utils.common.test_ansible_core import _tasks

PLAY = {'name': 'Deploy Nix systems to the selected hosts', 'hosts': 'all', 'gather_facts': False,
        'strategy': 'host_pinned',
        'tasks': [{'ansible.builtin.import_role': {'name': 'nixdeploy.fleet.deploy',
                                                   'rolespec_validate': False}}]}
CAUSE = '/opt/nonexistent/nix cannot run: No such file or directory; set nix_bin'


def _ours():
    return dict((name, module) for name, module in sys.modules.items()
                if name == 'ansible_collections' or name.startswith('ansible_collections.'))


@pytest.fixture(scope='module')
def collection():
    """ansible-core's collection loader over this checkout (as ansible-playbook
    has it), for this module only: other test modules import the collection
    from sys.path, and get their modules back after."""
    saved = _ours()
    for name in saved:
        del sys.modules[name]
    init_plugin_loader([collections_path()])
    yield
    _AnsibleCollectionFinder._remove()  # pylint: disable=protected-access
    for name in _ours():
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.fixture(scope='module')
def play(collection):
    loader = DataLoader()
    return Play.load(PLAY, variable_manager=VariableManager(loader=loader), loader=loader)


@pytest.fixture(scope='module')
def tasks(play):
    """{name without the role: task} of the deploy role, as the play runs it."""
    return dict((task.get_name().partition(' : ')[2], task) for task in _tasks(play.compile())
                if ' : ' in task.get_name())


@pytest.fixture(autouse=True)
def cli_args():
    """The command line's options as ansible-playbook sets them (no --check)."""
    before = context.CLIARGS
    context.CLIARGS = ImmutableDict(check=False, args=())
    yield
    context.CLIARGS = before


@pytest.fixture
def display():
    shown = Display()
    before = shown.verbosity
    shown.verbosity = 0
    yield shown
    shown.verbosity = before


def make_console(play, wait=0.0):
    console = callback_loader.get('nixdeploy.fleet.console')
    console.set_options(direct={'group_wait': wait})
    console.v2_playbook_on_play_start(play)
    return console


@pytest.fixture
def console(play, display):
    return make_console(play)


def result(task, host, data):
    """A task result as the TaskQueueManager gives it to a callback: 2.19 and
    2.20 make it from the result dict, later releases from a UnifiedTaskResult."""
    raw = getattr(task_result, '_RawTaskResult', None)
    if raw is not None:
        return raw(Host(host), task, dict(data), task.dump_attrs()).as_callback_task_result()
    from ansible._internal._task import UnifiedTaskResult  # pylint: disable=import-error
    return task_result.CallbackTaskResult(
        host=Host(host), task=task, utr=UnifiedTaskResult.from_action_result_dict(dict(data)))


def send(console, event, task, host, data, **kwargs):
    """Call the callback as the TaskQueueManager does (it notes the result
    the callback is given, for warnings and errors)."""
    res = result(task, host, data)
    console._current_task_result = res  # pylint: disable=protected-access
    getattr(console, event)(res, **kwargs)
    console._current_task_result = None  # pylint: disable=protected-access


def failed(host, msg, phase):
    """A phase's failed result, as the collection's modules return it."""
    return {'failed': True, 'changed': False, 'phase': phase, 'msg': '%s: %s' % (host, msg),
            'connection_lost': False, 'details': {'batch': 1, 'play_hosts': 3}}


def printed(capsys):
    return capsys.readouterr().out.splitlines()


def banners(lines):
    return [line.split(' ***')[0] for line in lines if line.startswith('TASK [')]


# ------------------------------------------------------------ a failed result
def test_a_failed_phase_is_one_line_naming_the_host_and_the_phase(console, tasks, capsys):
    build = tasks['Build the system of each host']
    send(console, 'v2_runner_on_failed', build, 'web2', failed(
        'web2', 'error: builder for hello.drv failed with exit code 1\nthis system does not build',
        'build'))
    lines = printed(capsys)
    assert banners(lines) == ['TASK [nixdeploy.fleet.deploy : Build the system of each host]']
    assert [line for line in lines if line.strip() and not line.startswith('TASK')] == [
        'fatal: [web2] at build: error: builder for hello.drv failed with exit code 1',
        '    this system does not build'], lines
    # no result dump, no [ERROR] block saying it again
    assert not [line for line in lines if '{' in line or '[ERROR]' in line or 'FAILED!' in line]


def test_with_v_a_failure_shows_the_result_as_the_default_does(console, tasks, display, capsys):
    display.verbosity = 1
    send(console, 'v2_runner_on_failed', tasks['Build the system of each host'], 'web2',
         failed('web2', 'error: builder failed', 'build'))
    out = capsys.readouterr().out
    # the result dumped (JSON, or YAML as this checkout's ansible.cfg has it)
    assert [line for line in out.splitlines() if line.startswith('fatal: [web2]: FAILED! =>')], out
    assert re.search(r'"?phase"?: "?build', out), out


def test_a_failed_result_without_a_message_is_left_to_the_default(console, tasks, capsys):
    """A failed result without a message: the default's line, whatever it holds."""
    send(console, 'v2_runner_on_failed', tasks['Copy the closure to each host'], 'web1',
         {'failed': True, 'changed': False, 'phase': 'copy'})
    out = capsys.readouterr().out
    assert 'fatal: [web1]: FAILED! =>' in out and re.search(r'"?phase"?: "?copy', out), out


# ------------------------------------------------------------ a cause the batch shares
def test_a_cause_several_hosts_share_is_said_once_naming_them(play, tasks, display, capsys):
    console = make_console(play, wait=60)
    evaluate = tasks['Evaluate the system of each host']
    for host in ('web1', 'web2', 'mac'):
        send(console, 'v2_runner_on_failed', evaluate, host, failed(host, CAUSE, 'eval'))
    # held while more hosts may come: the header only, so far
    assert banners(printed(capsys)) == [
        'TASK [nixdeploy.fleet.deploy : Evaluate the system of each host]']
    console.v2_playbook_on_stats(AggregateStats())
    lines = printed(capsys)
    # the hosts in name order
    assert [line for line in lines if CAUSE in line] == [
        'fatal: [mac, web1, web2] at eval: %s' % CAUSE], lines
    # before the recap
    assert lines.index('fatal: [mac, web1, web2] at eval: %s' % CAUSE) < \
        [i for i, line in enumerate(lines) if line.startswith('PLAY RECAP')][0]


def test_a_host_whose_same_failure_comes_later_points_to_the_line_above(play, tasks, display,
                                                                        capsys):
    console = make_console(play, wait=60)
    evaluate, build = tasks['Evaluate the system of each host'], tasks['Build the system of each host']
    send(console, 'v2_runner_on_failed', evaluate, 'web1', failed('web1', CAUSE, 'eval'))
    # another task's line comes out: the held failure first
    send(console, 'v2_runner_on_ok', build, 'mac', {'changed': True})
    send(console, 'v2_runner_on_failed', evaluate, 'web2', failed('web2', CAUSE, 'eval'))
    console.v2_playbook_on_stats(AggregateStats())
    lines = [line for line in printed(capsys) if line.startswith(('fatal', 'changed'))]
    assert lines == ['fatal: [web1] at eval: %s' % CAUSE,
                     'changed: [mac]',
                     'fatal: [web2] at eval: the same as for web1 above'], lines


def test_a_held_failure_comes_out_after_the_wait_without_another_event(play, tasks, display,
                                                                       capsys):
    console = make_console(play, wait=0.2)
    send(console, 'v2_runner_on_failed', tasks['Evaluate the system of each host'], 'web1',
         failed('web1', CAUSE, 'eval'))
    deadline = time.time() + 10
    out = ''
    while CAUSE not in out and time.time() < deadline:
        time.sleep(0.1)
        out += capsys.readouterr().out
    assert 'fatal: [web1] at eval: %s' % CAUSE in out, out
    console.v2_playbook_on_stats(AggregateStats())


def test_different_causes_are_each_said_with_their_host(play, tasks, display, capsys):
    console = make_console(play, wait=60)
    evaluate = tasks['Evaluate the system of each host']
    send(console, 'v2_runner_on_failed', evaluate, 'typo',
         failed('typo', 'has no attribute tpyo; the nearest names it has: typo', 'eval'))
    send(console, 'v2_runner_on_failed', evaluate, 'goal', failed('goal', "nix_goal: 'bot'", 'eval'))
    console.v2_playbook_on_stats(AggregateStats())
    assert [line for line in printed(capsys) if line.startswith('fatal')] == [
        'fatal: [typo] at eval: has no attribute tpyo; the nearest names it has: typo',
        "fatal: [goal] at eval: nix_goal: 'bot'"]


# ------------------------------------------------------------ task headers
def test_a_task_header_is_printed_once_per_batch(play, console, tasks, capsys):
    evaluate, build = tasks['Evaluate the system of each host'], tasks['Build the system of each host']
    # host_pinned starts each task once per host, and the hosts' results interleave
    for host in ('web1', 'web2'):
        console.v2_playbook_on_task_start(evaluate, False)
    send(console, 'v2_runner_on_ok', evaluate, 'web1', {'changed': False})
    console.v2_playbook_on_task_start(build, False)
    send(console, 'v2_runner_on_ok', build, 'web1', {'changed': True})
    send(console, 'v2_runner_on_ok', evaluate, 'web2', {'changed': False})
    console.v2_playbook_on_task_start(build, False)
    send(console, 'v2_runner_on_ok', build, 'web2', {'changed': True})
    lines = [line for line in printed(capsys) if line.strip()]
    assert banners(lines) == ['TASK [nixdeploy.fleet.deploy : Evaluate the system of each host]',
                              'TASK [nixdeploy.fleet.deploy : Build the system of each host]']
    # a line under another task's header names its own task
    assert [line for line in lines if not line.startswith('TASK')] == [
        'ok: [web1]', 'changed: [web1]', 'ok: [web2 at eval]', 'changed: [web2]'], lines
    # the next serial batch is a new play: its headers again
    console.v2_playbook_on_play_start(play)
    send(console, 'v2_runner_on_ok', evaluate, 'mac', {'changed': False})
    assert banners(printed(capsys)) == [
        'TASK [nixdeploy.fleet.deploy : Evaluate the system of each host]']


def test_skipped_hosts_are_listed_only_with_v(console, tasks, display, capsys):
    end_play = tasks['End the play when the previous batch failed too many hosts']
    send(console, 'v2_runner_on_skipped', end_play, 'web1',
         {'skipped': True, 'skip_reason': 'Conditional result was False'})
    assert printed(capsys) == []
    display.verbosity = 1
    send(console, 'v2_runner_on_skipped', end_play, 'web2',
         {'skipped': True, 'skip_reason': 'Conditional result was False'})
    lines = printed(capsys)
    assert banners(lines) == ['TASK [nixdeploy.fleet.deploy : End the play when the previous '
                              'batch failed too many hosts]']
    assert [line.split(' =>')[0] for line in lines if line.startswith('skipping')] == \
        ['skipping: [web2]']


# ------------------------------------------------------------ the role's rescue
def reraise_message(play, task, phase):
    """What the role's last rescue task says, its real template rendered."""
    templar = Templar(loader=DataLoader(), variables={'ansible_failed_result': {'phase': phase}})
    return templar.template(task.args['msg'])


def test_the_rescue_adds_nothing_to_the_failure_above(play, console, tasks, capsys):
    keep, fail = (tasks["Keep the failed host's outcome as the custom stat nixdeploy"],
                  tasks['Fail the host with the message of its failed phase'])
    msg = reraise_message(play, fail, 'copy')
    assert msg == 'the copy phase failed: see its error above'
    send(console, 'v2_runner_on_failed', tasks['Copy the closure to each host'], 'web1',
         failed('web1', 'nix copy: connection reset', 'copy'))
    send(console, 'v2_runner_on_ok', keep, 'web1', {'changed': False})
    send(console, 'v2_runner_on_failed', fail, 'web1', {'failed': True, 'msg': msg})
    lines = [line for line in printed(capsys) if line.strip()]
    assert lines[1:] == ['fatal: [web1] at copy: nix copy: connection reset'], lines
    assert banners(lines) == ['TASK [nixdeploy.fleet.deploy : Copy the closure to each host]']


def test_the_rescue_is_shown_with_v(play, console, tasks, display, capsys):
    display.verbosity = 1
    fail = tasks['Fail the host with the message of its failed phase']
    msg = reraise_message(play, fail, 'copy')
    send(console, 'v2_runner_on_failed', tasks['Copy the closure to each host'], 'web1',
         failed('web1', 'nix copy: connection reset', 'copy'))
    send(console, 'v2_runner_on_failed', fail, 'web1', {'failed': True, 'msg': msg})
    assert 'see its error above' in capsys.readouterr().out


def test_a_failure_like_the_rescues_of_a_host_not_failed_before_is_shown(console, tasks, capsys):
    """The rescue's message alone proves nothing: a host with no failure said
    before gets its line."""
    fail = tasks['Fail the host with the message of its failed phase']
    send(console, 'v2_runner_on_failed', fail, 'web3',
         {'failed': True, 'msg': 'the eval phase failed: see its error above'})
    assert 'fatal: [web3]' in capsys.readouterr().out


# ------------------------------------------------------------ text from targets
def test_host_names_and_messages_reach_the_terminal_escaped(console, tasks, capsys):
    host = 'evil\x1b[2J'
    send(console, 'v2_runner_on_failed', tasks['Activate and confirm the new system'], host,
         failed(host, 'unit failed\x1b]52;c;cGF5bG9hZA==\x07\u202e', 'activate'))
    out = capsys.readouterr().out
    assert '\x1b' not in out and '\x07' not in out and '\u202e' not in out, repr(out)
    assert 'fatal: [evil\\x1b[2J] at activate: unit failed\\x1b]52;c;cGF5bG9hZA==\\x07\\u202e' \
        in out.splitlines(), out
    # an ok line's host too
    send(console, 'v2_runner_on_ok', tasks['Build the system of each host'], host,
         {'changed': True})
    assert re.search(r'^changed: \[evil\\x1b\[2J\]$', capsys.readouterr().out, re.M)
