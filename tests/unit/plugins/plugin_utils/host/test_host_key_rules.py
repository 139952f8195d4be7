"""Whether ssh checks a host's key (plugin_utils/host/_host_key_rules.py, and the
connection's judgement in plugin_utils/host/_host_key_judge.py): ssh's arguments read as ssh
reads them, and what this machine's real ``ssh -G`` says they give (no ssh
connection is made: ``-G`` only prints the configuration)."""

import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (  # noqa: E402
    _host_key_rules, _host_key_judge)

KNOWN = '-o UserKnownHostsFile=/lab/known_hosts -o StrictHostKeyChecking=yes'


def words(text):
    return text.split()


@pytest.mark.parametrize('args', [
    '-o StrictHostKeyChecking=no', '-oStrictHostKeyChecking=off', '-o stricthostkeychecking=No',
    '-o StrictHostKeyChecking=false', '-CoStrictHostKeyChecking=no',
    '-4C -o StrictHostKeyChecking=FALSE', '-i /k -o StrictHostKeyChecking=no',
    # the first value is the one ssh keeps
    '-o StrictHostKeyChecking=no -o StrictHostKeyChecking=yes'])
def test_strict_host_key_checking_off_in_any_spelling(args):
    assert _host_key_rules.args_problems(words(args))[0].lower().startswith('stricthostkeychecking=')


def test_a_setting_with_spaces_is_read_as_ssh_reads_it():
    assert _host_key_rules.args_problems(['-o', 'StrictHostKeyChecking no'])
    assert _host_key_rules.args_problems(['-o', 'StrictHostKeyChecking = no'])
    assert not _host_key_rules.args_problems(['-o', 'StrictHostKeyChecking "accept-new"'])


@pytest.mark.parametrize('args', [
    KNOWN, '-o StrictHostKeyChecking=accept-new', '-o StrictHostKeyChecking=ask', '',
    '-o StrictHostKeyChecking=yes -o StrictHostKeyChecking=no',
    # an argument of another option is not an option: -i takes "-oStrictHostKeyChecking=no"
    '-i -oStrictHostKeyChecking=no', '-p 22 -l root'])
def test_checked_settings_pass(args):
    assert _host_key_rules.args_problems(words(args)) == []


@pytest.mark.parametrize('null', ['/dev/null', '/dev//null', '/dev/./null', '/dev/../dev/null',
                                  'none', 'NONE'])
def test_known_hosts_files_that_hold_no_key(null):
    problems = _host_key_rules.args_problems(['-o', 'UserKnownHostsFile=%s' % null])
    assert problems and problems[0].startswith('known_hosts files'), problems


def test_a_link_to_dev_null_is_dev_null(tmp_path):
    link = tmp_path / 'known_hosts'
    link.symlink_to('/dev/null')
    assert _host_key_rules.args_problems(['-o', 'UserKnownHostsFile=%s' % link])


def test_a_global_known_hosts_file_that_exists_still_checks(tmp_path):
    fleet = tmp_path / 'fleet_known_hosts'
    fleet.write_text('h1 ssh-ed25519 AAAA\n')
    assert not _host_key_rules.args_problems([
        '-o', 'UserKnownHostsFile=/dev/null', '-o', 'GlobalKnownHostsFile=%s' % fleet])
    # one that does not exist holds no key either
    assert _host_key_rules.args_problems([
        '-o', 'UserKnownHostsFile=/dev/null', '-o', 'GlobalKnownHostsFile=%s' % (fleet) + '.gone'])
    # a KnownHostsCommand answers instead of the files
    assert not _host_key_rules.args_problems([
        '-o', 'UserKnownHostsFile=/dev/null', '-o', 'KnownHostsCommand=/bin/keys %H'])


def test_config_files_are_collected_for_ssh_G():
    assert _host_key_rules.parse_args(['-F', '/a', '-C', '-F/b'])[1] == ['/a', '/b']


# --- what this machine's ssh -G says -----------------------------------------------------

def config(tmp_path, text):
    path = tmp_path / 'ssh_config'
    path.write_text(text)
    return str(path)


def test_ssh_G_reads_a_config_file_that_turns_checking_off(tmp_path):
    cfg = config(tmp_path, 'Host web*\n  StrictHostKeyChecking no\n')
    problems = _host_key_rules.config_problems(['ssh', '-G', '-F', cfg, '--', 'web1'])
    assert problems == ['StrictHostKeyChecking=false'], problems
    # the same file for another host says nothing: ssh's default (ask) checks
    assert _host_key_rules.config_problems(['ssh', '-G', '-F', cfg, '--', 'db1']) == []
    # an option on the command line comes first, and wins
    assert _host_key_rules.config_problems(['ssh', '-G', '-o', 'StrictHostKeyChecking=yes', '-F', cfg,
                                            '--', 'web1']) == []


