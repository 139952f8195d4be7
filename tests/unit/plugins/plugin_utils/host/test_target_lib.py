"""lib.sh, the start of every target program: its helpers must give what the
processes they replace give (emit and tr, ids and id, the clock and date),
under each sh a target may have, without starting those processes."""

import os
import shlex
import shutil
import subprocess
import time

import pytest

from tests.collection import REPO

LIB = os.path.join(REPO, 'plugins', 'plugin_utils', 'host', 'target', 'lib.sh')
SHELLS = [sh for sh in ('dash', 'bash', 'busybox') if shutil.which(sh)]


def run(shell, script, env=None):
    argv = [shutil.which(shell)] + (['sh'] if shell == 'busybox' else []) + \
        ['-c', '. "$0"\n' + script, LIB]
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout


def fake_id(tmp_path, line):
    """A PATH whose id prints ``line`` (the shapes of id on other systems)."""
    folder = tmp_path / 'bin'
    folder.mkdir(exist_ok=True)
    path = folder / 'id'
    path.write_text('#!/bin/sh\necho %s\n' % shlex.quote(line))
    path.chmod(0o755)
    return dict(os.environ, PATH='%s:%s' % (folder, os.environ['PATH']))


@pytest.mark.parametrize('shell', SHELLS)
def test_emit_folds_newlines_and_keeps_plain_values(shell):
    # RESULT_MARK: the program's own marker (plugin_utils/host/_script.py renders it)
    out = run(shell, 'RESULT_MARK=m1\nemit a "one\ntwo"; emit b "plain  text"; emit c; emit d x y; '
              'log_section')
    assert out.split('\n') == ['@@m1 a=one two', '@@m1 b=plain  text', '@@m1 c=', '@@m1 d=x y',
                               '@@m1-log', '']


@pytest.mark.parametrize('shell', SHELLS)
def test_ids_give_what_id_gives(shell):
    out = run(shell, 'ids; echo "$MY_UID|$ME|$MY_GROUPS"')
    groups = subprocess.run(['id', '-Gn'], capture_output=True, text=True, check=True).stdout.split()
    name = subprocess.run(['id', '-un'], capture_output=True, text=True, check=True).stdout.strip()
    assert out.strip() == '%d|%s|%s' % (os.getuid(), name, ','.join(groups))


@pytest.mark.parametrize('line,expected', [
    # GNU coreutils, macOS: supplementary groups listed
    ('uid=501(bob) gid=20(staff) groups=20(staff),12(everyone),61(localaccounts)',
     '501|bob|staff,everyone,localaccounts'),
    # busybox: no groups= when the primary group is the only one
    ('uid=0(root) gid=0(root)', '0|root|root'),
    # names with spaces (a directory service)
    ('uid=1000(al ice) gid=100(domain users) groups=100(domain users),27(sudo)',
     '1000|al ice|domain users,sudo'),
    # ids without names: the numbers stand for them
    ('uid=1000 gid=1000 groups=1000,27', '1000||1000,27'),
    ('uid=1000 gid=1000', '1000||1000'),
])
def test_ids_read_every_shape_of_id(tmp_path, line, expected):
    # ME from "id -un" when the line has no name: this fake prints the line again
    out = run('dash' if 'dash' in SHELLS else SHELLS[0],
              'ids; case $ME in uid=*) ME= ;; esac; echo "$MY_UID|$ME|$MY_GROUPS"',
              env=fake_id(tmp_path, line))
    assert out.strip() == expected


@pytest.mark.parametrize('shell', SHELLS)
def test_the_clock_keeps_dates_time(shell):
    before = time.time()
    out = run(shell, 'clock_init; a=$HMS; b=$EPOCH; sleep 1; stamp; '
                     'echo "$a $b $HMS $EPOCH $(date +%H:%M:%S)"')
    after = time.time()
    first_hms, first, later_hms, later, date_hms = out.split()
    # whole seconds from date and from /proc/uptime: within a second of the
    # wall clock, and one more for a step of it (a VM's time sync under load
    # stepped it back once, make test 2026-11-24)
    assert before - 2 <= int(first) <= after + 1
    assert 1 <= int(later) - int(first) <= 2 + (after - before)
    # the log's local time is date's, to the second (the clock ticks apart)
    seconds = [sum(int(p) * f for p, f in zip(t.split(':'), (3600, 60, 1)))
               for t in (later_hms, date_hms)]
    assert abs(seconds[0] - seconds[1]) % 86400 in (0, 1, 86399), out
    assert len(first_hms) == 8 and first_hms[2] == ':' == first_hms[5]


