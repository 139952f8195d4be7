"""A real target ``Host`` (plugin_utils/host/_host.py) for unit tests that
have no lab: its ``sh`` is Host.sh itself (the program as one group, its
stdin, its time limit); only Ansible's connection under it is replaced, by a
shell on this machine. The lab runs the same programs over real ssh."""

import subprocess
import sys

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (  # noqa: E402
    PROGRAM_TIMEOUT, Host)


class Connection:
    """What a Host reads of Ansible's connection: where it reaches the host."""

    transport = 'local'

    def __init__(self, address):
        self.address = address

    def get_option(self, name):
        if name == 'host':
            return self.address
        raise KeyError(name)


def run_here(argv=('sh',), env=None):
    """Ansible's command runner (an action's ``_low_level_execute_command``)
    as this machine's ``argv -c COMMAND``: {rc, stdout, stderr}."""
    def execute(cmd, sudoable=False, in_data=None):
        data = in_data.encode('utf-8') if isinstance(in_data, str) else in_data
        proc = subprocess.run(list(argv) + ['-c', cmd], input=data or b'', env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        return {'rc': proc.returncode,
                'stdout': proc.stdout.decode('utf-8', 'surrogateescape'),
                'stderr': proc.stderr.decode('utf-8', 'surrogateescape')}
    return execute


class LocalHost(Host):
    """A Host whose programs run here; ``timeouts``: each call's time limit."""

    timeouts = None

    def sh(self, script, in_data=None, sudoable=False, timeout=PROGRAM_TIMEOUT):
        self.timeouts.append(timeout)
        return super(LocalHost, self).sh(script, in_data=in_data, sudoable=sudoable,
                                         timeout=timeout)


def local_host(execute=None, address='127.0.0.1', name='local'):
    """A ``LocalHost`` whose Ansible connection reaches ``address`` and runs
    each command with ``execute`` (default: ``run_here()``)."""
    host = LocalHost.of_task(Connection(address), {'inventory_hostname': name},
                             execute or run_here())
    host.timeouts = []
    return host