def test_ssh_G_and_dev_null_known_hosts(tmp_path):
    cfg = config(tmp_path, 'Host *\n  UserKnownHostsFile /dev//null\n'
                           '  GlobalKnownHostsFile /dev/./null\n')
    problems = _host_key_rules.config_problems(['ssh', '-G', '-F', cfg, '--', 'web1'])
    assert problems and problems[0].startswith('known_hosts files'), problems


def test_ssh_G_that_cannot_say_is_a_problem(tmp_path):
    cfg = config(tmp_path, 'Host *\n  StrictHostKeyChecking sometimes\n')
    problems = _host_key_rules.config_problems(['ssh', '-G', '-F', cfg, '--', 'web1'])
    assert problems and problems[0].startswith('`ssh -G` cannot tell'), problems


def test_ssh_G_is_asked_once_a_run_whatever_the_process(tmp_path):
    # each task of a host is a process of its own (the probe, the copy, the
    # activation): the second one reads the first one's answer
    calls = tmp_path / 'calls'
    ssh = tmp_path / 'ssh'
    ssh.write_text('#!/bin/sh\necho x >> %s\nexec ssh "$@"\n' % calls)
    ssh.chmod(0o755)
    cfg = config(tmp_path, 'Host web*\n  StrictHostKeyChecking no\n')
    argv = [str(ssh), '-G', '-F', cfg, '--', 'web1']
    assert _host_key_rules.config_problems(argv) == ['StrictHostKeyChecking=false']
    _host_key_rules._CONFIGS.clear()  # as a new task's process starts
    assert _host_key_rules.config_problems(argv) == ['StrictHostKeyChecking=false']
    assert calls.read_text().count('x') == 1
    # an answer ssh could not give is asked again: its words are said each time
    broken = tmp_path / 'broken'
    broken.write_text('Host *\n  StrictHostKeyChecking sometimes\n')
    argv = [str(ssh), '-G', '-F', str(broken), '--', 'web1']
    for task in ('copy', 'activate'):
        _host_key_rules._CONFIGS.clear()
        assert _host_key_rules.config_problems(argv)[0].startswith('`ssh -G` cannot tell'), task
    assert calls.read_text().count('x') == 3


# --- the connection's judgement (plugin_utils/host/_host_key_judge.py) ------------------------------------

def judge(checking, ssh_args='', common='', host='web1', **kwargs):
    return _host_key_judge.judge('ssh', checking, words(ssh_args), words(common), [], host, **kwargs)


def test_ansible_host_key_checking_off_is_named_with_its_fix(tmp_path):
    cfg = config(tmp_path, '')
    # what ansible-runner gives every job: host_key_checking False
    problems = judge(False, common='-F %s %s' % (cfg, KNOWN))
    assert problems == [_host_key_judge.HKC_OFF]
    message = _host_key_judge.refusal('web1', problems, 'nothing was copied')
    assert message.startswith('web1: refused: ssh would not check the host key of web1')
    assert 'ansible_host_key_checking: true' in message and 'ANSIBLE_HOST_KEY_CHECKING=False' in message
    assert 'nix_host_key_unchecked: true' in message and 'nothing was copied' in message
    # the cause on a short first line; the reason, the opt-out and the fix
    # each on a line of its own, the fix last
    lines = message.split('\n')
    assert lines[0] == 'web1: refused: ssh would not check the host key of web1; nothing was copied'
    assert len(lines[0]) < 100
    # the reason wrapped in lines of a terminal's width
    assert lines[1].startswith('  why: Ansible\'s host_key_checking is off for it')
    why = [line for line in lines if line.startswith('    ')]
    assert ' '.join(line.strip() for line in [lines[1]] + why) == 'why: ' + _host_key_judge.HKC_OFF
    assert lines[2:2 + len(why)] == why and all(len(line) <= 100 for line in lines[:-2])
    assert lines[-2].startswith('  to deploy it with its key unchecked') and \
        'nix_host_key_unchecked: true' in lines[-2] and len(lines[-2]) <= 200
    assert lines[-1] == '  to check it: ' + _host_key_judge.FIX and len(lines[-1]) <= 200
    assert len(message) > 500 and max(len(line) for line in lines) <= 200
    # on, with the same settings: checked
    assert judge(True, common='-F %s %s' % (cfg, KNOWN)) == []
    # ssh_args come BEFORE Ansible's -o StrictHostKeyChecking=no: a value there wins
    assert judge(False, ssh_args='-o StrictHostKeyChecking=yes', common='-F %s' % cfg) == []


