"""The result channel of the target programs (plugin_utils/host/_script.py,
target/lib.sh): nothing a program carries (a check's output, an activation's
log, a dry activation's or systemctl's words, a command's message) can be
read as one of its results. Each program here is the real one, run under sh
with what it carries printing forged result lines: the fixed marker of
before, the program's own marker after every line end Python's splitlines
knows, and a log line followed by values."""

import os
import subprocess
import sys

import pytest

from tests.collection import collections_path
from tests.unit.local_host import local_host

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _health_checks, _reboot_rules)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script  # noqa: E402

# what splitlines() splits on and the target's one_line does not fold
LINE_ENDS = ['\r', '\r\n', '\x0b', '\x0c', '\x1c', '\x1d', '\x1e', '\x85', '\u2028', '\u2029']


def forged(mark, values):
    """Text forging ``values`` (a dict) with the fixed marker of before and
    with ``mark`` after each line end, then a log line and the values again."""
    lines = []
    for key, value in values.items():
        lines.append('@@nixdeploy %s=%s' % (key, value))
        lines.extend('x%s@@%s %s=%s' % (end, mark, key, value) for end in LINE_ENDS)
    lines.append('@@nixdeploy-log')
    lines.append('@@%s-log' % mark)
    lines.extend('@@%s %s=%s' % (mark, key, value) for key, value in values.items())
    return '\n'.join(lines) + '\n'


def sh(program, env=None, stdin=None):
    proc = subprocess.run(['/bin/sh', '-c', program], input=(stdin or '').encode('utf-8'),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=60, check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'surrogateescape')


# ------------------------------------------------------------------ parse
def test_each_program_gets_its_own_unpredictable_marker():
    one, two = _script.render([], {}), _script.render([], {})
    assert one.mark != two.mark and len(one.mark) == 32
    assert "RESULT_MARK=%s\n" % one.mark in one
    # a plain variable of the program: no child inherits it
    assert 'export RESULT_MARK' not in one and 'RESULT_MARK' not in os.environ
    with pytest.raises(ValueError):
        _script.render([], {'RESULT_MARK': 'mine'})


def test_parse_needs_the_programs_marker():
    with pytest.raises(ValueError):
        _script.parse('@@nixdeploy rc=0\n')
    with pytest.raises(ValueError):
        _script.parse('@@nixdeploy rc=0\n', 'nixdeploy')


@pytest.mark.parametrize('end', [end for end in LINE_ENDS if '\n' not in end])
def test_only_newline_ends_a_line(end):
    program = _script.render([], {})
    mark = program.mark
    out = '@@%s rc=1\nnoise%s@@%s rc=0\n@@%s ok=1%s@@%s rc=0\n' % (mark, end, mark, mark, end, mark)
    values, log = program.parse_raw(out)
    assert values['rc'] == '1'
    assert values['ok'] == '1' + end + '@@%s rc=0' % mark
    assert log == ''


def test_nothing_after_the_log_line_is_a_value():
    program = _script.render([], {})
    out = '@@%s rc=1\n@@%s-log\n@@%s rc=0\n@@%s-log\n@@nixdeploy rc=0\ntext\n' % ((program.mark,) * 4)
    values, log = program.parse_raw(out)
    assert values == {'rc': '1'}
    assert log.split('\n') == ['@@%s rc=0' % program.mark, '@@%s-log' % program.mark,
                               '@@nixdeploy rc=0', 'text']


def test_a_pty_line_end_is_read_as_one():
    # become on a tty: the session's \n arrive as \r\n
    program = _script.render([], {})
    values, log = program.parse_raw('@@%s rc=1\r\n@@%s-log\r\nout\r\n' % (program.mark, program.mark))
    assert values == {'rc': '1'} and log == 'out'


def test_an_output_carries_its_programs_marker():
    program = _script.render([], {})
    output = program.output('@@%s a=1\n@@nixdeploy a=2\n' % program.mark)
    assert _script.parse(output) == ({'a': '1'}, '')
    assert _reboot_rules.reboot_requested(1, program.output('@@nixdeploy reboot_rc=0\n'), lost=False)[0] is False


# ------------------------------------------------------------------ health-check.sh
@pytest.mark.parametrize('mark_of', ['old', 'own'])
def test_a_failing_check_that_prints_results_still_fails(mark_of):
    check_text = forged('MARK', {'rc': '0', 'timed_out': '0'})
    program = _health_checks.command_script("printf '%s' \"$FORGED\"; exit 1", 5)
    if mark_of == 'own':
        # the worst case: the check knows this very program's marker
        check_text = check_text.replace('MARK', program.mark)
    env = dict(os.environ, FORGED=check_text)
    rc, out = sh(program, env=env)
    check_rc, timed_out, output, _dropped = _health_checks.parse_try(program, rc, out, '')
    assert check_rc == 1 and timed_out is False
    assert '@@nixdeploy rc=0' in output


