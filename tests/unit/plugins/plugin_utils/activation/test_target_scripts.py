"""nix_activate's target programs (plugin_utils/activation/target/activate-*.sh), run
under sh on this machine with a fake nix-env and fake systems whose
bin/switch-to-configuration records its calls: the lock, the watchdog's
rename race, the rollback order, a missing previous generation. The lab
tests run the same programs against the real Nix."""

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _programs)

# Profile generations as Nix keeps them: PROFILE -> NAME-N-link -> system.
FAKE_NIX_ENV = r'''#!/bin/sh
echo "nix-env $*" >>"__CALLS__"
[ "$1" = --profile ] || exit 2
p=$2 op=$3 arg=$4
# a test makes this operation fail (as a store it cannot lock, or a nix-env stopped)
[ -e "__CALLS__.fail$op" ] && { echo "error: $op failed (the test's)" >&2; exit 1; }
name=${p##*/} dir=${p%/*}
case $op in
  --set)
    n=0
    for l in "$dir/$name"-*-link; do
      [ -L "$l" ] || continue
      k=${l##*/}; k=${k#"$name"-}; k=${k%-link}
      [ "$k" -gt "$n" ] && n=$k
    done
    n=$((n + 1))
    ln -s "$arg" "$dir/$name-$n-link" && ln -sfn "$name-$n-link" "$p" ;;
  --switch-generation)
    [ -L "$dir/$name-$arg-link" ] || { echo "error: generation $arg does not exist" >&2; exit 1; }
    ln -sfn "$name-$arg-link" "$p" ;;
  --delete-generations)
    [ "$(readlink "$p")" = "$name-$arg-link" ] && { echo "error: $arg is current" >&2; exit 1; }
    rm -f "$dir/$name-$arg-link" ;;
  *) exit 2 ;;
esac
'''
# Not root here, whoever runs the tests: the state folder goes under
# XDG_STATE_HOME (root's would be the lab's /nix/var/nixdeploy).
FAKE_ID = '''#!/bin/sh
case $1 in -u) echo 1000 ;; -un) echo tester ;; '') echo 'uid=1000(tester) gid=1000(tester) groups=1000(tester)' ;; *) exit 1 ;; esac
'''
# A system: records "activate NAME GOAL", exits with the number in its file rc.
# A slow one (a file slow) writes its pid and sleeps: time for a shutdown.
FAKE_SWITCH = '''#!/bin/sh
echo "activate __NAME__ $1" >>"__CALLS__"
if [ -e "__SYSTEM__/slow" ]; then echo $$ >"__SYSTEM__/pid"; exec sleep 60; fi
exit "$(cat "__SYSTEM__/rc" 2>/dev/null || echo 0)"
'''


def _executable(path, text):
    path.write_text(text)
    path.chmod(0o755)


class Host:
    """A fake target in a temp dir."""

    def __init__(self, root):
        self.root = root
        self.calls = root / 'calls'
        self.calls.write_text('')
        bin_dir = root / 'bin'
        bin_dir.mkdir()
        _executable(bin_dir / 'nix-env', FAKE_NIX_ENV.replace('__CALLS__', str(self.calls)))
        _executable(bin_dir / 'id', FAKE_ID)
        (root / 'home').mkdir()
        (root / 'profiles').mkdir()
        self.profile = str(root / 'profiles' / 'system')
        self.env = {'HOME': str(root / 'home'), 'USER': 'tester',
                    'XDG_STATE_HOME': str(root / 'state'),
                    'PATH': '%s:/usr/bin:/bin:/usr/sbin:/sbin' % bin_dir}
        self.common = dict(profile=self.profile, remote_nix_dir=str(bin_dir))

    def system(self, name, rc=0, slow=False):
        path = self.root / 'store' / name
        (path / 'bin').mkdir(parents=True)
        _executable(path / 'bin' / 'switch-to-configuration',
                    FAKE_SWITCH.replace('__NAME__', name).replace('__CALLS__', str(self.calls))
                    .replace('__SYSTEM__', str(path)))
        (path / 'rc').write_text('%d\n' % rc)
        if slow:
            (path / 'slow').write_text('')
        return str(path)

    def sh(self, program):
        proc = subprocess.run(['/bin/sh', '-c', program], env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=60,
                              check=False)
        values, log = program.parse_raw(proc.stdout)
        values['exit'] = proc.returncode
        values['output'] = proc.stdout
        return values, log

    def activate(self, path, run, **params):
        params.setdefault('magic_rollback', False)
        params.setdefault('wait', 20)
        params.update(self.common)
        return self._past_locks(run, params, self.sh(
            _programs.launch_script('nixos', run, 'activate', path=path, **params)))

    def rollback(self, run, **params):
        params = dict(dict(wait=20, magic_rollback=False), **params)
        return self._past_locks(run, params, self.sh(
            _programs.launch_script('nixos', run, 'rollback', **dict(params, **self.common))))

    def look(self, run, wait, stop_awaiting=True):
        """A look at ``run`` that waits up to ``wait`` s for it to end (or
        await its confirmation), followed past its lock waits as the
        controller follows it."""
        return self._past_locks(run, {'wait': wait, 'magic_rollback': stop_awaiting}, self.sh(
            _programs.poll_script('nixos', run, wait=wait, stop_awaiting=stop_awaiting,
                                  **self.common)))

    def _past_locks(self, run, params, launched):
        """The launch's values and log, followed as the controller follows
        them: a launch (or look) returns as soon as its run waits for a lock
        for a new reason; the run is looked at again until its launch's
        ``wait`` is over (the values of the launch, the last look's over
        them)."""
        values, log = launched
        deadline = time.monotonic() + params['wait']
        while values.get('state') == 'waiting_lock' and time.monotonic() < deadline:
            seen, log = self.sh(_programs.poll_script(
                'nixos', run, wait=max(1, int(deadline - time.monotonic())),
                stop_awaiting=params['magic_rollback'], seen_waiting=values.get('waiting_for'),
                **self.common))
            values = dict(values, **seen)
        return values, log

    def confirm(self, wait=20, claim=True):
        return self.sh(_programs.confirm_script('nixos', claim=claim, wait=wait, **self.common))

    def state_dir(self):
        return self.sh(_programs.inspect_script('nixos', **self.common))[0]['dir']

    def generations(self):
        values = self.sh(_programs.inspect_script('nixos', **self.common))[0]
        return values['prev_gen'], values['gens'].split()

    def runner_gone(self, run, seconds=10.0):
        """Whether run's runner exits within ``seconds``: it writes its last
        status, then releases its lock and ends, so a look right after the
        status may still find it alive (a loaded machine)."""
        deadline = time.monotonic() + seconds
        while True:
            values = self.sh(_programs.poll_script('nixos', run, **self.common))[0]
            if values.get('alive') == '0':
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def took(self):
        """The calls recorded since the last look."""
        calls = self.calls.read_text().splitlines()
        self.calls.write_text('')
        return calls


def nixos_without_root(monkeypatch):
    """NixOS as the table has it, but no root needed and no /run/current-system
    of this machine: what is active is what the runner recorded."""
    spec = _platforms.PLATFORMS['nixos']
    monkeypatch.setitem(_platforms.PLATFORMS, 'nixos', dict(
        spec, needs_root=False, activation=dict(spec['activation'], current_link=None)))


@pytest.fixture
def host(tmp_path, monkeypatch):
    nixos_without_root(monkeypatch)
    return Host(tmp_path)


def without_boot_step(monkeypatch):
    """The fake NixOS as home-manager and nix-on-droid are: no boot loader
    step of its own, so a magic rollback's system runs and boots at once."""
    spec = _platforms.PLATFORMS['nixos']
    monkeypatch.setitem(_platforms.PLATFORMS, 'nixos', dict(
        spec, activation=dict(spec['activation'], boot_when_confirmed=False)))


