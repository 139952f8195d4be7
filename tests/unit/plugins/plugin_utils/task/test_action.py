"""The one action base (plugin_utils/task/_action.py): validation, host-prefixed
failures with phase and connection_lost, once-per-batch work."""

import os
import sys
from types import SimpleNamespace

import pytest
from ansible import constants as C
from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.module_utils._record_stats import (  # noqa: E402
    OPTION)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import (  # noqa: E402
    NixdeployError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _action  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (  # noqa: E402
    BatchWork)


class Refused(NixdeployError):
    def __init__(self, message, stderr=''):
        super(Refused, self).__init__(message)
        self.message = message
        self.stderr = stderr


class Probe(_action.NixdeployAction):
    """A test action: ``do`` says what host_result does."""

    _requires_connection = False
    ARGUMENT_SPEC = {'do': {'type': 'str', 'required': True,
                            'choices': ['ok', 'refuse', 'nix', 'lose', 'fail', 'batch',
                                        'sudo', 'other', 'partial', 'os']},
                     'value': {'type': 'str'}}
    PHASE = 'probe'

    def host_result(self, args, result):
        if args['do'] == 'refuse':
            raise Refused('no thanks', stderr='the details')
        if args['do'] == 'nix':
            raise NixError('evaluating', rc=1, stderr='progress\nerror: attribute missing')
        if args['do'] == 'lose':
            raise AnsibleConnectionFailure('ssh: connect to host h1 port 22: No route to host')
        if args['do'] == 'fail':
            return dict(result, failed=True, msg='h1: bad')
        if args['do'] == 'partial':
            raise NixdeployError('the link dropped', phase='confirm', connection_lost=True,
                                 result={'uploaded': ['k1']})
        if args['do'] == 'os':
            raise OSError('No space left on device')
        if args['do'] == 'sudo':
            # what Ansible's ssh connection raises when sudo asks and no password was given
            raise AnsibleError('Missing sudo password')
        if args['do'] == 'other':
            raise AnsibleError('something else')
        if args['do'] == 'batch':
            got = self.batch_answer(BatchWork(
                'probe', [args['value']], args['value'], serve_logged,
                foresee=lambda hosts: dict((h, args['value']) for h in hosts)))
            return dict(result, answer=got.entry['answer'], here=got.here,
                        hosts=got.entry['wave'])
        return dict(result, changed=True, done=True)

    def failure_details(self, error):
        # as nix_copy_closure reads its stderr: what the error carries wins
        return {'stderr': getattr(error, 'stderr', ''), 'connection_lost': False}


@named
def serve_logged(requests, put):
    """The probe's batch work: each host's answer names it and its request;
    each wave is written to ``waves.log`` in the run's temp folder (the
    server is another process: a file is what a test can read)."""
    with open(os.path.join(C.DEFAULT_LOCAL_TMP, 'waves.log'), 'a') as handle:
        handle.write(' '.join(sorted(requests)) + '\n')
    for host, request in requests.items():
        put(host, {'answer': '%s/%s' % (host.upper(), request), 'wave': sorted(requests)})


def waves():
    """The probe's waves so far, each the list of its hosts."""
    try:
        with open(os.path.join(C.DEFAULT_LOCAL_TMP, 'waves.log')) as handle:
            return [line.split() for line in handle.read().splitlines()]
    except FileNotFoundError:
        return []


def action_of(cls, args, uuid='task-1'):
    """``cls`` as Ansible builds it for one task (no connection is used)."""
    task = Task.load({'action': 'probe', 'args': dict(args)})
    task._uuid = uuid
    # the controller itself: a connection the host key judge knows needs no key
    connection = SimpleNamespace(transport='local', _shell=SimpleNamespace(tmpdir='/nonexistent'))
    return cls(task, connection, PlayContext(), DataLoader(), None, None)


@pytest.fixture
def run_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))

    def run(args, host='h1', batch=('h1',), uuid='task-1'):
        action = action_of(Probe, args, uuid)
        task_vars = {'inventory_hostname': host, 'ansible_play_batch': list(batch),
                     'hostvars': {}}
        return action.run(task_vars=task_vars)
    return run


