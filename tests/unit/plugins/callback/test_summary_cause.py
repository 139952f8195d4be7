"""Issue 61: the summary says why a host failed. The cause of a phase's
message (Nix's last meaningful line) is kept whole, on lines of its own
under the host's line, never cut at a character count; the noise around it
(the code excerpt, `… while evaluating`, `(use '--show-trace' ...)`, `For
full logs ...`) is dropped. The messages below are what Nix 2.8 and the
collection's actions printed for a broken flake and a failing build; a
rollback says "rolled back"; `--tags build` names the store path built; the
closing line counts hosts as the PLAY RECAP does."""

import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _cause  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _closing_lines  # noqa: E402
from tests.unit.plugins.callback.test_summary import (  # noqa: E402
    EVAL, Display, Play, Result, Summary, switched)

ATTR = 'nixosConfigurations.broken.config.system.build.toplevel'
EVAL_MSG = (
    "broken: evaluating path:/tmp/fleet/flake#%s failed: error: attribute 'lab' missing\n"
    "       at /nix/store/p659l6qji1yn8d4wnwdzsbzwjsjw81cp-source/lib.nix:205:38:\n"
    "          204|     # missing attribute, reported by Nix with file and line.\n"
    "          205|     if cfg.broken_eval or false then cfg.lab.this_option_does_not_exist\n"
    "             |                                      ^\n"
    "          206|     # the system holds its config's memory, so it stays reachable from the\n"
    "(use '--show-trace' to show detailed location information)" % ATTR)
# where Nix said the evaluation stopped: the summary names the file
EVAL_AT = ' (at /nix/store/p659l6qji1yn8d4wnwdzsbzwjsjw81cp-source/lib.nix:205:38)'
DRV = '/nix/store/xpkv888cxn4adlmik33zixrvjamlg7ll-nixos-system-bbuild-1.drv'
BUILD_MSG = (
    "bbuild: building %s failed:\n"
    "error: builder for '%s' failed with exit code 1;\n"
    "       last 2 log lines:\n"
    "       > lab: building bbuild failed on purpose (broken_build)\n"
    "       > error: builder for bbuild: this system does not build\n"
    "       For full logs, run 'nix log %s'." % (DRV, DRV, DRV))
TRACE_MSG = ("web3: evaluating x failed: error: attribute 'c' missing\n"
             "       at «string»:1:41:\n"
             "            1| let a = { b = 1; }; in builtins.map (x: x.c) [a]\n"
             "             |                                         ^\n"
             "       Did you mean b?\n\n"
             "       … while evaluating anonymous lambda\n")


def make():
    callback = Summary()
    callback._display = Display()
    callback.play = Play()
    return callback


def host_text(lines, host):
    """The host's line and the indented lines that continue it, joined."""
    out, mine = [], False
    for line in lines:
        if not line.startswith(' '):
            mine = line.split()[0] == host
            if mine:
                out.append(line)
        elif mine:
            out.append(line.strip())
    return ' '.join(out)


def test_cause_keeps_what_failed_and_why_and_drops_the_noise():
    assert _cause.cause(EVAL_MSG, ('broken: ',)) == (
        "evaluating path:/tmp/fleet/flake#%s failed: error: attribute 'lab' missing" % ATTR + EVAL_AT)
    assert _cause.cause(BUILD_MSG, ('bbuild: ',)) == (
        'building %s failed: error: builder for bbuild: this system does not build' % DRV)
    # a hint Nix gives is the last thing it said; the trace is not
    assert _cause.cause(TRACE_MSG, ('web3: ',)) == (
        "evaluating x failed: error: attribute 'c' missing (at «string»:1:41): Did you mean b?")
    assert _cause.cause('', ()) == '' and _cause.cause(None) == ''


