"""The ssh master a judged task's connection rides (plugin_utils/host/_host_key_judge.py
``judged``, ``own_master``, ``ssh_master``, ``drop_master``; issue 43).

ssh checks the host key when a master logs in, never when a command rides
it; Ansible's own ControlPath names a master by host, port and user alone.
After the judgement a task's ssh connection gets, first in its ssh_args, a
ControlPath of the run, the judged settings and the judgement: the copy and
the activation of a host (same judgement) share it, a master of another
judgement, run or task is never ridden (the lab shows it end to end:
tests/integration/test_host_key_masters.py)."""

import os
import socket
import sys

import pytest
from ansible import constants as C

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (  # noqa: E402
    _host, _host_key_judge, _host_ssh)

SSH_ARGS = '-C -o ControlMaster=auto -o ControlPersist=60s'
KNOWN = '-o UserKnownHostsFile=/lab/known_hosts -o StrictHostKeyChecking=yes'


class Connection:
    """Ansible's ssh connection as an action sees it: options merged, and
    set_option as AnsiblePlugin has it."""

    ansible_name = 'ansible.builtin.ssh'
    transport = 'ssh'

    def __init__(self, folder, **options):
        self.options = dict(host_key_checking=True, ssh_args=SSH_ARGS, ssh_common_args=KNOWN,
                            ssh_extra_args='', host='10.0.0.5', port=22, remote_user='deploy',
                            ssh_executable='ssh', control_path_dir=str(folder))
        self.options.update(options)
        self.closed = 0

    def get_option(self, name):
        if name not in self.options:
            raise KeyError(name)
        return self.options[name]

    def set_option(self, name, value):
        self.options[name] = value

    def close(self):
        self.closed += 1

    def reset(self):
        raise AssertionError('a judged connection stops its own master')


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """Ansible's per-run local temp dir (one per ansible-playbook run)."""
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path / 'ansible-local-1'))
    return tmp_path


def control_path(connection):
    words = _host_ssh.split_ssh_args(connection.get_option('ssh_args'))
    assert words[0] == '-o' and words[1].startswith('ControlPath='), words
    return words[1][len('ControlPath='):]


def test_a_judged_connection_rides_a_master_of_its_own_first(run_dir):
    connection = Connection(run_dir / 'cp')
    _host_key_judge.judged(connection, [])
    path = control_path(connection)
    assert os.path.dirname(path) == str(run_dir / 'cp') and len(os.path.basename(path)) == 10
    # first (ssh keeps the first value), the job's own ssh_args after it
    assert connection.get_option('ssh_args').endswith(' ' + SSH_ARGS)
    assert os.path.isdir(str(run_dir / 'cp'))
    # the Host of the task reads the judgement here: checked, no opt-out
    assert getattr(connection, _host.JUDGED) is False
    # no master open yet: nix copy logs in by itself
    assert _host_key_judge.ssh_master(connection) is None


def test_the_same_judgement_shares_one_master_and_another_does_not(run_dir):
    """The copy and the activation of a host (two tasks, two connection
    objects, one judgement) ride one master; a master opened with checking
    off, by another run, or with other ssh settings is another one."""
    def path_of(folder=run_dir / 'cp', problems=(), **options):
        connection = Connection(folder, **options)
        _host_key_judge.judged(connection, list(problems))
        return control_path(connection)

    copy = path_of()
    assert path_of() == copy
    # a play that turned checking off (its opt-out let it go on): never this master
    assert path_of(host_key_checking=False, problems=[_host_key_judge.HKC_OFF]) != copy
    assert path_of(ssh_common_args='-o StrictHostKeyChecking=no', problems=['x']) != copy
    # other settings, another host, user or port
    for options in ({'ssh_common_args': KNOWN + ' -o Compression=no'}, {'host': '10.0.0.6'},
                    {'remote_user': 'root'}, {'port': 2222}):
        assert path_of(**options) != copy, options
    # the next run (Ansible's local temp dir is one per run): not the master of this one
    C.DEFAULT_LOCAL_TMP = str(run_dir / 'ansible-local-2')
    assert path_of() != copy


def test_a_loop_judges_again_without_stacking_control_paths(run_dir):
    """Each loop item is a new action over the same connection object: the
    judgement reads the job's own ssh_args, not the ones given before."""
    connection = Connection(run_dir / 'cp')
    _host_key_judge.judged(connection, [])
    first = connection.get_option('ssh_args')
    assert _host_key_judge.connection_problems(connection) == []
    _host_key_judge.judged(connection, [])
    assert connection.get_option('ssh_args') == first
    # Ansible set the options anew for the item: the same again
    connection.set_option('ssh_args', SSH_ARGS)
    _host_key_judge.judged(connection, [])
    assert connection.get_option('ssh_args') == first