def test_a_good_run_is_the_subclass_result(run_probe):
    out = run_probe({'do': 'ok'})
    assert out['done'] and out['changed'] and not out.get('failed')
    assert 'phase' not in out


def test_a_bad_argument_is_this_hosts_failure(run_probe):
    out = run_probe({'do': 'dance'})
    assert out['failed'] and not out['changed']
    assert out['msg'].startswith('h1: ') and 'do' in out['msg']
    assert out['phase'] == 'probe' and out['connection_lost'] is False


def test_an_expected_error_names_the_host_and_keeps_details(run_probe):
    out = run_probe({'do': 'refuse'})
    assert out['msg'] == 'h1: no thanks' and out['stderr'] == 'the details'
    assert out['phase'] == 'probe' and out['connection_lost'] is False


def test_an_error_of_the_family_carries_its_phase_connection_and_partial_result(run_probe):
    out = run_probe({'do': 'partial'})
    assert out['failed'] and out['msg'] == 'h1: the link dropped'
    assert out['phase'] == 'confirm' and out['connection_lost'] is True
    assert out['uploaded'] == ['k1']


def test_an_os_error_is_this_hosts_failure_not_a_traceback(run_probe):
    out = run_probe({'do': 'os'})
    assert out['failed'] and out['msg'] == 'h1: No space left on device'
    assert out['phase'] == 'probe' and out['connection_lost'] is False


def test_a_nix_error_carries_nixs_message(run_probe):
    out = run_probe({'do': 'nix'})
    assert out['msg'] == 'h1: evaluating: error: attribute missing'


def test_a_lost_connection_is_a_failed_result_not_unreachable(run_probe):
    out = run_probe({'do': 'lose'})
    assert out['failed'] and out['connection_lost'] is True
    assert 'unreachable' not in out and 'No route to host' in out['msg']
    assert out['msg'].startswith('h1: ')


def test_a_become_refusal_is_this_hosts_failure_saying_the_way_out(run_probe):
    out = run_probe({'do': 'sudo'})
    assert out['failed'] and out['phase'] == 'probe' and out['connection_lost'] is False
    assert out['msg'].startswith('h1: sudo on the target asks for a password and none was '
                                 'given (Ansible: Missing sudo password)'), out['msg']
    assert 'become_password' in out['msg']
    # any other error of Ansible's is left to Ansible
    with pytest.raises(AnsibleError):
        run_probe({'do': 'other'})


def test_a_returned_failure_gets_phase_and_is_not_prefixed_twice(run_probe):
    out = run_probe({'do': 'fail'})
    assert out['msg'] == 'h1: bad' and out['phase'] == 'probe' and not out['changed']


def test_the_batch_computes_once_and_answers_each_host(run_probe):
    """The first host foresees the batch: one wave answers all three, in the
    first host's (``here``); the others read their answers."""
    batch = ('h1', 'h2', 'h3')
    answers = [run_probe({'do': 'batch', 'value': 'v'}, host=h, batch=batch) for h in batch]
    assert waves() == [['h1', 'h2', 'h3']]
    assert [a['answer'] for a in answers] == ['H1/v', 'H2/v', 'H3/v']
    assert [a['here'] for a in answers] == [True, False, False]
    # another task (uuid) or other shared values: computed again
    run_probe({'do': 'batch', 'value': 'v'}, uuid='task-2', batch=batch)
    assert len(waves()) == 2