def test_the_ssh_settings_are_judged_with_checking_on(tmp_path):
    cfg = config(tmp_path, 'Host web1\n  StrictHostKeyChecking off\n')
    problems = judge(True, common='-F %s' % cfg)
    assert len(problems) == 1 and 'StrictHostKeyChecking=false' in problems[0], problems
    assert 'make its ssh check the key' in _host_key_judge.refusal('web1', problems, 'nothing was copied')
    # all of them: each is named
    assert len(judge(False, common='-F %s -o UserKnownHostsFile=/dev//null' % cfg)) == 3
    # paramiko: its own option (no ssh_args); the ssh -G part is nix copy's ssh
    empty = str(tmp_path / 'empty_config')
    open(empty, 'w').close()
    assert judge_paramiko(False, empty) == [_host_key_judge.PARAMIKO_OFF]
    assert judge_paramiko(True, empty) == []
    assert len(judge_paramiko(True, cfg)) == 1


def judge_paramiko(checking, cfg):
    return _host_key_judge.judge('paramiko_ssh', checking, ['-o', 'StrictHostKeyChecking=no'],
                                 ['-F', cfg], [], 'web1')


class Connection:
    """A connection plugin as the action sees it: options merged already."""

    def __init__(self, transport, **options):
        self.transport = transport
        self.options = options

    def get_option(self, name):
        if name not in self.options:
            raise KeyError(name)
        return self.options[name]


def test_the_connection_is_asked(tmp_path):
    cfg = config(tmp_path, '')
    ssh = Connection('ssh', host_key_checking=False, ssh_args='-C -o ControlPersist=60s',
                     ssh_common_args='-F %s' % cfg, ssh_extra_args='', host='10.0.0.5',
                     port=22, remote_user='deploy', ssh_executable='ssh')
    assert _host_key_judge.connection_problems(ssh) == [_host_key_judge.HKC_OFF]
    ssh.options['host_key_checking'] = True
    assert _host_key_judge.connection_problems(ssh) == []
    # no ssh, no host key
    assert _host_key_judge.connection_problems(Connection('local')) is None
    assert _host_key_judge.connection_problems(Connection('ansible.builtin.local')) is None


def test_a_cascade_peer_is_judged_as_its_own_task_will_be(tmp_path, monkeypatch):
    """Another host of the batch, from its variables: ansible-runner's
    environment turns checking off, the host's own variable turns it on."""
    from ansible.plugins.loader import connection_loader
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import Host as Target
    connection_loader.get('ssh', class_only=True)   # its options' definitions, as in a run
    monkeypatch.setenv('ANSIBLE_HOST_KEY_CHECKING', 'False')
    cfg = config(tmp_path, '')
    own = Connection('ssh', ssh_executable='ssh')
    peer = Target('10.0.0.6', ssh_common_args='-F %s %s' % (cfg, KNOWN), name='web2')
    assert not _host_key_judge.peer_checked(own, {}, peer)
    assert _host_key_judge.peer_problems(own, {}, peer) == [_host_key_judge.HKC_OFF]
    assert _host_key_judge.peer_checked(own, {'ansible_host_key_checking': True}, peer)
    # another kind of connection, or a setting still a template: left out
    assert not _host_key_judge.peer_checked(own, {'ansible_connection': 'local'}, peer)
    assert not _host_key_judge.peer_checked(own, {'ansible_host_key_checking': '{{ on }}'}, peer)


# --- paramiko and other connections (issue 43) -------------------------------------------

def paramiko(checking=True, auto_add=None, cfg=None, **more):
    options = dict(host_key_checking=checking, host_key_auto_add=auto_add, remote_addr='10.0.0.5',
                   ssh_common_args='-F %s' % cfg, ssh_extra_args='', port=22,
                   remote_user='deploy', **more)
    return Connection('paramiko', **options)


def test_paramiko_with_host_key_auto_add_is_unchecked(tmp_path):
    """paramiko's host_key_auto_add takes the key of any host its known_hosts
    (~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts: a new job has neither)
    does not hold: unchecked, with its own fix."""
    cfg = config(tmp_path, '')
    assert _host_key_judge.connection_problems(paramiko(cfg=cfg)) == []
    problems = _host_key_judge.connection_problems(paramiko(auto_add=True, cfg=cfg))
    assert problems == [_host_key_judge.PARAMIKO_AUTO_ADD], problems
    message = _host_key_judge.refusal('web1', problems, 'nothing was copied')
    assert 'host_key_auto_add' in message and 'turn host_key_auto_add off' in message
    assert 'ansible_host_key_checking: true' not in message
    # its checking off: that problem, that fix (auto-add then adds nothing more)
    assert _host_key_judge.connection_problems(paramiko(checking=False, auto_add=True, cfg=cfg)) == [
        _host_key_judge.PARAMIKO_OFF]
    assert _host_key_judge.connection_problems(paramiko(auto_add='false', cfg=cfg)) == []
    # look_for_keys is about the user's private keys, not the host's: no matter
    assert _host_key_judge.connection_problems(paramiko(cfg=cfg, look_for_keys=False)) == []