def test_a_failing_check_fails_a_health_try_through_the_runner():
    check = {'name': 'forger', 'timeout': 5, 'retries': 0, 'interval': 0,
             'command': "printf '@@nixdeploy rc=0\\n\\r@@nixdeploy rc=0\\n'; exit 1"}

    ok, detail, _output = _health_checks._target_try(check, check['command'], local_host(),
                                                     _health_checks.Watch())
    assert ok is False and 'exit code 1' in detail, detail


# ------------------------------------------------------------------ activate-poll.sh
def poll_program(tmp_path, status, log):
    """activate-poll.sh over a run folder holding ``status`` and ``log``."""
    run = tmp_path / 'runs' / 'r1'
    run.mkdir(parents=True)
    (run / 'status').write_text(status)
    (run / 'log').write_text(log)
    values = {'D': str(tmp_path), 'RUN': 'r1', 'WAIT': 0, 'STOP_AWAITING': False,
              'TERMINAL': 'done failed rolled_back', 'LOG_LINES': 500}
    return _script.render(['activate-poll.sh'], values)


def test_an_activation_log_with_results_does_not_change_the_status(tmp_path):
    program = poll_program(tmp_path, 'state=failed\nreason=the activation failed\nrc=1\n', '')
    log = forged(program.mark, {'state': 'done', 'rc': '0', 'rolled_back': '0', 'alive': '1'})
    (tmp_path / 'runs' / 'r1' / 'log').write_text(log)
    rc, out = sh(program)
    values, text = program.parse_raw(out)
    assert rc == 0
    assert values['state'] == 'failed' and values['rc'] == '1' and values['alive'] == '0'
    assert 'rolled_back' not in values
    assert '@@nixdeploy state=done' in text


def test_a_status_value_cannot_add_a_line(tmp_path):
    # the runner folds every value (activate-runner.sh: field); a value
    # holding a \r or a line separator is still that one value
    program = poll_program(tmp_path, '', '')
    reason = 'x\r@@%s state=done\u2028state=done' % program.mark
    (tmp_path / 'runs' / 'r1' / 'status').write_text('state=failed\nreason=%s\n' % reason)
    values, _log = program.parse_raw(sh(program)[1])
    assert values['state'] == 'failed' and values['reason'] == reason


def test_the_runner_writes_every_status_value_on_one_line(tmp_path):
    # dash's echo would turn the "\n" of a reason into a line of its own
    runner = _script.source('activate-runner.sh')
    functions = runner[runner.index('field() {'):runner.index('release() {')]
    program = (_script.render([], {'RUN': 'r1', 'MODE': 'activate', 'RD': str(tmp_path),
                                   'REASON': 'failed: \\nstate=done\nrolled_back=1'})
               + functions + 'STATE=failed\nwrite_status\n')
    rc, _out = sh(program)
    assert rc == 0
    lines = (tmp_path / 'status').read_text().split('\n')
    assert lines[:2] == ['state=failed', 'reason=failed: \\nstate=done rolled_back=1']
    assert [line for line in lines if line.startswith(('state=', 'rolled_back='))] == [
        'state=failed', 'rolled_back=']


# ------------------------------------------------------------------ activate-inspect.sh
def test_a_dry_activation_that_prints_results_is_only_a_log(tmp_path):
    system = tmp_path / 'system'
    system.mkdir()
    values = {'D': str(tmp_path), 'PROFILE': str(tmp_path / 'profile'), 'NEW': str(system),
              'DRY': True, 'DRY_PROGRAM': "printf '%s' \"$FORGED\"; exit 2", 'INVOKER': 'me',
              'GENERATION': '', 'BACKUP_ENV': '', 'BACKUP_EXT': '', 'CURRENT_LINK': '',
              'PNAME': 'profile', 'PDIR': str(tmp_path)}
    program = _script.render(['activate-lib.sh', 'activate-inspect.sh'], values)
    env = dict(os.environ, FORGED=forged(program.mark, {'dry_rc': '0', 'present': '0'}))
    rc, out = sh(program, env=env)
    found, log = program.parse_raw(out)
    assert rc == 0, out
    assert found['dry_rc'] == '2' and found['present'] == '1'
    assert '@@nixdeploy dry_rc=0' in log


# ------------------------------------------------------------------ reboot-request.sh
def test_a_refused_reboot_whose_words_print_results_is_refused(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    systemctl = bin_dir / 'systemctl'
    systemctl.write_text("#!/bin/sh\nprintf '%s' \"$FORGED\"\nexit 1\n")
    systemctl.chmod(0o755)
    program = _reboot_rules.request_script()
    env = dict(os.environ, PATH='%s:%s' % (bin_dir, os.environ['PATH']),
               FORGED=forged(program.mark, {'reboot_rc': '0'}))
    rc, out = sh(program, env=env)
    requested, problem = _reboot_rules.reboot_requested(rc, out, lost=False, mark=program.mark)
    assert requested is False
    assert problem.startswith('the reboot was refused (exit code 1)')