def test_a_host_asking_otherwise_than_the_batch_gets_its_own_answer(run_probe):
    """h2's request differs from the one h1 foresaw for it (its argument
    templated otherwise): it is served its own, in a wave of its own."""
    run_probe({'do': 'batch', 'value': 'v'}, host='h1', batch=('h1', 'h2'))

    class Other(Probe):
        def host_result(self, args, result):
            got = self.batch_answer(BatchWork('probe', ['v'], 'something else', serve_logged,
                                              foresee=lambda hosts: pytest.fail('foreseen')))
            return dict(result, answer=got.entry['answer'], here=got.here)

    out = action_of(Other, {'do': 'batch', 'value': 'v'}).run(
        task_vars={'inventory_hostname': 'h2', 'ansible_play_batch': ['h1', 'h2']})
    assert out['answer'] == 'H2/something else' and out['here'] is True
    assert waves() == [['h1', 'h2'], ['h2']]


def test_host_message_prefixes_once():
    assert _action.host_message('web1', 'boom') == 'web1: boom'
    assert _action.host_message('web1', 'web1: boom') == 'web1: boom'
    assert _action.host_message('web1', Refused('no')) == 'web1: no'


def test_host_message_shows_the_host_and_target_text_escaped():
    """A message carries a flake's host name and what Nix or a target said,
    and reaches the operator's terminal: every control, ESC, bidi control and
    line separator escaped (OSC 52 never writes the clipboard, no cursor
    move erases a line); Nix's own lines stay lines; credentials masked
    first (the mask's patterns end at a raw ESC)."""
    osc52 = '\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07'
    msg = _action.host_message('evil\n\x1b[2Kweb2', 'check said: %s\r\x1b[1A\u202eok\u2028x\n'
                               'error: https://u:pw@cache.example\x1b[0m failed' % osc52)
    assert msg == ('evil\\n\\x1b[2Kweb2: check said: \\x1b]52;c;Y3VybCBldmlsLnNofHNo\\x07'
                   '\\r\\x1b[1A\\u202eok\\u2028x\n'
                   'error: https://u:***@cache.example\\x1b[0m failed')
    assert all(not any(c in line for c in '\x1b\x07\r\u202e\u2028') for line in msg.split('\n'))
    # a message that names the host already is prefixed once, escaped or not
    assert _action.host_message('a\x1bb', 'a\x1bb: boom') == 'a\\x1bb: boom'
    assert _action.host_message('web1', NixError('nix eval failed', stderr='error: \x1b[31mbad')) \
        == 'web1: nix eval failed: error: \\x1b[31mbad'


def test_target_runs_a_rendered_program_as_ansible_sends_it(tmp_path):
    """Ansible appends ``&& sleep 0`` to the command: a program ending in a
    newline must still run (and read its stdin)."""
    import subprocess
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script

    class Shell(Probe):
        def _low_level_execute_command(self, cmd, sudoable=True, in_data=None, **_kw):
            proc = subprocess.run(['sh', '-c', cmd + ' && sleep 0'], input=in_data,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, check=False)
            return {'rc': proc.returncode, 'stdout': proc.stdout, 'stderr': proc.stderr}

    base = _script.render([], {'WHO': "it's me"})
    program = base + 'emit who "$WHO"\nemit read "$(cat)"\n'
    rc, out, _err = action_of(Shell, {'do': 'ok'}).target.sh(program, in_data='data\n')
    assert rc == 0 and _script.parse(out, base.mark)[0] == {'who': "it's me", 'read': 'data'}


# --- from_role_vars: options the task leaves unset come from the role's variables

class Settings(_action.NixdeployAction):
    """A test action of nix_activate's options that returns its validated arguments."""

    _requires_connection = False
    ROLE_VARS = _role_vars.ACTIVATE
    ARGUMENT_SPEC = _role_vars.spec(ROLE_VARS)
    PHASE = 'probe'

    def host_result(self, args, result):
        return dict(result, args=args, own=sorted(self.filled.own_options))


