"""nix_activate's target programs (module_utils/target/activate-*.sh), run
under sh on this machine with a fake nix-env and fake systems whose
bin/switch-to-configuration records its calls: the lock, the watchdog's
rename race, the rollback order, a missing previous generation. The lab
tests run the same programs against the real Nix."""

import os
import subprocess
import sys
import threading
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _platforms, _script, _target)

# Profile generations as Nix keeps them: PROFILE -> NAME-N-link -> system.
FAKE_NIX_ENV = r'''#!/bin/sh
echo "nix-env $*" >>"__CALLS__"
[ "$1" = --profile ] || exit 2
p=$2 op=$3 arg=$4
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
case $1 in -u) echo 1000 ;; -un) echo tester ;; *) echo 'uid=1000(tester)' ;; esac
'''
# A system: records "activate NAME GOAL", exits with the number in its file rc.
FAKE_SWITCH = '''#!/bin/sh
echo "activate __NAME__ $1" >>"__CALLS__"
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

    def system(self, name, rc=0):
        path = self.root / 'store' / name
        (path / 'bin').mkdir(parents=True)
        _executable(path / 'bin' / 'switch-to-configuration',
                    FAKE_SWITCH.replace('__NAME__', name).replace('__CALLS__', str(self.calls))
                    .replace('__SYSTEM__', str(path)))
        (path / 'rc').write_text('%d\n' % rc)
        return str(path)

    def sh(self, program):
        proc = subprocess.run(['/bin/sh', '-c', program], env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=60,
                              check=False)
        values, log = _script.parse(proc.stdout)
        values['exit'] = proc.returncode
        values['output'] = proc.stdout
        return values, log

    def activate(self, path, run, **params):
        params.setdefault('magic', False)
        params.setdefault('wait', 20)
        params.update(self.common)
        return self.sh(_target.launch_script('nixos', run, 'activate', path=path, **params))

    def rollback(self, run, **params):
        return self.sh(_target.launch_script('nixos', run, 'rollback', magic=False, wait=20,
                                             **dict(params, **self.common)))

    def confirm(self, wait=20, claim=True):
        return self.sh(_target.confirm_script('nixos', claim=claim, wait=wait, **self.common))

    def state_dir(self):
        return self.sh(_target.inspect_script('nixos', **self.common))[0]['dir']

    def generations(self):
        values = self.sh(_target.inspect_script('nixos', **self.common))[0]
        return values['prev_gen'], values['gens'].split()

    def took(self):
        """The calls recorded since the last look."""
        calls = self.calls.read_text().splitlines()
        self.calls.write_text('')
        return calls


@pytest.fixture
def host(tmp_path, monkeypatch):
    # NixOS as the table has it, but no root needed and no /run/current-system
    # of this machine: what is active is what the runner recorded.
    spec = _platforms.PLATFORMS['nixos']
    monkeypatch.setitem(_platforms.PLATFORMS, 'nixos', dict(
        spec, needs_root=False, activation=dict(spec['activation'], current_link=None)))
    return Host(tmp_path)


def test_a_switch_sets_the_profile_then_activates_and_a_second_is_unchanged(host):
    new = host.system('a')
    values, log = host.activate(new, 'r1')
    assert values['state'] == 'done', values['output']
    assert values['new_gen'] == '1' and values['activated'] == '1' and values['alive'] == '0'
    assert host.took() == ['nix-env --profile %s --set %s' % (host.profile, new),
                           'activate a switch']
    assert 'activation exited with 0' in log
    values, _log = host.activate(new, 'r2')
    assert values['state'] == 'unchanged' and host.took() == []


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
        assert host.took() == [] and os.path.isdir(os.path.join(state, 'lock'))
    finally:
        live.kill()
        live.wait()
    # the owner is gone now: its lock is broken, the run goes ahead
    values, log = host.activate(new, 'r2', lock_timeout=30)
    assert values['state'] == 'done', values['output']
    assert 'breaking the stale lock of pid %d' % live.pid in log
    assert not os.path.exists(os.path.join(state, 'lock'))


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
    first, second = host.system('first'), host.system('second')
    host.activate(first, 'r1')
    host.activate(second, 'r2')
    host.took()
    values, _log = host.rollback('r3')
    assert values['state'] == 'done' and values['rolled_back'] == '1'
    assert host.took() == ['nix-env --profile %s --switch-generation 1' % host.profile,
                           'activate first switch']


def test_unconfirmed_rolls_back_and_confirmed_stays(host):
    old, new = host.system('old'), host.system('new')
    host.activate(old, 'r1')
    values, _log = host.activate(new, 'r2', magic=True, confirm_timeout=1)
    assert values['state'] == _target.AWAITING
    values, _log = host.confirm(claim=False)
    assert values['state'] == 'rolled_back' and values['cause'] == 'unconfirmed'
    values, _log = host.activate(new, 'r3', magic=True, confirm_timeout=30)
    assert values['state'] == _target.AWAITING
    values, _log = host.confirm()
    assert values['claimed'] == 'r3' and values['state'] == 'done'
    assert values['confirmed'] == '1'
    assert host.generations()[0] == '2'


def test_confirmations_racing_the_watchdog_exactly_one_wins(host):
    """Four confirmations at the watchdog's deadline: the canary's rename
    lets exactly one of the five claim it."""
    old, new = host.system('old'), host.system('new')
    host.activate(old, 'r1')
    for attempt, delay in enumerate((0.8, 0.95, 1.0, 1.05, 1.2)):
        run = 'race%d' % attempt
        values, _log = host.activate(new, run, magic=True, confirm_timeout=1, wait=0)
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
        final = host.sh(_target.poll_script('nixos', run, wait=20, **host.common))[0]
        if claims:
            assert claims == [run] and final['state'] == 'done' and final['confirmed'] == '1'
            assert host.generations() == ('2', ['1', '2'])
            # back to the old system (and generation 2 dropped) for the next try
            back = host.rollback('back%d' % attempt, drop_generation=2)[0]
            assert back['state'] == 'done', back['output']
        else:
            assert final['state'] == 'rolled_back' and final['cause'] == 'unconfirmed'
        assert host.generations() == ('1', ['1'])