def test_the_cause_names_the_place_of_the_error_not_of_the_trace():
    """Nix 2.13 and later print the trace's frames first, each with its own
    place, then the error and its place: the cause names the error's. A
    line that Nix names no place for gets none."""
    msg = ("web2: evaluating x failed: error:\n"
           "       … while evaluating the attribute 'config'\n"
           "         at /nix/store/abc-source/lib.nix:10:5:\n"
           "           10|     config = x;\n"
           "       error: undefined variable 'foo'\n"
           "       at /nix/store/abc-source/hosts/web2.nix:1:17:\n"
           "            1| { x = foo; }\n"
           "             |       ^\n")
    assert _cause.cause(msg, ('web2: ',)) == (
        "evaluating x failed: error: error: undefined variable 'foo' "
        "(at /nix/store/abc-source/hosts/web2.nix:1:17)")
    assert _cause.cause(BUILD_MSG, ('bbuild: ',)).endswith('this system does not build')
    # a hint after the error (a command to copy): the place is not glued to
    # it; the error line is not one of the two kept, its place follows the first
    hinted = msg + "hint: run 'git add hosts/web2.nix'"
    assert _cause.cause(hinted, ('web2: ',)) == (
        "evaluating x failed: error: (at /nix/store/abc-source/hosts/web2.nix:1:17): "
        "hint: run 'git add hosts/web2.nix'")
    # a place on a line of its own, after nothing it could belong to
    assert _cause.cause('at /x.nix:1:2:\nerror: boom') == 'error: boom'
    # a program's stack frame in what a target printed is not a place Nix named
    assert _cause.cause('the switch failed:\n  Error: boom\n  at /srv/app/index.js:10:5') == \
        'the switch failed: Error: boom'


def test_a_long_cause_is_broken_on_spaces_under_the_host():
    callback = make()
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_ok(Result('web1', 'eval', EVAL))
    words = ' '.join('unit-%d.service' % n for n in range(30))
    callback.v2_runner_on_failed(Result('web1', 'activate', {
        'failed': True, 'phase': 'activate', 'msg': 'web1: the activation failed:\n'
                                                    '  error: these failed to start: ' + words}))
    callback.v2_playbook_on_stats(None)
    # (then the closing line and: every host of this batch failed)
    lines = callback._display.text()[1:-2]
    assert lines[0].endswith('FAILED at activate: the activation failed:'), lines
    assert len(lines) > 3 and all(line.startswith(' ' * 44) and len(line) <= 100
                                  for line in lines[1:]), lines
    assert ' '.join(line.strip() for line in lines[1:]) == \
        'error: these failed to start: ' + words, lines


def test_wrap_breaks_on_spaces_and_never_cuts_a_word():
    text = 'FAILED at build: building %s failed: error: builder for bbuild: this system' % DRV
    lines = _cause.wrap(text, 40, '    ')
    assert all(len(line) <= 40 for line in lines if DRV not in line), lines
    # the store path is longer than a line: whole, on a line of its own
    assert '    %s' % DRV in lines, lines
    assert ' '.join(line.strip() for line in lines) == text
    assert _cause.wrap('short', 40) == ['short']


def test_summary_keeps_the_cause_on_lines_under_the_host():
    callback = make()
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_failed(Result('broken', 'eval', dict(
        EVAL, failed=True, phase='eval', msg=EVAL_MSG)))
    callback.v2_runner_on_ok(Result('bbuild', 'eval', EVAL))
    callback.v2_runner_on_failed(Result('bbuild', 'build', {'failed': True, 'phase': 'build',
                                                            'msg': BUILD_MSG}))
    callback.v2_runner_on_ok(Result('good', 'eval', EVAL))
    callback.v2_runner_on_ok(Result('good', 'activate', switched(3)))
    callback.v2_playbook_on_stats(None)
    lines = callback._display.text()[1:-1]
    # one line per host, whole; the cause on indented lines under it, short
    # (a word longer than a line, a store path, excepted), none starting like
    # a host's
    for line in lines:
        if line.startswith(' '):
            assert len(line) <= _closing_lines.SUMMARY_WIDTH or DRV in line or ATTR in line, line
    assert [line.split()[0] for line in lines if not line.startswith(' ')] == \
        ['bbuild', 'broken', 'good'], lines
    assert host_text(lines, 'broken').endswith("failed: error: attribute 'lab' missing" + EVAL_AT), lines
    assert host_text(lines, 'bbuild').endswith(
        'failed: error: builder for bbuild: this system does not build'), lines
    # the cause has a line of its own under the host's
    assert any(line.strip() == 'error: builder for bbuild: this system does not build'
               for line in lines), lines
    for noise in ('show-trace', '204|', 'For full logs', 'last 2 log lines'):
        assert noise not in '\n'.join(lines), (noise, lines)
    assert host_text(lines, 'good').endswith('switched'), lines
    # the closing line: counted as the recap counts (rc 2: two failed)
    assert callback._display.text()[-1] == \
        'nixdeploy: 3 hosts: 2 failed, 1 changed, 0 unchanged'