def run_settings(args, variables):
    from ansible.template import Templar
    task_vars = dict(variables, inventory_hostname='h1', ansible_play_batch=['h1'], hostvars={})
    action = action_of(Settings, args)
    action._templar = Templar(loader=DataLoader(), variables=task_vars)
    return action.run(task_vars=task_vars)


def test_role_vars_fill_the_options_a_task_leaves_unset():
    variables = {'nix_goal': 'boot', 'nix_confirm_timeout': '30', 'nix_platform': 'nixos'}
    out = run_settings({'from_role_vars': True}, variables)
    # validated as an argument: '30' became 30; the flag itself is not an argument
    assert out['args']['goal'] == 'boot' and out['args']['confirm_timeout'] == 30, out
    assert 'from_role_vars' not in out['args']
    # what the task sets wins; an undefined variable leaves the table's default
    assert run_settings({'from_role_vars': True, 'goal': 'switch'}, variables)['args']['goal'] \
        == 'switch'
    assert run_settings({'from_role_vars': True}, {})['args']['goal'] == 'switch'
    # without the flag, the role's variables are not read; the inventory's are
    plain = run_settings({}, variables)['args']
    assert plain['goal'] == 'switch' and plain['confirm_timeout'] == 30
    assert plain['platform'] == 'nixos'
    assert 'deprecations' not in out


def test_a_role_variable_is_templated_and_checked_as_its_argument():
    from ansible.template import trust_as_template
    variables = {'nix_goal': trust_as_template('{{ "bo" ~ "ot" }}')}
    assert run_settings({'from_role_vars': True}, variables)['args']['goal'] == 'boot'
    out = run_settings({'from_role_vars': True}, {'nix_goal': 'reboot'})
    assert out['failed'] and out['msg'].startswith('h1: ') and 'goal' in out['msg'], out


def test_a_deprecated_variable_still_fills_its_option_and_says_so():
    out = run_settings({'from_role_vars': True}, {'nix_hm_backup_extension': 'bak'})
    assert out['args']['backup_extension'] == 'bak'
    assert [d['msg'] for d in out['deprecations']] == [
        'the variable nix_hm_backup_extension is deprecated: use nix_backup_extension']
    assert out['deprecations'][0]['collection_name'] == 'nixdeploy.fleet'
    # the new name wins over the old one
    out = run_settings({'from_role_vars': True}, {'nix_hm_backup_extension': 'bak',
                                                  'nix_backup_extension': 'old'})
    assert out['args']['backup_extension'] == 'old' and 'deprecations' not in out


class EvalSettings(Settings):
    ROLE_VARS = _role_vars.EVAL
    ARGUMENT_SPEC = _role_vars.spec(ROLE_VARS)


def test_a_deprecated_option_name_still_sets_its_option_and_says_so():
    from ansible.template import Templar
    task_vars = {'inventory_hostname': 'h1', 'ansible_play_batch': ['h1'], 'hostvars': {}}
    action = action_of(EvalSettings, {'chunk_size': '3'})
    action._templar = Templar(loader=DataLoader(), variables=task_vars)
    out = action.run(task_vars=task_vars)
    assert out['args']['eval_chunk_size'] == 3 and 'chunk_size' not in out['args'], out
    assert [d['msg'] for d in out['deprecations']] == [
        'the option chunk_size is deprecated: use eval_chunk_size']


def test_per_host_options_are_each_hosts_own_when_they_come_from_its_variables():
    """The batch reads another host's own value for an option when this
    host's came from its own variable (filled, or templated from it); a value
    the task gives for all stays shared."""
    variables = {'nix_platform': 'nixos', 'nix_remote_nix_dir': '/opt/nix/bin'}
    # host_key_unchecked: a host's own opt-out, always; target_hosts: its
    # addresses, read from the inventory's variable (unset: its own all the same)
    own = ['host_key_unchecked', 'platform', 'remote_nix_dir', 'target_hosts']
    assert run_settings({}, variables)['own'] == own
    # templated from the variable: still each host's own
    assert run_settings({'platform': 'nixos'}, variables)['own'] == own
    # another value: the same for every host
    assert run_settings({'platform': 'darwin'}, variables)['own'] == [
        'host_key_unchecked', 'remote_nix_dir', 'target_hosts']