def test_the_users_own_control_path_is_not_ridden_and_none_stays_none(run_dir):
    # a ControlPath of the user's (args or ssh config): ours comes first
    connection = Connection(run_dir / 'cp', ssh_common_args=KNOWN + ' -o ControlPath=/tmp/cm-%C')
    _host_key_judge.judged(connection, [])
    assert control_path(connection).startswith(str(run_dir / 'cp'))
    # multiplexing turned off by the user: left off
    connection = Connection(run_dir / 'cp', ssh_args='-o ControlPath=none')
    _host_key_judge.judged(connection, [])
    assert connection.get_option('ssh_args') == '-o ControlPath=none'
    assert _host_key_judge.ssh_master(connection) is None


def test_no_folder_for_the_master_means_no_master_at_all(run_dir):
    blocker = run_dir / 'file'
    blocker.write_text('')
    connection = Connection(blocker / 'cp')
    _host_key_judge.judged(connection, [])
    # never Ansible's own path (host, port and user only) instead
    assert control_path(connection) == 'none'


def test_a_percent_in_the_folder_reaches_ssh_as_one(run_dir):
    connection = Connection(run_dir / '50%cp')
    _host_key_judge.judged(connection, [])
    assert '/50%%cp/' in control_path(connection)


def test_paramiko_gets_no_master(run_dir):
    connection = Connection(run_dir / 'cp')
    connection.ansible_name, connection.transport = 'ansible.builtin.paramiko_ssh', 'paramiko'
    _host_key_judge.judged(connection, [])
    assert connection.get_option('ssh_args') == SSH_ARGS and _host_key_judge.ssh_master(connection) is None


def test_drop_master_stops_the_tasks_own_master_only(run_dir, monkeypatch):
    """nix_activate's new login: one ``-O stop`` to the task's own master,
    none to a master of Ansible's own naming the same host."""
    connection = Connection(run_dir / 'cp')
    _host_key_judge.judged(connection, [])
    path = control_path(connection)
    stopped = []
    monkeypatch.setattr(_host_key_judge, '_stop', lambda conn, sock: stopped.append(sock))
    # no master open: nothing to stop
    _host_key_judge.drop_master(connection)
    assert stopped == [] and connection.closed == 1
    sockets = []
    try:
        for name in (os.path.join(str(run_dir / 'cp'), 'ansible012'), path):
            sockets.append(socket.socket(socket.AF_UNIX))
            sockets[-1].bind(name)
        assert _host_key_judge.ssh_master(connection) == path
        _host_key_judge.drop_master(connection)
        assert stopped == [path] and connection.closed == 2
    finally:
        for sock in sockets:
            sock.close()


def test_ansibles_own_ssh_puts_the_control_path_first_and_adds_none_of_its_own(run_dir):
    """The real ssh connection plugin, as a task gets it: the command it
    builds after the judgement names the task's master first, and Ansible's
    own ControlPath (host, port and user: the one an earlier play's master
    sits at) is not in it."""
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader
    context = PlayContext()
    context.remote_addr = '10.0.0.5'
    connection = connection_loader.get('ssh', context, None)
    connection.set_options(var_options={'ansible_host': '10.0.0.5', 'ansible_user': 'deploy',
                                        'ansible_ssh_common_args': KNOWN},
                           direct={'ssh_args': SSH_ARGS, 'host_key_checking': True,
                                   'control_path_dir': str(run_dir / 'cp')})
    assert _host_key_judge.transport_of(connection) == 'ssh'
    before = [a.decode() for a in connection._build_command('ssh', 'ssh', '10.0.0.5', 'true')]
    ansible_own = [a for a in before if a.startswith('ControlPath=')]
    assert len(ansible_own) == 1, before  # Ansible's, added after every argument
    connection = connection_loader.get('ssh', context, None)
    connection.set_options(var_options={'ansible_host': '10.0.0.5', 'ansible_user': 'deploy',
                                        'ansible_ssh_common_args': KNOWN},
                           direct={'ssh_args': SSH_ARGS, 'host_key_checking': True,
                                   'control_path_dir': str(run_dir / 'cp')})
    assert _host_key_judge.connection_problems(connection) == []
    _host_key_judge.judged(connection, [])
    argv = [a.decode() for a in connection._build_command('ssh', 'ssh', '10.0.0.5', 'true')]
    paths = [a for a in argv if a.lower().startswith('controlpath=')]
    assert paths == ['ControlPath=%s' % control_path(connection)], argv
    assert paths[0] not in ansible_own and argv.index(paths[0]) < argv.index('ControlMaster=auto')
    assert connection.control_path is None  # Ansible added none of its own
    # the judgement still reads the job's own ssh_args
    assert _host_key_judge.connection_problems(connection) == []