def test_a_switch_sets_the_profile_then_activates_and_a_second_is_unchanged(host):
    new = host.system('a')
    values, log = host.activate(new, 'r1')
    assert values['state'] == 'done', values['output']
    assert values['new_gen'] == '1' and values['activated'] == '1'
    assert host.runner_gone('r1')
    assert host.took() == ['nix-env --profile %s --set %s' % (host.profile, new),
                           'activate a switch']
    assert 'activation exited with 0' in log
    values, _log = host.activate(new, 'r2')
    assert values['state'] == 'unchanged' and host.took() == []


def _wait_for(path, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) or not open(path).read().strip():
        assert time.monotonic() < deadline, 'no %s after %ss' % (path, seconds)
        time.sleep(0.05)
    return int(open(path).read())


@pytest.mark.parametrize('link,shutdown,took_effect,magic', [
    (False, True, False, False), (False, False, False, False), (True, True, False, False),
    (True, True, True, False), (True, True, True, True)],
    ids=['no-link-shutdown', 'no-link-unit-stopped', 'link-shutdown-before-it-took-effect',
         'link-shutdown-after-it-took-effect',
         'link-shutdown-after-it-took-effect-with-magic-rollback'])
def test_a_run_stopped_during_its_activation(host, monkeypatch, tmp_path, link, shutdown,
                                             took_effect, magic):
    """Seed 254858 round 1 (docs/faults.md): a home-manager host rebooted
    while its activation ran. Where no link names what runs (home-manager,
    nix-on-droid), what runs is the runner's record, which a stopped run
    never writes, and no boot activates the profile: the profile goes back,
    whether the shutdown stopped the activation too or it went on (then the
    run stops it). Where a link names it (NixOS, nix-darwin), the link says
    how far the activation got: one that made the new system current stays
    (seed 54 round 4), one stopped before that is undone as not started
    (seed 2611 round 27: a nix-darwin host, whose boot activates the
    profile, kept a generation that never ran). With magic rollback the new
    NixOS system is not the boot default before its confirmation: the
    shutdown boots the old one, so the profile goes back even where the link
    names the new system (seed 515628 round 1)."""
    if link:
        current = tmp_path / 'current'
        spec = _platforms.PLATFORMS['nixos']
        monkeypatch.setitem(_platforms.PLATFORMS, 'nixos', dict(
            spec, activation=dict(spec['activation'], current_link=str(current))))
    old, new = host.system('old'), host.system('new', slow=True)
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    if link:
        current.symlink_to(old)
    rollback = dict(magic_rollback=True, confirm_timeout=300) if magic else {}
    values, _log = host.activate(new, 'r2', wait=0, **rollback)
    assert values['run'] == 'r2', values['output']
    activation = _wait_for(os.path.join(new, 'pid'))
    runner = _wait_for(os.path.join(host.state_dir(), 'runs', 'r2', 'pid'))
    if took_effect:
        # as switch-to-configuration's activation script does, before its units
        os.unlink(str(current))
        current.symlink_to(new)
    os.kill(runner, 15)
    if shutdown:
        os.kill(activation, 15)
    assert host.runner_gone('r2', seconds=30)
    values = host.sh(_programs.poll_script('nixos', 'r2', **host.common))[0]
    assert values['state'] == 'failed', values['output']
    assert 'stopped unexpectedly in state running' in values['reason']
    if took_effect and not magic:
        assert 'is back' not in values['reason']
        assert host.generations() == ('2', ['1', '2'])
    else:
        assert values['reason'].endswith('is back at generation 1'), values['reason']
        assert host.generations() == ('1', ['1'])
    # the activation ended with the run: stopped by the shutdown, or by the run
    with pytest.raises(ProcessLookupError):
        os.kill(activation, 0)


def test_a_run_stopped_awaiting_its_confirmation_records_what_runs(host, monkeypatch):
    """Seed 7311 round 22: a home-manager host rebooted while its run
    awaited its confirmation. The new system's activation had run and
    nothing rolled it back, but where no link names what runs the runner's
    record (written when a run ends well) still named the old one: the next
    deploy of the new system activated it again and reported a change (and
    a deploy of the old one would have found it unchanged). The stopped run
    records what runs: the new system, unconfirmed, as its activation left
    it (a platform without a boot step of its own)."""
    without_boot_step(monkeypatch)
    old, new = host.system('old'), host.system('new')
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    values = host.activate(new, 'r2', magic_rollback=True, confirm_timeout=300)[0]
    assert values['state'] == _programs.AWAITING, values['output']
    os.kill(_wait_for(os.path.join(host.state_dir(), 'runs', 'r2', 'pid')), 15)
    assert host.runner_gone('r2', seconds=30)
    values = host.sh(_programs.poll_script('nixos', 'r2', **host.common))[0]
    assert values['state'] == 'failed', values['output']
    assert 'stopped unexpectedly in state awaiting_confirmation' in values['reason']
    assert host.generations() == ('2', ['1', '2'])
    host.took()
    values = host.activate(new, 'r3')[0]
    assert values['state'] == 'unchanged', values['output']
    assert host.took() == []
    values = host.activate(old, 'r4')[0]
    assert values['state'] == 'done', values['output']
    assert host.took() == ['nix-env --profile %s --set %s' % (host.profile, old),
                           'activate old switch']