class Plugin(Connection):
    """A connection plugin as the plugin loader hands it out: its resolved
    full name in ``ansible_name``, whatever its ``transport`` says."""

    def __init__(self, fqcn, transport=None, **options):
        super(Plugin, self).__init__(transport or fqcn.rsplit('.', 1)[-1], **options)
        self.ansible_name = fqcn


@pytest.mark.parametrize('fqcn,transport', [
    ('community.docker.docker', None), ('kubernetes.core.kubectl', None),
    ('ansible.netcommon.network_cli', None), ('ansible.netcommon.libssh', None),
    ('community.general.lxc', None), ('mitogen.ansible.mitogen_ssh', None),
    # a collection's plugin that calls itself ssh is not ansible-core's ssh, nor
    # is a playbook's own connection_plugins/ssh.py (the loader resolves it to a
    # bare 'ssh', where core's resolves to ansible.builtin.ssh by any name)
    ('myorg.tools.ssh', 'ssh'), ('ssh', 'ssh'), ('paramiko_ssh', 'paramiko')])
def test_a_connection_the_judge_does_not_know_is_unchecked(fqcn, transport):
    connection = Plugin(fqcn, transport, host='10.0.0.5')
    problems = _host_key_judge.connection_problems(connection)
    if '.' not in fqcn:
        fqcn = 'ansible.legacy.' + fqcn
    assert problems == [_host_key_judge.UNKNOWN % fqcn], problems
    message = _host_key_judge.refusal('web1', problems, 'nothing was activated')
    assert message.startswith('web1: refused: nothing tells that the host key of web1 is checked'
                              '; nothing was activated\n  why: its connection %s is ' % fqcn), message
    assert 'ansible.builtin.ssh' in message and 'nix_host_key_unchecked: true' in message
    assert 'nothing was activated' in message
    # and its opt-out names it too
    assert fqcn in _host_key_judge.unchecked_warning('web1', problems)


def test_ansible_cores_own_connections_are_known_by_any_of_their_names(tmp_path):
    cfg = config(tmp_path, '')
    options = dict(host_key_checking=True, ssh_args='', ssh_common_args='-F %s %s' % (cfg, KNOWN),
                   ssh_extra_args='', host='10.0.0.5', port=22, remote_user='deploy')
    for fqcn, transport in (('ansible.builtin.ssh', 'ssh'), ('ansible.builtin.paramiko_ssh',
                                                             'paramiko')):
        assert _host_key_judge.connection_problems(Plugin(fqcn, transport, **options)) == [], fqcn
    # the controller itself needs no key, by any name
    for local in (Plugin('ansible.builtin.local', 'local'), Connection('local'),
                  Connection('ansible.builtin.local')):
        assert _host_key_judge.connection_problems(local) is None
    assert [_host_key_judge.transport_name(n) for n in ('ssh', 'ansible.builtin.ssh', 'paramiko',
                                                        'ansible.builtin.paramiko_ssh', 'local')] == [
        'ssh', 'ssh', 'paramiko_ssh', 'paramiko_ssh', 'local']


def test_a_cascade_peer_on_another_connection_is_left_out(tmp_path, monkeypatch):
    from ansible.plugins.loader import connection_loader
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import Host as Target
    # its options' definitions; ansible-core 2.21 and later ship no paramiko_ssh
    has_paramiko = connection_loader.get('paramiko_ssh', class_only=True) is not None
    cfg = config(tmp_path, '')
    peer = Target('10.0.0.6', ssh_common_args='-F %s %s' % (cfg, KNOWN), name='web2')
    own = Plugin('ansible.builtin.ssh', 'ssh', ssh_executable='ssh')
    for other in ('community.docker.docker', 'myorg.tools.ssh', 'paramiko'):
        assert not _host_key_judge.peer_checked(own, {'ansible_connection': other,
                                                      'ansible_host_key_checking': True}, peer), other
    # a paramiko batch: the peer's auto-add (environment or ansible.cfg) is judged as its own task's
    own = Plugin('ansible.builtin.paramiko_ssh', 'paramiko', ssh_executable='ssh')
    if not has_paramiko:
        # no such plugin: nothing can tell that its key is checked, it is left out
        assert _host_key_judge.peer_problems(own, {}, peer) is None
        return
    assert _host_key_judge.peer_checked(own, {}, peer)
    monkeypatch.setenv('ANSIBLE_PARAMIKO_HOST_KEY_AUTO_ADD', 'True')
    assert _host_key_judge.peer_problems(own, {}, peer) == [_host_key_judge.PARAMIKO_AUTO_ADD]