@pytest.mark.parametrize('shell', SHELLS)
def test_swap_link_replaces_a_link_to_a_folder_not_what_is_in_it(shell, tmp_path):
    old, new = tmp_path / 'old', tmp_path / 'new'
    old.mkdir()
    link = tmp_path / 'root'
    os.symlink(str(old), str(link))
    run(shell, 'swap_link %s %s || exit 1' % (shlex.quote(str(new)), shlex.quote(str(link))))
    # a link to a folder that does not exist yet (a path the copy has not made valid)
    assert os.readlink(str(link)) == str(new) and os.listdir(str(old)) == []
    run(shell, 'swap_link /dev/null %s || exit 1' % shlex.quote(str(link)))
    assert os.readlink(str(link)) == '/dev/null'
    assert sorted(os.listdir(str(tmp_path))) == ['old', 'root']


@pytest.mark.parametrize('shell', SHELLS)
def test_a_wake_ends_a_doze_at_once_and_its_timer_serves_the_next(shell, tmp_path):
    # The watchdog and the sessions that follow a run doze; a confirmation
    # or the runner's next state wakes them. NIXDEPLOY_DOZE=60: a doze the wake did
    # not end would count 1,200 (and take a minute), a woken one counts 1.
    # The timer is started here as doze starts it, so that a wake that comes
    # before the doze (seen at once, no wait) finds it too.
    pidfile = tmp_path / 'waiter'
    out = run(shell, 'NIXDEPLOY_DOZE=60; doze_start; echo $$ >%s\n'
                     'sleep 60 </dev/null >/dev/null 2>&1 & TIMER=$!; timer=$TIMER\n'
                     # a waker that wakes every 0.1 s until this shell is gone (its
                     # output elsewhere: this test's pipe waits for all who hold it)
                     '( sleep 0.3; while wake %s; kill -0 $$ 2>/dev/null; do sleep 0.1; done ) '
                     '>/dev/null 2>&1 &\n'
                     'doze; first=$NAPPED\n'
                     'doze; echo "$first $NAPPED $timer $TIMER"; doze_end; kill $timer'
              % (shlex.quote(str(pidfile)), shlex.quote(str(pidfile))))
    first, second, timer, later = out.split()
    assert (first, second) == ('1', '2'), out
    # the sleep that timed the first doze times the second: no new process a look
    assert timer == later and timer.isdigit()


@pytest.mark.parametrize('shell', SHELLS)
def test_a_doze_without_a_wake_lasts_its_doze(shell):
    out = run(shell, 'doze_start; doze; echo "$NAPPED $TIMER"; doze; echo "$NAPPED"; doze_end')
    assert out.split() == ['20', '40'], out


@pytest.mark.parametrize('value', ['x', '0', '1; echo no', '-5', '1000', ''])
def test_a_doze_length_that_is_not_whole_seconds_is_a_second(value):
    # the environment may hold anything: a doze stays a one-second sleep
    env = dict(os.environ, NIXDEPLOY_DOZE=value)
    out = run('dash', 'doze_start; doze; echo "$DOZE $NAPPED"; doze_end', env=env)
    assert out.split() == ['1', '20'], out


@pytest.mark.parametrize('shell', SHELLS)
def test_a_wake_harms_no_process_that_is_not_a_waiter(shell, tmp_path):
    # a waiter's pid file may name a process that took its pid after it ended
    other = subprocess.Popen(['sleep', '60'])
    try:
        pidfile = tmp_path / 'waiter'
        pidfile.write_text('%d\n' % other.pid)
        run(shell, 'wake %s' % shlex.quote(str(pidfile)))
        with pytest.raises(subprocess.TimeoutExpired):
            other.wait(timeout=0.5)
    finally:
        other.kill()
        other.wait()


def test_wake_signals_no_process_group_and_nothing_but_one_pid(tmp_path):
    # kill 0 would signal the waker's own group, kill -1 every process: a
    # waiter in the waker's group, trapping the signal, must get nothing.
    # All of it in a session of its own: the control's group signal must not
    # reach other tests' shells (make test runs two stacks at once).
    pidfile, marker, ready = tmp_path / 'waiter', tmp_path / 'woken', tmp_path / 'ready'
    script = (
        '. "$0"\n'
        'sh -c \'trap "echo woken >>"$1 URG; : >"$2"; i=0\n'
        '  while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\' waiter "$2" "$3" &\n'
        'w=$!\n'
        'while [ ! -e "$3" ]; do sleep 0.05; done\n'
        # this shell leads the session's group: its pid is the group's id
        'for c in 0 -1 "1 2" \'$$\' "" 12a "-$$"; do printf "%%s\\n" "$c" >"$1"; wake "$1"; done\n'
        'sleep 0.3; [ -e "$2" ] && echo "a wake reached the waiter"\n'
        'kill -s URG 0\n'  # the control: a group signal does reach it
        'wait "$w"\n')
    proc = subprocess.run(['dash', '-c', script, LIB, str(pidfile), str(marker), str(ready)],
                          capture_output=True, text=True, check=True, timeout=60,
                          start_new_session=True)
    assert proc.stdout == '' and marker.read_text() == 'woken\n', proc.stdout