# --- record_stats: checked with the arguments, kept in a successful result

class Copy(Probe):
    """A test action of the copy phase with the option record_stats."""

    ARGUMENT_SPEC = dict(Probe.ARGUMENT_SPEC, record_stats=OPTION)
    PHASE = 'copy'
    ran = []

    def host_result(self, args, result):
        Copy.ran.append(args)
        return super(Copy, self).host_result(args, result)


def run_copy(record, variables=None):
    Copy.ran[:] = []
    task_vars = dict(variables or {}, inventory_hostname='h1', ansible_play_batch=['h1'],
                     hostvars={})
    return action_of(Copy, {'do': 'ok', 'record_stats': record}).run(task_vars=task_vars)


EVAL = {'changed': False, 'out_path': '/nix/store/x-nixos-system', 'platform': 'nixos'}


def test_record_stats_keeps_the_outcome_from_the_registered_results(run_probe):
    out = run_copy({'registered': {'eval': 'deploy_eval', 'build': 'deploy_build'},
                    'job_id': '7'}, {'deploy_eval': EVAL})
    assert out['done'] and not out.get('failed'), out
    assert Copy.ran and 'record_stats' not in Copy.ran[0]
    record = out['ansible_stats']['data']['nixdeploy']['h1']
    assert record['outcome'] == 'copied (not activated)' and record['phase'] == 'copy', record
    assert out['ansible_stats']['data']['nixdeploy_job_7'] == {'h1': record}
    # the results themselves do the same
    assert run_copy({'results': {'eval': EVAL}, 'job_id': '7'})['ansible_stats'] == out['ansible_stats']


@pytest.mark.parametrize('record, words', [
    ({'eval': 'deploy_eval'}, 'record_stats.eval'),
    ({'registered': {'activate': 'deploy_activate'}}, 'record_stats.registered.activate'),
    ({'registered': {'copy': 'deploy_copy'}}, 'record_stats.registered.copy: copy is no phase'),
    ({'results': {'eval': 'deploy_eval'}}, "'record_stats -> results'"),
    ({'registered': {'eval': 'x'}, 'results': {'build': {}}}, 'registered|results'),
    ({'registered': {'eval': 'not-a-name'}}, 'record_stats.registered.eval'),
    ({'registered': {'eval': 'note'}}, 'record_stats.registered.eval: the variable note holds'),
])
def test_a_bad_record_stats_fails_the_host_before_its_phase_runs(run_probe, record, words):
    out = run_copy(record, {'note': 'text'})
    assert out['failed'] and out['msg'].startswith('h1: '), out
    assert 'record_stats' in out['msg'] and words.split('|')[0] in out['msg'], out['msg']
    assert Copy.ran == [] and 'ansible_stats' not in out
    assert out['phase'] == 'copy' and out['connection_lost'] is False


def test_a_record_that_cannot_be_made_after_the_phase_is_a_warning(run_probe, monkeypatch):
    def broken(*_args):
        raise ValueError('odd result')
    monkeypatch.setattr(_action, 'phase_stats', broken)
    out = run_copy({'registered': {'eval': 'deploy_eval'}}, {'deploy_eval': EVAL})
    assert out['done'] and not out.get('failed') and 'ansible_stats' not in out, out
    assert out['warnings'] == ['h1: record_stats: the outcome is not kept as custom stats: odd result']


# --- host keys: the connection is asked before anything touches the host