def _gone(pid, seconds=20.0):
    """Whether ``pid`` ends within ``seconds`` (collected, or ended and
    waiting to be: a zombie, as the target programs tell it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not os.path.isdir('/proc/self'):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        elif _state(pid) in (None, 'Z', 'X'):
            return True
        time.sleep(0.05)
    return False


def _killed_while_it_activates(host):
    """Run r1 done (generation 1), then run r2's runner and its slow
    activation SIGKILLed while it activates (after it made generation 2):
    nothing of its exit ran. Returns (old system, new system)."""
    old, new = host.system('old'), host.system('new', slow=True)
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    assert host.activate(new, 'r2', wait=0)[0]['run'] == 'r2'
    activation = _wait_for(os.path.join(new, 'pid'))
    runner = _wait_for(os.path.join(host.state_dir(), 'runs', 'r2', 'pid'))
    os.kill(runner, 9)
    os.kill(activation, 9)
    assert _gone(runner) and _gone(activation)
    return old, new


def test_a_run_killed_while_it_activates_is_ended_by_the_next_look(host):
    """A runner SIGKILLed while it activates (a shutdown's KILL after its
    grace, a power cut, the OOM killer) never runs its exit: its lock would
    stay until the host's next deploy, its status would say it runs, and the
    profile would hold the generation it made and never activated. The look
    that finds it dead (the controller follows a run with such looks) ends it
    as its exit would have: the profile back, the run failed, the lock
    freed; the profile's next run takes it at once. A look that cannot put
    the profile back leaves the run for the next one."""
    old, _new = _killed_while_it_activates(host)
    lock = os.path.join(host.state_dir(), 'lock')
    assert open(os.path.join(lock, 'run')).read().strip() == 'r2'
    assert host.generations() == ('2', ['1', '2'])
    # a profile that cannot go back at this look: the run stays for the next
    failing = str(host.calls) + '.fail--switch-generation'
    open(failing, 'w').close()
    values, log = host.sh(_programs.poll_script('nixos', 'r2', **host.common))
    assert (values['state'], values['alive']) == ('running', '0'), values['output']
    assert '--switch-generation failed (the test' in log
    assert os.path.isdir(lock) and host.generations() == ('2', ['1', '2'])
    os.unlink(failing)
    values, log = host.sh(_programs.poll_script('nixos', 'r2', **host.common))
    assert (values['state'], values['alive']) == ('failed', '0'), values['output']
    assert values['reason'] == ('the activation run died in state running (killed, or its host '
                                'went down without a shutdown); %s is back at generation 1'
                                % host.profile), values['reason']
    assert values['reason'] in log
    assert not os.path.exists(lock)
    assert host.generations() == ('1', ['1'])
    # a second look finds it ended: nothing more is done
    again = host.sh(_programs.poll_script('nixos', 'r2', **host.common))[0]
    assert (again['state'], again['reason']) == ('failed', values['reason'])
    values, log = host.activate(old, 'r3')
    assert values['state'] == 'unchanged', values['output']
    assert 'breaking the stale lock' not in log


# A readlink that, while the file HOLD names a state folder whose lock is
# taken, writes its pid to HOLD.pid and waits: the runner reads the profile
# with readlink right after it takes the lock and before its first status.
HELD_READLINK = '''#!/bin/sh
if [ -e "__HOLD__" ] && [ -d "$(cat "__HOLD__")/lock" ]; then
  echo $$ >"__HOLD__.pid"; exec sleep 60
fi
exec /bin/readlink "$@"
'''


def test_a_run_killed_before_its_first_status_is_ended_by_the_next_look(host):
    """A runner SIGKILLed after it took the lock and before it wrote its
    first status (its host rebooted as the run started, the shutdown's KILL
    before its exit ran; seed 515628 round 1 on a loaded machine) left its
    lock, and the look that found it dead did nothing with a run that had
    no status: the lock stayed until the next deploy broke it, and nothing
    said the run had ended. The look now ends it: failed, the lock freed,
    the profile as it was; the next run takes the lock at once."""
    old, new = host.system('old'), host.system('new')
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    hold = host.root / 'hold'
    _executable(host.root / 'bin' / 'readlink', HELD_READLINK.replace('__HOLD__', str(hold)))
    state = host.state_dir()
    hold.write_text(state)
    launch = subprocess.Popen(
        ['/bin/sh', '-c', _programs.launch_script('nixos', 'r2', 'activate', path=new, wait=0,
                                                  magic_rollback=False, **host.common)],
        env=host.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        held = _wait_for(str(hold) + '.pid')
        runner = _wait_for(os.path.join(state, 'runs', 'r2', 'pid'))
        assert not os.path.exists(os.path.join(state, 'runs', 'r2', 'status'))
        # the reboot: every process of the run at once
        for pid in (runner, held, launch.pid):
            os.kill(pid, 9)
        assert _gone(runner) and _gone(held)
    finally:
        launch.kill()
        launch.wait()
    hold.unlink()
    lock = os.path.join(state, 'lock')
    assert open(os.path.join(lock, 'run')).read().strip() == 'r2'
    values, log = host.sh(_programs.poll_script('nixos', 'r2', **host.common))
    assert (values['state'], values['alive']) == ('failed', '0'), values['output']
    assert values['reason'] == ('the activation run died before its first status (killed, or '
                                'its host went down without a shutdown)'), values['reason']
    assert values['reason'] in log
    assert (values['run'], values['profile']) == ('r2', host.profile), values['output']
    assert not os.path.exists(lock)
    assert host.generations() == ('1', ['1'])
    host.took()
    values, log = host.activate(new, 'r3')
    assert values['state'] == 'done', values['output']
    assert 'breaking the stale lock' not in log
    assert host.generations() == ('2', ['1', '2'])


def test_a_run_killed_awaiting_its_confirmation_is_recorded_by_the_next_look(host, monkeypatch):
    """The power cut of the stopped run above: a runner SIGKILLed in its
    confirmation window runs no exit, and its watchdog dies with it. The new
    system's activation ran and nothing rolls it back; the look that ends
    the dead run records it as what runs, as the runner's exit does: the
    next deploy of the new system is unchanged, one of the old activates
    it. A corrupted status's new_path that is no store path is not
    recorded (a platform without a boot step of its own)."""
    without_boot_step(monkeypatch)
    old, new = host.system('old'), host.system('new')
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    values = host.activate(new, 'r2', magic_rollback=True, confirm_timeout=300)[0]
    assert values['state'] == _programs.AWAITING, values['output']
    runner = _wait_for(os.path.join(host.state_dir(), 'runs', 'r2', 'pid'))
    os.kill(runner, 9)
    assert _gone(runner)
    values, log = host.sh(_programs.poll_script('nixos', 'r2', **host.common))
    assert (values['state'], values['alive']) == ('failed', '0'), values['output']
    assert values['reason'] == ('the activation run died in state awaiting_confirmation '
                                '(killed, or its host went down without a shutdown)'), log
    assert not os.path.exists(os.path.join(host.state_dir(), 'lock'))
    assert host.generations() == ('2', ['1', '2'])
    host.took()
    values = host.activate(new, 'r3')[0]
    assert values['state'] == 'unchanged', values['output']
    assert host.took() == []
    # the same death with a status whose new_path is not a store path
    # (new_path is what the fake store's test system is: a path under store/)
    values = host.activate(old, 'r4', magic_rollback=True, confirm_timeout=300)[0]
    assert values['state'] == _programs.AWAITING, values['output']
    runner = _wait_for(os.path.join(host.state_dir(), 'runs', 'r4', 'pid'))
    os.kill(runner, 9)
    assert _gone(runner)
    status = os.path.join(host.state_dir(), 'runs', 'r4', 'status')
    with open(status) as handle:
        lines = handle.read().splitlines()
    assert 'new_path=%s' % old in lines and 'records_active=1' in lines, lines
    with open(status, 'w') as handle:
        handle.write(''.join('%s\n' % ('new_path=-x' if line.startswith('new_path=') else line)
                             for line in lines))
    values = host.sh(_programs.poll_script('nixos', 'r4', **host.common))[0]
    assert values['state'] == 'failed', values['output']
    with open(os.path.join(host.state_dir(), 'active')) as handle:
        assert handle.read().strip() == new


def test_a_dead_runs_corrupted_status_never_gives_nix_env_an_option(host):
    """The look reads the generation to put back from the run's own status
    file: a value there that is not a generation number (the file
    corrupted) never reaches nix-env, where it would be an option. The run
    is ended and its lock freed, the profile left as it is."""
    _killed_while_it_activates(host)
    status = os.path.join(host.state_dir(), 'runs', 'r2', 'status')
    with open(status) as handle:
        lines = handle.read().splitlines()
    assert 'prev_gen=1' in lines, lines
    with open(status, 'w') as handle:
        handle.write(''.join('%s\n' % ('prev_gen=--delete-generations' if line == 'prev_gen=1'
                                       else line) for line in lines))
    host.took()
    values = host.sh(_programs.poll_script('nixos', 'r2', **host.common))[0]
    assert (values['state'], values['alive']) == ('failed', '0'), values['output']
    assert values['reason'] == ('the activation run died in state running (killed, or its host '
                                'went down without a shutdown)'), values['reason']
    assert not [call for call in host.took() if call.startswith('nix-env')]
    assert not os.path.exists(os.path.join(host.state_dir(), 'lock'))
    assert host.generations() == ('2', ['1', '2'])


def test_a_run_from_before_a_reboot_is_dead_and_only_its_own_lock_goes(host):
    """After a reboot the pid of a run that died with its host may be
    another process's: the boot the run started in tells (its runs/<run>/boot
    against /proc's). A look at it frees its lock, never a lock another run
    took since (the same pid, in the new boot)."""
    new = host.system('a')
    assert host.activate(new, 'r1')[0]['state'] == 'done'
    state = host.state_dir()
    other = subprocess.Popen(['sleep', '60'])
    try:
        for run, owner in (('r0', 'r0'), ('r0', 'r5')):
            run_dir = os.path.join(state, 'runs', run)
            os.makedirs(run_dir, exist_ok=True)
            for name, text in (('pid', other.pid), ('boot', 'a-boot-before-this-one'),
                               ('status', 'state=running\nrun=r0')):
                with open(os.path.join(run_dir, name), 'w') as handle:
                    handle.write('%s\n' % text)
            os.makedirs(os.path.join(state, 'lock'), exist_ok=True)
            for name, text in (('pid', other.pid), ('run', owner), ('boot', 'x')):
                with open(os.path.join(state, 'lock', name), 'w') as handle:
                    handle.write('%s\n' % text)
            values = host.sh(_programs.poll_script('nixos', run, **host.common))[0]
            assert values['alive'] == '0', values['output']
            assert os.path.exists(os.path.join(state, 'lock')) == (owner != run)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_live_owner_keeps_the_lock_and_a_dead_owners_lock_is_broken(host):
    new = host.system('a')
    state = host.state_dir()
    os.makedirs(os.path.join(state, 'lock'))
    live = subprocess.Popen(['sleep', '60'])
    try:
        with open(os.path.join(state, 'lock', 'pid'), 'w') as handle:
            handle.write('%d\n' % live.pid)
        values, _log = host.activate(new, 'r1', lock_timeout=1)
        assert values['state'] == 'failed'
        assert 'held by pid %d' % live.pid in values['reason']
        # the way out is in the line a person reads, not only in the docs
        assert values['reason'].endswith('wait for that run to end, or raise nix_lock_timeout')
        assert host.took() == [] and os.path.isdir(os.path.join(state, 'lock'))
    finally:
        live.kill()
        live.wait()
    # the owner is gone now: its lock is broken, the run goes ahead
    values, log = host.activate(new, 'r2', lock_timeout=30)
    assert values['state'] == 'done', values['output']
    assert 'breaking the stale lock of pid %d' % live.pid in log
    assert not os.path.exists(os.path.join(state, 'lock'))


def _zombie():
    """A process that has ended and that nobody has collected yet (a zombie,
    as a detached runner is until the host's init collects it): a child of
    this test that is not waited for until the caller's ``wait()``."""
    ended = subprocess.Popen(['true'])
    deadline = time.monotonic() + 20
    while _state(ended.pid) != 'Z':
        assert time.monotonic() < deadline, 'pid %d never ended' % ended.pid
        time.sleep(0.02)
    return ended


def _state(pid):
    """The process state letter /proc shows for ``pid`` (None: no process)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(') ', 1)[1][0]
    except OSError:
        return None


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='zombies are told by /proc')
def test_a_lock_whose_owner_ended_uncollected_is_broken_at_once(host):
    """A lock owner that has ended but that its parent (the host's init,
    which may collect late, or never in a container without one) has not
    collected still answers kill -0: it is dead all the same, and its lock
    is broken at once, not after the whole lock timeout."""
    new = host.system('a')
    state = host.state_dir()
    os.makedirs(os.path.join(state, 'lock'))
    ended = _zombie()
    try:
        with open(os.path.join(state, 'lock', 'pid'), 'w') as handle:
            handle.write('%d\n' % ended.pid)
        values, log = host.activate(new, 'r1', lock_timeout=30)
        assert values['state'] == 'done', values['output']
        assert 'breaking the stale lock of pid %d (no longer running)' % ended.pid in log
        assert _state(ended.pid) == 'Z'  # still uncollected: the script told it by its state
    finally:
        ended.wait()


def test_a_lock_whose_pid_file_holds_no_number_is_broken_at_once(host):
    """A lock's pid file corrupted to "-1" names no process (kill -0 -1
    answers for every process the user may signal): the lock is broken at
    once, not held until the whole lock timeout."""
    new = host.system('a')
    state = host.state_dir()
    os.makedirs(os.path.join(state, 'lock'))
    with open(os.path.join(state, 'lock', 'pid'), 'w') as handle:
        handle.write('-1\n')
    started = time.monotonic()
    values, log = host.activate(new, 'r1', lock_timeout=30)
    assert values['state'] == 'done', values['output']
    assert 'breaking the stale lock of pid -1 (no longer running)' in log
    assert time.monotonic() - started < 20, 'the lock was held until its timeout'


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='zombies are told by /proc')
def test_a_runner_that_ended_uncollected_is_ended_by_the_next_look(host):
    """A runner killed while it activates, whose parent (the host's init)
    has not collected it yet: the next look finds it dead, not alive, and
    ends its run (the profile back, the run failed, the lock freed)."""
    _killed_while_it_activates(host)
    # the runner's pid (its run's, and its lock's) now names an uncollected
    # process that has ended
    ended = _zombie()
    try:
        for path in (('runs', 'r2', 'pid'), ('lock', 'pid')):
            with open(os.path.join(host.state_dir(), *path), 'w') as handle:
                handle.write('%d\n' % ended.pid)
        values, _log = host.sh(_programs.poll_script('nixos', 'r2', **host.common))
        assert (values['state'], values['alive']) == ('failed', '0'), values['output']
        assert values['reason'].startswith('the activation run died in state running'), values
        assert not os.path.exists(os.path.join(host.state_dir(), 'lock'))
        assert host.generations() == ('1', ['1'])
    finally:
        ended.wait()


def test_a_failed_switch_rolls_back_profile_first_then_reactivates(host):
    good, bad = host.system('good'), host.system('bad', rc=4)
    assert host.activate(good, 'r1')[0]['state'] == 'done'
    host.took()
    values, _log = host.activate(bad, 'r2')
    assert values['state'] == 'rolled_back' and values['rolled_back'] == '1'
    assert values['cause'] == 'activation_failed'
    assert 'code 4' in values['reason']
    assert host.took() == [
        'nix-env --profile %s --set %s' % (host.profile, bad),
        'activate bad switch',
        'nix-env --profile %s --switch-generation 1' % host.profile,
        'nix-env --profile %s --delete-generations 2' % host.profile,
        'activate good switch',
    ]
    assert host.generations() == ('1', ['1'])


def test_a_failed_first_switch_says_there_is_nothing_to_roll_back_to(host):
    values, _log = host.activate(host.system('bad', rc=1), 'r1')
    assert values['state'] == 'failed' and values['rolled_back'] == '0'
    assert 'no previous generation to roll back to' in values['reason']
    assert host.took()[1:] == ['activate bad switch']


def test_a_rollback_without_an_earlier_generation_fails_and_changes_nothing(host):
    assert host.activate(host.system('only'), 'r1')[0]['state'] == 'done'
    host.took()
    values, _log = host.rollback('r2')
    assert values['state'] == 'failed'
    assert 'has no generation before 1' in values['reason']
    values, _log = host.rollback('r3', generation=7)
    assert values['state'] == 'failed' and 'generation 7' in values['reason']
    assert host.took() == [] and host.generations() == ('1', ['1'])


def test_a_rollback_switches_back_and_reactivates(host):
    """One generation back from the current one: of three, the second, not
    the oldest."""
    for number, name in enumerate(('first', 'second', 'third'), 1):
        host.activate(host.system(name), 'r%d' % number)
    host.took()
    values, _log = host.rollback('r4')
    assert values['state'] == 'done' and values['rolled_back'] == '1'
    assert host.took() == ['nix-env --profile %s --switch-generation 2' % host.profile,
                           'activate second switch']
    assert host.generations() == ('2', ['1', '2', '3'])


def test_a_run_that_meets_a_lock_says_what_it_waits_for_at_once(host):
    """A launch whose run meets another run's lock returns as soon as its
    run waits, saying for what (the controller's progress lines show it at
    once, not after the launch's whole wait); a look that has seen that
    reason waits on for a change; once the lock is free the run goes on."""
    # runs named as the controller names them (the lock's holder is told
    # by its name only when it is one)
    holder, waiter = '2-0000000a', '3-0000000b'
    host.activate(host.system('first'), 'r1')
    values, _log = host.activate(host.system('second'), holder, magic_rollback=True,
                                 confirm_timeout=60)
    assert values['state'] == _programs.AWAITING, values['output']
    started = time.monotonic()
    values, _log = host.sh(_programs.launch_script(
        'nixos', waiter, 'activate', path=host.system('third'), magic_rollback=False, wait=30,
        lock_timeout=60, **host.common))
    assert (values['state'], values['waiting_for']) == ('waiting_lock', 'confirmation'), \
        values['output']
    assert time.monotonic() - started < 15, 'the launch waited past its lock wait'
    started = time.monotonic()
    seen = host.sh(_programs.poll_script('nixos', waiter, wait=2, stop_awaiting=False,
                                         seen_waiting='confirmation', **host.common))[0]
    assert (seen['state'], seen['waiting_for']) == ('waiting_lock', 'confirmation'), seen
    assert time.monotonic() - started >= 1.5, 'a look returned at a reason it had seen'
    assert host.confirm()[0]['claimed'] == holder
    values = host.look(waiter, wait=30, stop_awaiting=False)[0]
    assert values['state'] == 'done', values['output']
    assert host.generations()[0] == '3'


def test_a_rollback_that_waited_while_another_run_rolled_back_goes_no_further(host):
    """Ctrl-C left generation 3 awaiting its confirmation; a rollback asked
    at once waits for the lock, and meanwhile the watchdog puts 2 back.
    "One generation back" was from 3: the rollback leaves 2 and says why,
    it does not go on to 1 (the trial's "two generations back"). r3's window
    (3 s: it closes 2 to 3 s after it armed) holds the rollback's launch,
    which reads what the host ran at its start, within a tenth of a second."""
    host.activate(host.system('first'), 'r1')
    host.activate(host.system('second'), 'r2')
    values, _log = host.activate(host.system('third'), 'r3', magic_rollback=True,
                                 confirm_timeout=3)
    assert values['state'] == _programs.AWAITING, values['output']
    values, _log = host.rollback('r4', wait=0)
    assert values['state'] in ('starting', 'waiting_lock'), values['output']
    values = host.look('r4', wait=40)[0]
    assert values['state'] == 'unchanged', values['output']
    assert 'moved %s from generation 3 to 2: left there' % host.profile in values['reason']
    assert host.generations() == ('2', ['1', '2'])
    # asked again, it goes one back from what the host runs
    values, _log = host.rollback('r5')
    assert values['state'] == 'done' and host.generations()[0] == '1', values['output']


def test_unconfirmed_rolls_back_and_confirmed_stays(host):
    """r2's window must outlast the launch's report: the watchdog counts
    whole seconds (confirm_timeout N closes N-1 to N s after it armed), and
    the launch reads the state again once woken by the awaiting, so a 1 s
    window could close first on a busy machine. 3 s leaves it 2 s at least
    (the report comes within a tenth of a second; twenty times that holds at
    a load of 10 on two cores); the test waits them out, as nothing confirms
    r2. A window that a confirmation ends costs nothing: r3's is long."""
    old, new = host.system('old'), host.system('new')
    host.activate(old, 'r1')
    values, _log = host.activate(new, 'r2', magic_rollback=True, confirm_timeout=3)
    assert values['state'] == _programs.AWAITING, values['output']
    values, _log = host.confirm(claim=False, wait=40)
    assert values['state'] == 'rolled_back' and values['cause'] == 'unconfirmed', values['output']
    values, _log = host.activate(new, 'r3', magic_rollback=True, confirm_timeout=120)
    assert values['state'] == _programs.AWAITING
    values, _log = host.confirm()
    assert values['claimed'] == 'r3' and values['state'] == 'done'
    assert values['confirmed'] == '1'
    assert host.generations()[0] == '2'


def test_each_wait_ends_at_its_news_not_at_its_timer(host):
    """The launch waits for the runner's first state and for its awaiting,
    the watchdog for a confirmation or a rejection, the confirmation for the
    run's end: each is woken by the other side (lib.sh's wake). With NIXDEPLOY_DOZE=60
    a wait that no wake ended would last a minute, longer than any wait here
    (the launch's first state 10 s, the sessions' 20 s), and fail."""
    host.env['NIXDEPLOY_DOZE'] = '60'  # the runner gets it too: started by the session
    old, new, other = host.system('old'), host.system('new'), host.system('other')
    values, _log = host.activate(old, 'r1')
    assert values['state'] == 'done', values['output']
    values, _log = host.activate(new, 'r2', magic_rollback=True, confirm_timeout=300)
    assert values['state'] == _programs.AWAITING, values['output']
    values, _log = host.confirm()
    assert values['claimed'] == 'r2' and values['state'] == 'done', values['output']
    values, _log = host.activate(other, 'r3', magic_rollback=True, confirm_timeout=300)
    assert values['state'] == _programs.AWAITING, values['output']
    values, _log = host.sh(_programs.reject_script('nixos', 'r3', 'a check failed', wait=20,
                                                   **host.common))
    assert values['rejected'] == '1' and values['state'] == 'rolled_back', values['output']
    assert host.generations() == ('2', ['1', '2'])
    # every session that followed a run took its pid back from the run's waiter file
    runs = os.path.join(host.state_dir(), 'runs')
    assert [open(os.path.join(runs, run, 'waiter')).read() for run in ('r1', 'r2', 'r3')] \
        == ['', '', '']


def _race(host, attempt, delay):
    """One try of the race below, on its own host: four confirmations
    ``delay`` s after a launch whose window is 1 s."""
    old, new = host.system('old'), host.system('new')
    host.activate(old, 'r1')
    run = 'race%d' % attempt
    values, _log = host.activate(new, run, magic_rollback=True, confirm_timeout=1, wait=0)
    assert values['run'] == run, values['output']
    time.sleep(delay)
    answers = []
    racers = [threading.Thread(target=lambda: answers.append(host.confirm()[0]))
              for _i in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    claims = [a['claimed'] for a in answers if a['claimed']]
    final = host.sh(_programs.poll_script('nixos', run, wait=20, **host.common))[0]
    if claims:
        assert claims == [run] and final['state'] == 'done' and final['confirmed'] == '1'
        assert host.generations() == ('2', ['1', '2'])
        # back to the old system (and generation 2 dropped), as the other tries end
        back = host.rollback('back%d' % attempt, drop_generation=2)[0]
        assert back['state'] == 'done', back['output']
    else:
        assert final['state'] == 'rolled_back' and final['cause'] == 'unconfirmed'
    assert host.generations() == ('1', ['1'])


def test_confirmations_racing_the_watchdog_exactly_one_wins(monkeypatch, tmp_path):
    """Four confirmations at the watchdog's deadline: the canary's rename
    lets exactly one of the five claim it. The five tries (confirmations
    0.8 to 1.2 s after the launch) each have a host of their own and run
    side by side: each waits out its own window, not the others'."""
    nixos_without_root(monkeypatch)
    delays = (0.8, 0.95, 1.0, 1.05, 1.2)
    hosts = []
    for attempt in range(len(delays)):
        root = tmp_path / ('try%d' % attempt)
        root.mkdir()
        hosts.append(Host(root))
    failures = {}

    def attempt_on(attempt):
        try:
            _race(hosts[attempt], attempt, delays[attempt])
        except BaseException as exc:  # pylint: disable=broad-except  # reported below
            failures[attempt] = exc
    tries = [threading.Thread(target=attempt_on, args=(attempt,))
             for attempt in range(len(delays))]
    for thread in tries:
        thread.start()
    for thread in tries:
        thread.join()
    for attempt in sorted(failures):
        raise AssertionError('try %d (confirmations %.2f s after the launch) failed'
                             % (attempt, delays[attempt])) from failures[attempt]


# ---------------------------------------------------------------- under systemd
# systemd-run as systemd (252, Debian 12) treats a transient unit's command
# line: $VAR and ${VAR} are expanded from the unit's own environment ($$ is a
# $) in every argument, the unit starts with systemd's PATH (on NixOS only
# systemd's own bin: here a folder that does not exist), detached from the
# caller; options it does not know (--expand-environment needs 254) are
# refused, and so is a unit name that is already running.
FAKE_SYSTEMD_RUN = r'''#!__PYTHON__
import os, re, shutil, subprocess, sys, uuid
calls, units = sys.argv.pop(1), sys.argv.pop(1)
FLAGS = {'--collect', '--no-ask-password', '--quiet', '--service-type=exec'}
VALUED = ('--unit=', '--description=', '--setenv=')
args, options = sys.argv[1:], []
while args and args[0].startswith('-'):
    option = args.pop(0)
    if option not in FLAGS and not option.startswith(VALUED):
        sys.stderr.write('systemd-run: unrecognized option %r\n' % option)
        sys.exit(1)
    options.append(option)
unit = [o[len('--unit='):] for o in options if o.startswith('--unit=')]
if not unit or not args:
    sys.stderr.write('systemd-run: this fake wants --unit= and a command\n')
    sys.exit(1)
unit = unit[0]
env = {'PATH': '/nonexistent-systemd/bin', 'INVOCATION_ID': uuid.uuid4().hex}
for option in options:
    if option.startswith('--setenv='):
        name, _sep, value = option[len('--setenv='):].partition('=')
        env[name] = value
VAR = re.compile(r'\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)')
argv = [VAR.sub(lambda m: '$' if m.group(0) == '$$' else
                env.get(m.group(1) or m.group(2), ''), word) for word in args]
# the client resolves a program that is not a path, on its own PATH
if '/' not in argv[0]:
    argv[0] = shutil.which(argv[0]) or argv[0]
pidfile = os.path.join(units, unit)
try:
    os.kill(int(open(pidfile).read()), 0)
    sys.stderr.write('Failed to start transient service unit: Unit %s.service was already '
                     'loaded or has a fragment file.\n' % unit)
    sys.exit(1)
except (OSError, ValueError):
    pass
with open(calls, 'a') as handle:
    handle.write(repr({'unit': unit, 'options': options, 'argv': argv}) + '\n')
journal = open(os.path.join(units, unit + '.journal'), 'ab')
proc = subprocess.Popen(argv, env=env, cwd='/', stdin=subprocess.DEVNULL, stdout=journal,
                        stderr=journal, start_new_session=True)
with open(pidfile, 'w') as handle:
    handle.write(str(proc.pid))
'''
# root here: systemd-run is used only by root
FAKE_ROOT_ID = '''#!/bin/sh
case $1 in -u) echo 0 ;; -un) echo root ;; '') echo 'uid=0(root) gid=0(root) groups=0(root)' ;; *) exit 1 ;; esac
'''
# a system whose activation records what it ran with
FAKE_SWITCH_ENV = '''#!/bin/sh
echo "activate __NAME__ $1 HOME=$HOME nix-env=$(command -v nix-env)" >>"__CALLS__"
'''


@pytest.fixture
def sd_host(tmp_path, monkeypatch):
    """A root target where systemd runs, with the fake systemd-run."""
    spec = _platforms.PLATFORMS['nixos']
    monkeypatch.setitem(_platforms.PLATFORMS, 'nixos', dict(
        spec, activation=dict(spec['activation'], current_link=None)))
    root = tmp_path
    host = Host(root)
    # '$' in HOME, the state folder and the nix folder: every argument of the
    # unit's command line carries one
    (root / 'ho$me').mkdir()
    host.env['HOME'] = str(root / 'ho$me')
    _executable(root / 'bin' / 'id', FAKE_ROOT_ID)
    units = root / 'units'
    units.mkdir()
    host.sd_calls = root / 'systemd-run.calls'
    # systemd-run is called by the launch with its options; the fake's own
    # two first arguments are where it keeps its record
    _executable(root / 'bin' / 'systemd-run.py',
                FAKE_SYSTEMD_RUN.replace('__PYTHON__', sys.executable))
    _executable(root / 'bin' / 'systemd-run', '#!/bin/sh\nexec %s %s %s "$@"\n' % (
        root / 'bin' / 'systemd-run.py', host.sd_calls, units))
    (root / 'systemd').mkdir()
    monkeypatch.setattr(_programs, 'SYSTEMD_DIR', str(root / 'systemd'))
    monkeypatch.setattr(_programs, 'ROOT_STATE_DIR', str(root / 'state$x'))
    # nix-env is found through remote_nix_dir only, not on PATH
    nix_dir = root / 'nix$bin'
    nix_dir.mkdir()
    (root / 'bin' / 'nix-env').rename(nix_dir / 'nix-env')
    host.common['remote_nix_dir'] = str(nix_dir)
    host.nix_dir = str(nix_dir)
    return host


def sd_calls(host):
    return [eval(line) for line in host.sd_calls.read_text().splitlines()]  # noqa: S307


def test_under_systemd_the_runner_is_not_expanded_and_sets_its_path(sd_host):
    """The launch under a systemd-run that expands $ in its arguments, as
    systemd does: the run still waits its confirmation window, numbers its
    generations, rolls a failed switch back to the right generation, and its
    activation finds nix-env and HOME as the session had them."""
    host = sd_host
    old, new, bad = host.system('old'), host.system('new'), host.system('bad', rc=4)
    values, _log = host.activate(old, 'r1')
    assert values['state'] == 'done', values['output']
    assert values['detach'] == 'systemd-run' and values['unit'] == 'nixdeploy-activate-r1'
    assert values['new_gen'] == '1'
    values, _log = host.activate(new, 'r2', magic_rollback=True, confirm_timeout=30)
    assert values['state'] == _programs.AWAITING, values['output']
    assert values['reason'] == 'waiting 30s for a confirmation over a new connection'
    values, _log = host.confirm()
    assert values['state'] == 'done' and values['confirmed'] == '1'
    assert values['prev_gen'] == '1' and values['new_gen'] == '2'
    host.took()
    values, log = host.activate(bad, 'r3', magic_rollback=True)
    assert values['state'] == 'rolled_back' and 'code 4' in values['reason'], log
    # under magic rollback a NixOS switch is its test, then (confirmed) its boot
    assert host.took() == [
        'nix-env --profile %s --set %s' % (host.profile, bad),
        'activate bad test',
        'nix-env --profile %s --switch-generation 2' % host.profile,
        'nix-env --profile %s --delete-generations 3' % host.profile,
        'activate new switch',
    ]
    assert host.generations() == ('2', ['1', '2'])
    calls = sd_calls(host)
    assert [c['unit'] for c in calls] == ['nixdeploy-activate-r1', 'nixdeploy-activate-r2',
                                          'nixdeploy-activate-r3']
    for call in calls:
        # the unit runs a file: no program text on its command line
        assert call['argv'][1].endswith('/runs/%s/runner.sh' % call['unit'].split('-')[-1])
        assert not any('\n' in word for word in call['argv'])
        assert '--expand-environment=no' not in call['options']
    # the status lines reach the unit's journal too
    journal = (host.root / 'units' / 'nixdeploy-activate-r2.journal').read_text()
    assert 'nixdeploy run r2: awaiting_confirmation' in journal


def test_under_systemd_the_activation_gets_the_sessions_path_and_home(sd_host):
    host = sd_host
    system = host.root / 'store' / 'env'
    (system / 'bin').mkdir(parents=True)
    _executable(system / 'bin' / 'switch-to-configuration',
                FAKE_SWITCH_ENV.replace('__NAME__', 'env').replace('__CALLS__', str(host.calls)))
    values, _log = host.activate(str(system), 'r1')
    assert values['state'] == 'done', values['output']
    assert host.took()[1] == 'activate env switch HOME=%s nix-env=%s/nix-env' % (
        host.env['HOME'], host.nix_dir)


# ---------------------------------------------------------------- NixOS's own switch lock
# switch-to-configuration with the lock taken by another switch (an
# auto-upgrade): "Could not acquire lock", exit 1, nothing changed
FAKE_BUSY_SWITCH = '''#!/bin/sh
echo "activate __NAME__ $1" >>"__CALLS__"
if [ -e "__BUSY__" ]; then echo "Could not acquire lock" >&2; exit 1; fi
'''


@pytest.fixture
def lock_host(host, monkeypatch):
    spec = _platforms.PLATFORMS['nixos']
    lock = host.root / 'switch-to-configuration.lock'
    monkeypatch.setitem(_platforms.PLATFORMS, 'nixos', dict(spec, activation=dict(
        spec['activation'], switch_lock=dict(spec['activation']['switch_lock'], path=str(lock)))))
    host.busy = host.root / 'busy'
    host.lock = lock
    return host


def wait_until(predicate, timeout=60):
    """Look until ``predicate()`` holds or ``timeout`` seconds passed (a busy
    machine); returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


class SwitchHolder:
    """Another switch holding the platform's switch lock (flock) until the
    test lets it go (``release``), however long the runner takes to meet it;
    bounded all the same (``LIMIT`` seconds), so a failed test leaves none."""

    LIMIT = 300

    def __init__(self, host):
        self.held, self.go = host.root / 'held', host.root / 'go'
        for path in (self.held, self.go):
            if path.exists():
                path.unlink()
        self.proc = subprocess.Popen(
            ['flock', str(host.lock), 'sh', '-c', ': >"$1"; n=0; while [ ! -e "$2" ] && '
             '[ $n -lt %d ]; do sleep 0.05; n=$((n+1)); done' % (self.LIMIT * 20), 'holder',
             str(self.held), str(self.go)])
        assert wait_until(lambda: self.held.exists() or self.proc.poll() is not None) and \
            self.proc.poll() is None, 'could not take %s' % host.lock

    def release(self):
        self.go.write_text('')
        self.proc.wait(timeout=60)


def fake_system(host, name, switch):
    """A system ``name`` in the lock host's store whose switch-to-configuration
    is the script ``switch``, the host's files put in its __NAME__,
    __CALLS__, __BUSY__ and __LOCK__."""
    path = host.root / 'store' / name
    (path / 'bin').mkdir(parents=True)
    for mark, value in (('__NAME__', name), ('__CALLS__', host.calls),
                        ('__BUSY__', host.busy), ('__LOCK__', host.lock)):
        switch = switch.replace(mark, str(value))
    _executable(path / 'bin' / 'switch-to-configuration', switch)
    return str(path)


def test_a_switch_meeting_another_switchs_lock_waits_and_tries_again(lock_host):
    host = lock_host
    old, new = fake_system(host, 'old', FAKE_BUSY_SWITCH), fake_system(host, 'new', FAKE_BUSY_SWITCH)
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    host.took()
    host.busy.write_text('')

    # the other switch ends once the new system's switch has met it (a
    # refused "activate new switch"), however long the runner took to get there
    def let_go():
        wait_until(lambda: 'activate new switch' in host.calls.read_text().splitlines())
        host.busy.unlink()
    releaser = threading.Thread(target=let_go)
    releaser.start()
    try:
        values, log = host.activate(new, 'r2', lock_timeout=60)
    finally:
        releaser.join()
    assert values['state'] == 'done', values['output']
    assert 'another switch holds' in log
    calls = host.took()
    assert calls[0] == 'nix-env --profile %s --set %s' % (host.profile, new)
    assert set(calls[1:]) == {'activate new switch'} and len(calls) > 2
    assert host.generations() == ('2', ['1', '2'])


def test_a_switch_lock_held_too_long_fails_without_a_rollback(lock_host):
    host = lock_host
    old, new = fake_system(host, 'old', FAKE_BUSY_SWITCH), fake_system(host, 'new', FAKE_BUSY_SWITCH)
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    host.took()
    host.busy.write_text('')
    # the other switch never ends: the shortest bound (1 s) is as good as any
    values, _log = host.activate(new, 'r2', lock_timeout=1)
    assert values['state'] == 'failed' and values['rolled_back'] == '0', values['output']
    assert values['cause'] == 'switch_locked' and values['activated'] == '0'
    assert 'another switch held %s for more than 1s' % host.lock in values['reason']
    calls = host.took()
    # never the old system again (a rollback would meet the same lock), only
    # the profile put back and this run's own generation dropped
    assert 'activate old switch' not in calls
    assert calls[-2:] == ['nix-env --profile %s --switch-generation 1' % host.profile,
                          'nix-env --profile %s --delete-generations 2' % host.profile]
    assert host.generations() == ('1', ['1'])


@pytest.mark.skipif(not shutil.which('flock'), reason='needs flock')
def test_a_held_switch_lock_is_waited_for_before_the_profile_moves(lock_host):
    host = lock_host
    old, new = fake_system(host, 'old', FAKE_BUSY_SWITCH), fake_system(host, 'new', FAKE_BUSY_SWITCH)
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    host.took()
    host.lock.write_text('')
    # held until the runner says it waits for it (its log), then let go
    run_log = os.path.join(host.state_dir(), 'runs', 'r2', 'log')

    def said_waiting():
        try:
            with open(run_log) as handle:
                return 'waiting_lock: another switch holds' in handle.read()
        except OSError:
            return False

    def let_go():
        wait_until(said_waiting)
        holder.release()
    holder = SwitchHolder(host)
    releaser = threading.Thread(target=let_go)
    releaser.start()
    try:
        values, log = host.activate(new, 'r2', lock_timeout=60)
    finally:
        releaser.join()
    assert values['state'] == 'done', values['output']
    assert 'waiting_lock: another switch holds %s' % host.lock in log
    assert host.took() == ['nix-env --profile %s --set %s' % (host.profile, new),
                           'activate new switch']
    # and a lock that stays taken (until the run is over): nothing touched at all
    holder = SwitchHolder(host)
    try:
        values, _log = host.activate(old, 'r3', lock_timeout=1)
    finally:
        holder.release()
    assert values['state'] == 'failed' and values['cause'] == 'switch_locked'
    assert host.took() == [] and host.generations() == ('2', ['1', '2'])


# switch-to-configuration as NixOS's is: it holds the platform's switch lock
# (flock) while it runs, and fails at once when another switch holds it
FAKE_LOCKING_SWITCH = '''#!/bin/sh
echo "activate __NAME__ $1" >>"__CALLS__"
exec 9>>"__LOCK__"
flock -n 9 || { echo "Could not acquire lock" >&2; exit 1; }
'''


def profile_state(host):
    """What the profile is: its link and its generations' links."""
    folder = os.path.dirname(host.profile)
    return os.readlink(host.profile), sorted(
        (name, os.readlink(os.path.join(folder, name))) for name in os.listdir(folder))


@pytest.mark.skipif(not shutil.which('flock'), reason='needs flock')
def test_a_switch_lock_held_past_the_bound_before_the_run_changes_nothing(lock_host):
    """The runner's first look at the platform's switch lock (take_lock), on
    its own: another switch (an auto-upgrade) holds it from before the run
    until past the run's bound. The run fails saying so, before it reads or
    moves the profile: no generation made, none switched, nothing activated.
    Without that look its switch would meet the lock and the runner's own
    wait would put the profile back (switch_busy), but only after it had
    moved, and a generation made and dropped."""
    host = lock_host
    old, new = (fake_system(host, 'old', FAKE_LOCKING_SWITCH),
                fake_system(host, 'new', FAKE_LOCKING_SWITCH))
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    host.took()
    before = profile_state(host)
    holder = SwitchHolder(host)
    try:
        values, _log = host.activate(new, 'r2', lock_timeout=1)
    finally:
        holder.release()
    assert values['state'] == 'failed', values['output']
    assert values['cause'] == 'switch_locked', values['output']
    assert values['activated'] == '0' and values['rolled_back'] == '0', values['output']
    assert values['reason'] == ('another switch held %s for more than 1s (an auto-upgrade?): '
                                'nothing was changed' % host.lock), values['reason']
    # no nix-env, no activation: the profile as it was, link for link
    assert host.took() == []
    assert profile_state(host) == before
    assert host.generations() == ('1', ['1'])


def pause_nix_env(host, operation):
    """The fake nix-env stops before ``operation`` (``--set``) until
    ``resume()``: the test acts at that point of the run. Returns
    (paused(): whether it waits there now, resume)."""
    pause = str(host.calls) + '.pause' + operation
    paused = str(host.calls) + '.paused' + operation
    with open(pause, 'w'):
        pass
    script = host.root / 'bin' / 'nix-env'
    # bounded (600 x 0.05 s), so a failed test leaves no nix-env behind
    waits = ('[ -e "%s" ] && [ "$3" = %s ] && { : >"%s"; n=0; while [ -e "%s" ] && '
             '[ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; }\n' % (
                 pause, operation, paused, pause))
    text = script.read_text()
    script.write_text(text.replace('[ "$1" = --profile ]', waits + '[ "$1" = --profile ]', 1))
    return (lambda: os.path.exists(paused)), (lambda: os.unlink(pause))


def run_said(host, run, words):
    """Whether ``run``'s log holds ``words`` yet."""
    try:
        with open(os.path.join(host.state_dir(), 'runs', run, 'log')) as handle:
            return words in handle.read()
    except OSError:
        return False


@pytest.mark.skipif(not shutil.which('flock'), reason='needs flock')
def test_a_switch_lock_taken_after_the_first_look_is_waited_for_then_switched(lock_host):
    """The runner's own wait, on its own: the lock is free at the run's
    first look, and another switch takes it just after (while the profile
    is set). The switch meets it; the run says it waits for that other
    switch (what the controller shows), and switches again once it is let
    go: once refused, once done, not again and again while it is held."""
    host = lock_host
    old, new = (fake_system(host, 'old', FAKE_LOCKING_SWITCH),
                fake_system(host, 'new', FAKE_LOCKING_SWITCH))
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    host.took()
    paused, resume = pause_nix_env(host, '--set')
    holder = []

    def take_then_let_go():
        # past the first look: the profile is about to move
        if wait_until(paused, 30):
            holder.append(SwitchHolder(host))
        resume()
        if holder:
            wait_until(lambda: run_said(host, 'r2', 'waiting_lock: another switch holds'), 30)
            holder[0].release()
    other = threading.Thread(target=take_then_let_go)
    other.start()
    try:
        values, log = host.activate(new, 'r2', lock_timeout=60, wait=60)
    finally:
        other.join()
    assert holder, 'the run never set the profile'
    assert values['state'] == 'done', values['output']
    assert 'waiting_lock: another switch holds %s' % host.lock in log
    assert host.took() == ['nix-env --profile %s --set %s' % (host.profile, new),
                           'activate new switch', 'activate new switch']
    assert host.generations() == ('2', ['1', '2'])


# ---------------------------------------------------------------- goals and re-runs
def test_rolling_back_a_test_activation_leaves_the_profile(host):
    v1, v2, v3 = host.system('v1'), host.system('v2'), host.system('v3')
    host.activate(v1, 'r1')
    host.activate(v2, 'r2')
    assert host.activate(v3, 'r3', goal=_platforms.goal_row('test'))[0]['state'] == 'done'
    host.took()
    values, _log = host.rollback('r4', goal=_platforms.goal_row('test'))
    assert values['state'] == 'done', values['output']
    # the profile's current generation, activated with test: no nix-env at all
    assert host.took() == ['activate v2 test']
    assert values['new_gen'] == '2' and values['new_path'] == v2
    assert host.generations() == ('2', ['1', '2'])
    # a failed test activation goes back the same way
    bad = host.system('bad', rc=1)
    values, _log = host.activate(bad, 'r5', goal=_platforms.goal_row('test'))
    assert values['state'] == 'rolled_back', values['output']
    assert host.took() == ['activate bad test', 'activate v2 test']
    assert host.generations() == ('2', ['1', '2'])


def test_reactivate_runs_the_current_system_again(host):
    good = host.system('good')
    assert host.activate(good, 'r1')[0]['state'] == 'done'
    host.took()
    assert host.activate(good, 'r2')[0]['state'] == 'unchanged' and host.took() == []
    values, _log = host.activate(good, 'r3', reactivate=True, magic_rollback=True)
    assert values['state'] == 'done' and 're-activated' in values['reason'], values['output']
    # no profile change; the switch's two parts, with nothing to confirm
    assert host.took() == ['activate good test', 'activate good boot']
    assert host.generations() == ('1', ['1'])


# ------------------------------------------------------------------ issue 30
def test_a_switch_releases_the_copys_gc_root_once_the_profile_holds_it(host):
    new, other = host.system('a'), host.system('b')
    roots = host.root / 'state' / 'nixdeploy' / 'gcroots'
    roots.mkdir(parents=True)
    os.symlink(new, str(roots / 'web%2F1'))
    os.symlink(other, str(roots / 'web2'))
    values, log = host.activate(new, 'r1', root_key='web%2F1')
    assert values['state'] == 'done', values['output']
    # pointed at nothing, still there (registered with Nix once, kept)
    assert os.readlink(str(roots / 'web%2F1')) == '/dev/null'
    # another key's root, or one of another system, stays
    assert os.readlink(str(roots / 'web2')) == other
    os.unlink(str(roots / 'web%2F1'))
    os.symlink(other, str(roots / 'web%2F1'))
    values, _log = host.activate(new, 'r2', root_key='web%2F1')
    assert values['state'] == 'unchanged'
    assert os.readlink(str(roots / 'web%2F1')) == other


def test_a_test_activation_keeps_the_copys_gc_root(host):
    new = host.system('a')
    roots = host.root / 'state' / 'nixdeploy' / 'gcroots'
    roots.mkdir(parents=True)
    os.symlink(new, str(roots / 'h'))
    values, _log = host.activate(new, 'r1', goal=_platforms.goal_row('test'), root_key='h')
    assert values['state'] == 'done', values['output']
    # the profile does not hold it: a collection must not take the running system
    assert os.readlink(str(roots / 'h')) == new


def _no_room(host, avail):
    """head and df of a file system with ``avail`` KiB free."""
    bin_dir = host.root / 'bin'
    _executable(bin_dir / 'df', '#!/bin/sh\necho "Filesystem 1024-blocks Used Available '
                'Capacity Mounted on"\necho "lab-store 49152 49152 %d 100%% /nix"\n' % avail)
    _executable(bin_dir / 'head', '#!/bin/sh\necho "head: error writing \'standard output\': '
                'No space left on device" >&2\nexit 1\n')


def test_a_launch_without_room_for_its_reserve_fails_before_the_lock(host):
    old, new = host.system('old'), host.system('new')
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    state = host.state_dir()
    os.unlink(os.path.join(state, 'reserve'))
    host.took()
    _no_room(host, 12)
    values, _log = host.activate(new, 'r2')
    assert values['exit'] == 3, values['output']
    assert 'no space left on /nix (12 KB free)' in values['error'], values['error']
    assert 'nothing was changed' in values['error']
    assert host.took() == [] and not os.path.exists(os.path.join(state, 'lock'))
    assert host.generations() == ('1', ['1'])


def test_the_reserve_is_made_once_and_given_back_by_a_rollback(host):
    good, bad = host.system('good'), host.system('bad', rc=1)
    assert host.activate(good, 'r1')[0]['state'] == 'done'
    reserve = os.path.join(host.state_dir(), 'reserve')
    assert os.path.getsize(reserve) == _programs.RESERVE_KB * 1024
    values, _log = host.activate(bad, 'r2')
    assert values['state'] == 'rolled_back', values['output']
    # the rollback wrote with the reserve's room; the next launch makes it again
    assert not os.path.exists(reserve)
    assert host.activate(good, 'r3')[0]['state'] == 'unchanged'
    assert os.path.getsize(reserve) == _programs.RESERVE_KB * 1024


def test_an_activation_failing_on_a_full_disk_says_so(host):
    good, bad = host.system('good'), host.system('bad', rc=1)
    assert host.activate(good, 'r1')[0]['state'] == 'done'
    _no_room(host, 0)
    values, _log = host.activate(bad, 'r2')
    assert values['state'] == 'rolled_back', values['output']
    assert 'no space left on /nix (0 KB free)' in values['reason'], values['reason']


def test_an_activation_that_needs_root_refuses_another_user_in_the_tables_words(tmp_path):
    """NixOS as the table has it (its activation needs root) run as the
    fake ``tester``: refused before anything changes, in the words of the
    table's rule (``_platforms.root_refusal``) with the target's user."""
    target = Host(tmp_path)
    values, _log = target.activate(target.system('a'), 'r1')
    assert values['exit'] != 0, values
    assert _platforms.root_refusal('nixos', 'tester') in values['output'], values['output']
    assert target.took() == []