def test_a_rolled_back_host_shows_its_unit_line_and_counts_as_failed():
    callback = make()
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_ok(Result('web1', 'eval', EVAL))
    callback.v2_runner_on_failed(Result('web1', 'activate', {
        'failed': True, 'phase': 'activate', 'rolled_back': True,
        'rollback_reason': 'the activation exited with code 4 (some units failed)',
        'msg': 'web1: rolled back: the activation exited with code 4 (some units failed):\n'
               '  error: service foo.service failed to start'}))
    callback.v2_runner_on_ok(Result('web2', 'eval', EVAL))
    callback.v2_runner_on_unreachable(Result('web2', 'copy', {
        'unreachable': True, 'msg': 'web2: Failed to connect to the host via ssh: timed out'}))
    callback.v2_playbook_on_stats(None)
    # (every host of this batch failed: the callback says no further batch starts)
    lines = callback._display.text()[1:-2]
    assert host_text(lines, 'web1') == (
        'web1           nixos         gen   - -> -   FAILED: rolled back (the activation exited '
        'with code 4 (some units failed)) error: service foo.service failed to start'), lines
    assert 'unreachable' in host_text(lines, 'web2'), lines
    assert callback._display.text()[-2] == \
        'nixdeploy: 2 hosts: 1 failed (1 rolled back), 1 unreachable, 0 changed, 0 unchanged'


class RollbackTask:
    resolved_action = 'nixdeploy.fleet.nix_activate'
    args = {'state': 'rolled_back'}


def test_a_rollback_says_rolled_back_once():
    callback = make()
    callback.v2_playbook_on_play_start(callback.play)
    result = Result('web1', 'activate', dict(switched(2), new={'generation': 1}))
    result._task = RollbackTask()
    callback.v2_runner_on_ok(result)
    callback.v2_playbook_on_stats(None)
    assert callback._display.text() == [
        'NIXDEPLOY SUMMARY', 'web1           nixos         gen   2 -> 1   rolled back',
        'nixdeploy: 1 host: 0 failed, 1 changed, 0 unchanged']


def test_tags_build_names_the_store_path_built():
    callback = make()
    callback.v2_playbook_on_play_start(callback.play)
    path = '/nix/store/c854zabhyqjkqc9ycb82r92z7va5s3n8-nixos-system-good-1'
    callback.v2_runner_on_ok(Result('good', 'eval', dict(EVAL, out_path=path)))
    callback.v2_runner_on_ok(Result('good', 'build', {'changed': True, 'out_path': path}))
    callback.v2_playbook_on_stats(None)
    assert callback._display.text()[1] == \
        'good           nixos         gen   - -> -   built (not activated): %s' % path
    assert callback._display.text()[-1].endswith('1 not activated')


def test_a_dry_activation_says_what_it_would_do_under_its_host():
    """Check mode and nix_goal=dry-activate: what the activation would
    restart is in the summary without -v (the result's dry_activate lines,
    the target's words shown printable), under the host's own line, bounded."""
    callback = Summary(display=Display())
    callback.play = Play()
    callback.v2_playbook_on_play_start(callback.play)
    callback.v2_runner_on_ok(Result('web1', 'eval', EVAL))
    callback.v2_runner_on_ok(Result('web1', 'activate', dict(
        changed=False, goal='dry-activate', platform='nixos', would_change=True,
        previous={'generation': 3}, new={'generation': 3},
        dry_activate=['would restart the following units: nginx.service',
                      'would start \x1b[31mevil\x1b[0m'])))
    callback.v2_runner_on_ok(Result('web2', 'eval', EVAL))
    callback.v2_runner_on_ok(Result('web2', 'activate', switched(5)))
    callback.v2_playbook_on_stats(None)
    text = callback._display.text()
    at = [i for i, line in enumerate(text) if line.startswith('web1 ')]
    assert at, text
    assert text[at[0] + 1] == '    | would restart the following units: nginx.service', text
    assert text[at[0] + 2].startswith('    | would start ') and '\x1b' not in text[at[0] + 2], text
    assert text[at[0] + 3].startswith('web2 '), text
    # the totals count it as a host a real activation would change, apart
    # from web2's real change and from the hosts nothing would change
    assert text[-1] == 'nixdeploy: 2 hosts: 0 failed, 1 changed, 1 would change, 0 unchanged', text
    many = _closing_lines.dry_lines(['line %d' % n for n in range(50)])
    assert len(many) == _closing_lines.DRY_SHOWN + 1 and '30 more lines' in many[-1], many