class SshConnection:
    """Ansible's ssh connection as an action sees it (options merged from
    ansible.cfg, the environment and the host's variables)."""

    transport = 'ssh'
    _shell = SimpleNamespace(tmpdir='/nonexistent')

    def __init__(self, config, checking):
        self.options = {'host_key_checking': checking, 'ssh_args': '-C',
                        'ssh_common_args': '-F %s -o UserKnownHostsFile=/lab/known_hosts' % config,
                        'ssh_extra_args': '', 'host': '10.0.0.5', 'port': 22,
                        'remote_user': 'deploy', 'ssh_executable': 'ssh',
                        'control_path_dir': os.path.dirname(config)}

    def get_option(self, name):
        return self.options[name]

    def set_option(self, name, value):
        self.options[name] = value


class Touches(Probe):
    """An action that talks to the host over ssh: judged before host_result."""

    HOST_KEYS = True
    ran = []

    def host_result(self, args, result):
        Touches.ran.append(self.host)
        return super(Touches, self).host_result(args, result)


class Programs(Probe):
    """An action that runs a target program: judged before the first one."""

    sent = []

    def host_result(self, args, result):
        rc, _out, _err = self.target.sh('echo hello')
        return dict(result, rc=rc)

    def _low_level_execute_command(self, cmd, sudoable=True, in_data=None, **_kw):
        Programs.sent.append(cmd)
        return {'rc': 0, 'stdout': '', 'stderr': ''}


def run_over_ssh(cls, tmp_path, checking, variables=None):
    config = tmp_path / 'ssh_config'
    config.write_text('')
    task = Task.load({'action': 'probe', 'args': {'do': 'ok'}})
    task._uuid = 'task-hk'
    action = cls(task, SshConnection(str(config), checking), PlayContext(), DataLoader(), None, None)
    from ansible.template import Templar
    task_vars = dict(variables or {}, inventory_hostname='h1', ansible_play_batch=['h1'],
                     hostvars={})
    action._templar = Templar(loader=DataLoader(), variables=task_vars)
    return action.run(task_vars=task_vars)


def test_a_host_whose_key_is_not_checked_is_refused_before_anything_runs(tmp_path):
    """ansible-runner's ANSIBLE_HOST_KEY_CHECKING=False: the connection's
    host_key_checking is false; the host fails naming the fix, host_result
    never ran."""
    Touches.ran[:] = []
    out = run_over_ssh(Touches, tmp_path, False)
    assert out['failed'] and out['phase'] == 'probe' and out['connection_lost'] is False, out
    assert out['msg'].startswith('h1: refused: ssh would not check the host key of h1'), out
    assert 'ansible_host_key_checking: true' in out['msg'] and 'nix_host_key_unchecked' in out['msg']
    assert Touches.ran == [] and 'host_key_unchecked' not in out
    # checking on (ansible_host_key_checking: true beats the environment): it runs
    out = run_over_ssh(Touches, tmp_path, True)
    assert out.get('done') and Touches.ran == ['h1'] and 'host_key_unchecked' not in out, out


def test_the_opt_out_goes_on_warns_and_says_so(tmp_path):
    Touches.ran[:] = []
    out = run_over_ssh(Touches, tmp_path, False, {'nix_host_key_unchecked': True})
    assert out.get('done') and Touches.ran == ['h1'], out
    assert out['host_key_unchecked'] is True
    assert any('the host key is NOT checked' in w for w in out['warnings']), out
    # an opt-out on a host whose key is checked changes nothing
    out = run_over_ssh(Touches, tmp_path, True, {'nix_host_key_unchecked': True})
    assert 'host_key_unchecked' not in out and not out.get('warnings'), out


def test_the_first_target_program_waits_for_the_judgement(tmp_path):
    """nix_build on a target, nix_keys, nix_activate: their first program
    over the connection is where the host's key is judged."""
    Programs.sent[:] = []
    out = run_over_ssh(Programs, tmp_path, False)
    assert out['failed'] and 'refused' in out['msg'] and Programs.sent == [], out
    out = run_over_ssh(Programs, tmp_path, True)
    assert out['rc'] == 0 and len(Programs.sent) == 1, out


