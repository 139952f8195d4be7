"""The target of the activation's stage tests: test_target_scripts.py's fake
NixOS folder (a fake nix-env keeping profile generations, not root) with
systems in the controller's store whose switch-to-configuration records its calls reached through
the fake Host (tests/unit/fake_host.py), so the real activate-*.sh programs
run under the real Host.sh with its time limits; and an ``ActivateTask``
for it as nix_activate's action makes one."""

import os
import subprocess
import sys

from tests.collection import collections_path
from tests.unit.fake_host import fake_host
from tests.unit.plugins.plugin_utils.activation.test_detached_run import Display, task_args
from tests.unit.plugins.plugin_utils.activation.test_target_scripts import (
    Host as TargetFolder, nixos_without_root)

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _activation_task, _detached_run)

ActivateTask, HostSession = _activation_task.ActivateTask, _activation_task.HostSession
Timeline = _activation_task.Timeline


# A system: records "activate NAME GOAL" and exits with its rc.
SWITCH = '''#!/bin/sh
echo "activate %(name)s $1" >>"%(calls)s"
exit %(rc)d
'''


class StoreFolder(TargetFolder):
    """The fake target folder whose systems are real store paths (added to
    the controller's store: a system a program reports is a store path, or
    the stage never sees it)."""

    def system(self, name, rc=0):
        folder = self.root / 'systems' / ('%s-%d' % (name, rc)) / name
        os.makedirs(str(folder / 'bin'))
        switch = folder / 'bin' / 'switch-to-configuration'
        switch.write_text(SWITCH % {'name': name, 'calls': self.calls, 'rc': rc})
        switch.chmod(0o755)
        return subprocess.run(['nix-store', '--add', str(folder)], check=True,
                              stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()


class Target:
    """The target folder (``folder``: systems, generations, calls), its fake
    Host (``host``: calls, replies) and the tasks run on it (``task``)."""

    def __init__(self, tmp_path, monkeypatch):
        nixos_without_root(monkeypatch)
        # a lost look is retried after RETRY_INTERVAL: not seconds in a unit test
        monkeypatch.setattr(_detached_run, 'RETRY_INTERVAL', 0.05)
        self.folder = StoreFolder(tmp_path)
        self.hosts = []
        self.new_host()
        self.session = None

    def new_host(self):
        """The Host of a new task (Ansible makes one a task): a login
        refused before its first program is a refused login, not a lost one."""
        self.host = fake_host(self.folder.env, name='web1')
        self.connection = self.host.connection
        self.hosts.append(self.host)

    def close(self):
        for host in self.hosts:
            host.close()

    def resets(self):
        """The new logins over all the tasks' connections."""
        return sum(host.connection.resets for host in self.hosts)

    def task(self, path='', check_mode=False, diff=False, fresh=False, **changes):
        """An ActivateTask of nix_activate on this target (a new session;
        ``fresh``: on a Host of its own, as a later task)."""
        if fresh:
            self.new_host()
        args = task_args(self.folder, path, confirm_timeout=10, state='activated',
                         closure_diff=False, **changes)
        self.session = HostSession(self.host, Display())
        return ActivateTask(args, 'web1', 'nixos', _platforms.goal_row(args['goal']),
                            check_mode, diff, self.session, Timeline())

    def programs(self):
        """The names of the programs run so far, and forget them."""
        names = []
        for host in self.hosts:
            names.extend(call.name for call in host.calls)
            del host.calls[:]
        return names


LAUNCH_BOUND = _activation_task.LAUNCH_TIMEOUT + _activation_task.LAUNCH_WAIT
LOOK_BOUND = _activation_task.POLL_WAIT + _activation_task.LOOK_TIMEOUT