def test_a_build_failure_of_current_nix_keeps_the_builders_line():
    """Nix 2.19+ ends a failed build with "For full logs, run:" and the
    `nix log <drv>` command on a line of its own: the cause is the
    builder's last line, not that command."""
    msg = ("build: building /nix/store/7xx6-nixos-system-build-2.drv failed:\n"
           "error: Cannot build '/nix/store/7xx6-nixos-system-build-2.drv'.\n"
           "       Reason: builder failed with exit code 1.\n"
           "       Last 2 log lines:\n"
           "       > building\n"
           "       > error: builder for build: this system does not build\n"
           "       For full logs, run:\n"
           "         nix log /nix/store/7xx6-nixos-system-build-2.drv")
    first, last = _cause.parts(msg, ('build: ',))
    assert first.startswith('building /nix/store/7xx6'), first
    assert last == 'error: builder for build: this system does not build', last


def test_a_cause_several_hosts_share_is_said_once():
    """A batch-wide cause (a wrong nix_bin) is said under the first host it
    hit; each other host it hit points to that host instead of saying it
    again. A host with a cause of its own keeps it."""
    callback = make()
    callback.v2_playbook_on_play_start(callback.play)
    shared = ('nix_bin: /opt/nonexistent/nix is not a file the controller can run: '
              'set nix_bin to the nix on this machine')
    for host in ('web3', 'web1', 'web2'):
        callback.v2_runner_on_failed(Result(host, 'eval', dict(
            EVAL, failed=True, phase='eval', msg='%s: %s' % (host, shared))))
    callback.v2_runner_on_failed(Result('broken', 'eval', dict(
        EVAL, failed=True, phase='eval', msg=EVAL_MSG)))
    callback.v2_playbook_on_stats(None)
    lines = callback._display.text()[1:-1]
    text = '\n'.join(lines)
    assert text.count('/opt/nonexistent/nix') == 1, lines
    assert '/opt/nonexistent/nix' in host_text(lines, 'web1'), lines
    for host in ('web2', 'web3'):
        assert host_text(lines, host).endswith('the same as web1'), lines
    assert host_text(lines, 'broken').endswith("failed: error: attribute 'lab' missing" + EVAL_AT), lines


@pytest.mark.parametrize('check_mode', [False, True])
def test_the_totals_count_what_a_dry_activation_would_change(check_mode):
    """A dry activation changes nothing (changed is false) and says whether
    a real one would (would_change). The totals say so; in check mode it is
    one count with the hosts that would change."""
    callback = Summary(display=Display())
    callback.play = Play()
    callback.play.check_mode = check_mode
    callback.v2_playbook_on_play_start(callback.play)
    for host, would in (('web1', True), ('web2', False), ('web3', True)):
        callback.v2_runner_on_ok(Result(host, 'eval', EVAL))
        callback.v2_runner_on_ok(Result(host, 'activate', dict(
            changed=False, goal='dry-activate', platform='nixos', would_change=would,
            previous={'generation': 3}, new={'generation': 3})))
    callback.v2_playbook_on_stats(None)
    assert callback._display.text()[-1] == (
        'nixdeploy: 3 hosts: 0 failed, 2 would change, 1 unchanged' if check_mode else
        'nixdeploy: 3 hosts: 0 failed, 0 changed, 2 would change, 1 unchanged')