# ------------------------------------------------------------ role variables (issue 61)
class Phase(_action.NixdeployAction):
    """A phase of the table (activate's options) that reads the role's variables."""

    _requires_connection = False
    ARGUMENT_SPEC = dict(_role_vars.spec('activate'))
    ROLE_VARS = 'activate'
    PHASE = 'activate'
    ran = []

    def host_result(self, args, result):
        Phase.ran.append(args['goal'])
        return dict(result, goal=args['goal'])


def run_phase(tmp_path, monkeypatch, args, variables):
    from ansible.template import Templar
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    action = action_of(Phase, args)
    action._templar = Templar(loader=DataLoader(), variables=variables)
    task_vars = dict(variables, inventory_hostname='h1', ansible_play_batch=['h1'], hostvars={})
    return action.run(task_vars=task_vars)


def test_a_bad_role_variable_is_named_as_the_user_wrote_it(tmp_path, monkeypatch):
    Phase.ran[:] = []
    out = run_phase(tmp_path, monkeypatch, {'from_role_vars': True}, {'nix_goal': 'bot'})
    assert out['failed'] and out['phase'] == 'activate'
    assert out['msg'] == ("h1: nix_goal: 'bot' is not one of switch, boot, test, dry-activate "
                          "(did you mean boot?)")
    assert Phase.ran == []
    # the same value as the task's own argument: the module's option is named
    out = run_phase(tmp_path, monkeypatch, {'goal': 'bot'}, {})
    assert out['failed'] and 'nix_goal' not in out['msg'] and 'goal' in out['msg']
    # a good one reaches the phase
    out = run_phase(tmp_path, monkeypatch, {'from_role_vars': True}, {'nix_goal': 'boot'})
    assert not out.get('failed') and Phase.ran == ['boot']


def test_a_validation_message_names_the_role_variables(tmp_path, monkeypatch):
    class Copy(Phase):
        ARGUMENT_SPEC = dict(_role_vars.spec('copy'))
        ROLE_VARS = 'copy'
        VALIDATION = {'required_if': [('copy_mode', 'cache', ('signing_key',))]}
    from ansible.template import Templar
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    action = action_of(Copy, {'from_role_vars': True, 'path': '/nix/store/x'})
    action._templar = Templar(loader=DataLoader(), variables={})
    out = action.run(task_vars={'inventory_hostname': 'h1', 'ansible_play_batch': ['h1'],
                                'hostvars': {}, 'nix_copy_mode': 'cache'})
    assert out['failed']
    assert out['msg'] == ('h1: nix_copy_mode is cache but all of the following are missing: '
                          'signing_key'), out['msg']


def test_a_bug_is_this_hosts_failure_in_one_line_never_a_traceback(tmp_path, monkeypatch):
    class Buggy(Probe):
        def host_result(self, args, result):
            return {}['system']
    from ansible.utils.display import Display
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    task_vars = {'inventory_hostname': 'h1', 'ansible_play_batch': ['h1'], 'hostvars': {}}
    out = action_of(Buggy, {'do': 'ok'}).run(task_vars=task_vars)
    assert out['failed'] and out['phase'] == 'probe' and not out['connection_lost']
    assert out['msg'] == ("h1: internal error in the probe phase: KeyError: 'system'; rerun with "
                          "-vvv for the traceback")
    assert 'traceback' not in out
    # at -vvv the result carries it apart from the message
    monkeypatch.setattr(Display(), 'verbosity', 3)
    out = action_of(Buggy, {'do': 'ok'}).run(task_vars=task_vars)
    assert 'Traceback' not in out['msg'] and "return {}['system']" in out['traceback']


# ------------------------------------------------------------ templates (issue 79)
def fleet_vars(tmp_path, monkeypatch, group_vars):
    """{host: its variables as ansible-core gives a task} of a small fleet
    whose group ``bad`` (h2) has ``group_vars`` (YAML text) in
    group_vars/bad.yml; h1 and h3 are healthy."""
    from ansible.inventory.manager import InventoryManager
    from ansible.vars.manager import VariableManager
    # the checkout's ansible.cfg enables the Nix inventory alone
    monkeypatch.setattr(C, 'INVENTORY_ENABLED', ['yaml'])
    folder = tmp_path / 'inventory'
    (folder / 'group_vars').mkdir(parents=True)
    (folder / 'hosts.yml').write_text(
        'all:\n  vars:\n    nix_goal: boot\n    my_timeout: 40\n'
        '    nix_reboot_timeout: "{{ my_timeout * 10 }}"\n'
        '  children:\n    bad:\n      hosts:\n        h2: {}\n'
        '    good:\n      hosts:\n        h1: {}\n        h3: {}\n')
    (folder / 'group_vars' / 'bad.yml').write_text('---\n' + group_vars)
    loader = DataLoader()
    hosts = InventoryManager(loader=loader, sources=[str(folder / 'hosts.yml')])
    manager = VariableManager(loader=loader, inventory=hosts)
    return dict((name, manager.get_vars(host=hosts.get_host(name)))
                for name in ('h1', 'h2', 'h3')), str(folder / 'group_vars' / 'bad.yml')


def eval_check(tmp_path, monkeypatch, variables):
    """The deploy role's first phase (nix_eval, from_role_vars) on one host:
    its result, and whether anything was evaluated."""
    from ansible.template import Templar
    from ansible_collections.nixdeploy.fleet.plugins.action import nix_eval
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    evaluated = []
    monkeypatch.setattr(nix_eval.ActionModule, 'host_result',
                        lambda self, args, result: evaluated.append(self.host) or result)
    action = action_of(nix_eval.ActionModule, {'from_role_vars': True})
    task_vars = dict(variables, ansible_play_batch=['h1', 'h2', 'h3'], hostvars={})
    action._templar = Templar(loader=DataLoader(), variables=task_vars)
    return action.run(task_vars=task_vars), evaluated


@pytest.mark.parametrize('line,said', [
    # a Jinja syntax error in a variable only the activate phase reads
    ('nix_confirm_timeout: "{{ 30 + 15 }"',
     "nix_confirm_timeout: Syntax error in template: unexpected '}' (Origin: {path}:2:22); "
     "fix its template where it is set, or remove it to use the default (30)"),
    # an undefined variable (a typo) in one only the copy phase reads
    ('nix_caches: ["{{ cache_ur }}"]',
     "nix_caches: 'cache_ur' is undefined (Origin: {path}:2:14); fix its template where it is "
     "set, or remove it"),
    # templated fine, but not what the variable must be
    ('nix_confirm_timeout: "{{ 30 + 15 }} seconds"',
     "nix_confirm_timeout: '45 seconds' is not an integer"),
])
def test_a_variable_only_a_later_phase_reads_fails_its_host_before_evaluation(
        tmp_path, monkeypatch, line, said):
    fleet, path = fleet_vars(tmp_path, monkeypatch, line + '\n')
    for host in ('h1', 'h3'):
        out, evaluated = eval_check(tmp_path, monkeypatch, fleet[host])
        assert not out.get('failed') and evaluated == [host], out
    out, evaluated = eval_check(tmp_path, monkeypatch, fleet['h2'])
    assert out['failed'] and out['phase'] == 'eval', out
    assert out['msg'] == 'h2: ' + said.replace('{path}', path), out['msg']
    assert evaluated == []


def test_a_template_that_needs_what_the_role_sets_later_is_left_to_its_phase(
        tmp_path, monkeypatch):
    fleet, _path = fleet_vars(tmp_path, monkeypatch, 'nix_profile: "{{ deploy_build.profile }}"\n')
    out, evaluated = eval_check(tmp_path, monkeypatch, fleet['h2'])
    assert not out.get('failed') and evaluated == ['h2'], out
