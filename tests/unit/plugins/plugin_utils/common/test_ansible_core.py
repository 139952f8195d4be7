"""ansible-core's internals the collection reads, on this ansible-core
(plugin_utils/common/_ansible_core.py): every function of the adapter run on
real objects, built by ansible-core's own loaders (a Play from Play.load,
its blocks and tasks, a DataLoader on files of a tmp folder, the ssh
connection plugin) or handed over by ansible-playbook itself (a task in a
worker, a callback's task result, the playbook and the play's roles). Run
on each ansible-core the tests run on (this machine's and the current stack,
tests/stack/tree.sh): when a release renames an internal, this file fails
there, naming the function to fix."""

import json
import os
import sys
import textwrap
from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleError
from ansible.inventory.host import Host
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible.playbook.block import Block
from ansible.playbook.play import Play
from ansible.playbook.play_context import PlayContext
from ansible.plugins.action import ActionBase
from ansible.plugins.callback.default import CallbackModule as DefaultCallback
from ansible.plugins.loader import connection_loader
from ansible.vars.manager import VariableManager

from tests.collection import run_playbook, collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import (  # noqa: E402
    _ansible_core)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run  # noqa: E402

# a key that is no text: bytes that are not UTF-8, a NUL, a newline
KEY = b'\x00\xffkey\xfe\n'
PASSWORD = b'not a secret'

PLAY = {
    'name': 'probe', 'hosts': 'all', 'gather_facts': False,
    'tasks': [
        {'name': 'top', 'debug': {'msg': 'x'}},
        {'block': [{'name': 'in a block', 'debug': {}},
                   {'block': [{'name': 'two blocks down', 'debug': {}}]}],
         'rescue': [{'name': 'rescue', 'debug': {}}]},
    ],
    'handlers': [{'name': 'a handler', 'debug': {}}],
}


def _tasks(blocks):
    """Every task of ``blocks``, nested blocks opened."""
    for item in blocks:
        if isinstance(item, Block):
            yield from _tasks(item.block + item.rescue + item.always)
        else:
            yield item


@pytest.fixture
def play():
    loader = DataLoader()
    return Play.load(PLAY, variable_manager=VariableManager(loader=loader), loader=loader)


def _named(play):
    """{task name: task} of the play as the strategy runs it (compiled:
    its implicit flush_handlers tasks too) and its handlers."""
    return dict((task.get_name(), task) for task in _tasks(play.compile() + play.handlers))


# ------------------------------------------------------------ tasks and plays
def test_a_task_uuid_is_its_own_and_kept_by_a_workers_copy(play):
    tasks = list(_named(play).values())
    uuids = [_ansible_core.task_uuid(task) for task in tasks]
    assert all(isinstance(u, str) and u for u in uuids)
    assert len(set(uuids)) == len(tasks)
    # a worker runs a copy: the batch it keys is the same
    assert [_ansible_core.task_uuid(task.copy()) for task in tasks] == uuids
    assert _ansible_core.task_uuid(play) not in uuids


def test_every_task_finds_its_play_by_either_way(play):
    for name, task in _named(play).items():
        assert _ansible_core.play_of(task) is play, name
        assert _ansible_core.play_of(task.copy()) is play, name
        assert task.get_play() is play, name  # the public way, taken first
        chain = list(_ansible_core.parent_chain(task))
        assert chain[0] is task and isinstance(chain[1], Block), name
        # without get_play (the fallback): the blocks' own _parent and _play
        assert _ansible_core.play_of(SimpleNamespace(_parent=task._parent)) is play, name


def test_the_batch_keys_of_a_play_are_its_uuid(play):
    for task in _named(play).values():
        assert _run.play_uuid(task) == _ansible_core.task_uuid(play)
    # a task of no play keys by its own uuid
    lone = SimpleNamespace(_uuid='lone', _parent=None)
    assert _run.play_uuid(lone) == 'lone'


def test_a_missing_uuid_names_the_adapter():
    with pytest.raises(_ansible_core.AnsibleCoreChanged) as caught:
        _ansible_core.task_uuid(SimpleNamespace())
    assert '_ansible_core.py' in str(caught.value) and 'SimpleNamespace._uuid' in str(caught.value)


# ------------------------------------------------------------ files
@pytest.fixture
def files(tmp_path):
    vault = VaultLib([('default', VaultSecret(PASSWORD))])
    (tmp_path / 'plain.key').write_bytes(KEY)
    (tmp_path / 'vaulted.key').write_bytes(vault.encrypt(KEY))
    loader = DataLoader()
    loader.set_basedir(str(tmp_path))
    loader.set_vault_secrets([('default', VaultSecret(PASSWORD))])
    return loader, tmp_path


def test_file_contents_are_the_bytes_vault_decrypted_in_memory(files):
    loader, folder = files
    # the first way (the fallback below reads text and warns of bytes that are not)
    assert callable(getattr(loader, '_get_file_contents', None))
    before = sorted(os.listdir(str(folder)))
    assert _ansible_core.file_contents(loader, str(folder / 'plain.key')) == KEY
    assert _ansible_core.file_contents(loader, str(folder / 'vaulted.key')) == KEY
    # relative to the loader's base dir, as a task's src is
    assert _ansible_core.file_contents(loader, 'vaulted.key') == KEY
    assert sorted(os.listdir(str(folder))) == before  # no decrypted copy on disk
    with pytest.raises(AnsibleError):
        _ansible_core.file_contents(loader, str(folder / 'missing.key'))


def test_file_contents_falls_back_to_the_public_text_read(files):
    loader, folder = files
    public = SimpleNamespace(get_text_file_contents=loader.get_text_file_contents)
    assert _ansible_core.file_contents(public, str(folder / 'vaulted.key')) == KEY


def test_find_needle_falls_back_to_what_ansible_core_does(files, play):
    loader, folder = files
    (folder / 'files').mkdir()
    (folder / 'files' / 'id.key').write_bytes(KEY)
    task = _named(play)['top']
    # the first way, an action's own (the real run below takes it)
    assert callable(getattr(ActionBase, '_find_needle', None))
    action = SimpleNamespace(_loader=loader, _task=task)
    assert _ansible_core.find_needle(action, 'files', 'id.key') == str(folder / 'files' / 'id.key')
    with pytest.raises(AnsibleError):
        _ansible_core.find_needle(action, 'files', 'missing.key')


# ------------------------------------------------------------ connections
def test_the_ssh_connection_s_context_name_and_master(tmp_path):
    context = PlayContext()
    context.remote_addr = '10.0.0.5'
    connection = connection_loader.get('ssh', context, None)
    assert _ansible_core.play_context_of(connection) is context
    assert _ansible_core.load_name(connection) in ('ssh', 'ansible.builtin.ssh')
    connection.set_options(var_options={'ansible_host': '10.0.0.5'},
                           direct={'ssh_args': '-o ControlMaster=auto -o ControlPersist=60s',
                                   'control_path_dir': str(tmp_path / 'cp')})
    assert _ansible_core.ssh_persistent(connection) is False  # no command yet
    connection._build_command('ssh', 'ssh', '10.0.0.5', 'true')  # pylint: disable=protected-access
    assert _ansible_core.ssh_persistent(connection) is True
    assert connection.control_path  # what drop_master reads with it
    # without ControlPersist: no master of Ansible's
    connection = connection_loader.get('ssh', context, None)
    connection.set_options(direct={'ssh_args': '-o ControlMaster=no'})
    connection._build_command('ssh', 'ssh', '10.0.0.5', 'true')  # pylint: disable=protected-access
    assert _ansible_core.ssh_persistent(connection) is False


def test_a_connection_without_the_internals_gets_the_fallbacks():
    bare = SimpleNamespace()
    assert _ansible_core.play_context_of(bare) is None
    assert _ansible_core.load_name(bare) is None
    assert _ansible_core.ssh_persistent(bare) is False


# ------------------------------------------------------------ callbacks
def test_a_result_without_public_accessors_reads_the_private_ones():
    host, task = Host('web1'), object()
    old = SimpleNamespace(_host=host, _task=task, _result={'changed': True})
    assert _ansible_core.result_host(old) is host
    assert _ansible_core.result_task(old) is task
    assert _ansible_core.result_dict(old) == {'changed': True}
    assert _ansible_core.result_dict(SimpleNamespace()) is None
    with pytest.raises(_ansible_core.AnsibleCoreChanged):
        _ansible_core.result_host(SimpleNamespace())


def test_a_default_callback_forgets_the_task_it_headed(play):
    """The stdout callback ``default`` keeps the task it printed a header
    for; forgotten, the same task (the next serial batch's) gets one again."""
    callback = DefaultCallback()
    assert hasattr(callback, '_last_task_banner'), 'the default no longer keeps it'
    callback._last_task_banner = _named(play)['top']._uuid
    _ansible_core.forget_task_banner(callback)
    assert callback._last_task_banner is None
    # an object without the field is left as it is
    other = SimpleNamespace()
    _ansible_core.forget_task_banner(other)
    assert vars(other) == {}


def test_role_path_and_playbook_file_fall_back():
    assert _ansible_core.role_path(SimpleNamespace(get_role_path=lambda: '/r/deploy')) == \
        '/r/deploy'
    assert _ansible_core.role_path(SimpleNamespace(_role_path=None)) == ''
    assert _ansible_core.role_path(SimpleNamespace()) == ''
    assert _ansible_core.playbook_file(SimpleNamespace()) is None


# ------------------------------------------------------------ a real run
ACTION = '''
from ansible.plugins.action import ActionBase
from ansible.plugins.callback.default import CallbackModule as DefaultCallback
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _ansible_core as core


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task, loader = core.task_of(self), core.loader_of(self)
        found = core.find_needle(self, 'files', task.args['src'])
        play = core.play_of(task)
        other = core.other_action(self, 'ansible.builtin.debug', task.copy())
        result.update(
            other_action=type(other).__module__,
            other_shares=other._connection is self._connection and other._loader is loader,
            task_is_its=task is self._task, loader_is_its=loader is self._loader,
            task_uuid=core.task_uuid(task), play_uuid=core.task_uuid(play),
            found=found, content=core.file_contents(loader, found).hex(),
            base_dir=loader.get_basedir(),
            play_context=type(core.play_context_of(self._connection)).__name__,
            remote_addr=core.play_context_of(self._connection).remote_addr,
            load_name=core.load_name(self._connection))
        return result
'''

CALLBACK = '''
import json
import os

from ansible.plugins.callback import CallbackBase
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _ansible_core as core


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'probe'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.seen = {'started': {}, 'results': []}

    def v2_playbook_on_start(self, playbook):
        self.seen['playbook'] = core.playbook_file(playbook)

    def v2_playbook_on_play_start(self, play):
        self.seen['play'] = core.task_uuid(play)
        self.seen['roles'] = [core.role_path(role) for role in play.get_roles()]
        self.seen['roles_first_way'] = all(
            core.role_path(role) == getattr(role, '_role_path', None) for role in play.get_roles())

    def v2_runner_on_start(self, host, task):
        self.seen['started'][task.get_name()] = core.task_uuid(task)

    def v2_runner_on_ok(self, result):
        task = core.result_task(result)
        self.seen['results'].append({
            'host': core.result_host(result).get_name(), 'task': task.get_name(),
            'task_uuid': core.task_uuid(task), 'data': dict(core.result_dict(result)),
            'public': core.result_host(result) is result.host and task is result.task
            and core.result_dict(result) in (getattr(result, '_return_data', None),
                                             result.result)})

    def v2_playbook_on_stats(self, stats):
        with open(os.environ['PROBE_OUT'], 'w') as handle:
            json.dump(self.seen, handle, default=str)
'''


def test_a_real_run_hands_the_internals_over(tmp_path):
    """ansible-playbook's own objects: the action's task in a worker, the
    callback's results, play, roles and playbook; the same task and play
    uuids on either side (the batch keys of every worker agree)."""
    vault = VaultLib([('default', VaultSecret(PASSWORD))])
    for folder in ('action_plugins', 'callback_plugins', 'files',
                   'roles/probe_role/tasks', 'roles/probe_role/files'):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / 'action_plugins' / 'probe_internals.py').write_text(ACTION)
    (tmp_path / 'callback_plugins' / 'probe.py').write_text(CALLBACK)
    (tmp_path / 'files' / 'play.key').write_bytes(vault.encrypt(KEY))
    (tmp_path / 'roles/probe_role/files/role.key').write_bytes(KEY)
    (tmp_path / 'roles/probe_role/tasks/main.yml').write_text(textwrap.dedent('''\
        - name: in the role
          probe_internals: {src: role.key}
        '''))
    (tmp_path / 'password').write_bytes(PASSWORD)
    playbook = tmp_path / 'probe.yml'
    playbook.write_text(textwrap.dedent('''\
        - hosts: all
          gather_facts: false
          roles: [probe_role]
          tasks:
            - name: in the play
              probe_internals: {src: play.key}
        '''))
    out = tmp_path / 'seen.json'
    run = run_playbook(str(playbook), {'all': {'hosts': {'localhost': {
        'ansible_connection': 'local'}}}}, str(tmp_path / 'run'), env={
            'ANSIBLE_ACTION_PLUGINS': str(tmp_path / 'action_plugins'),
            'ANSIBLE_CALLBACK_PLUGINS': str(tmp_path / 'callback_plugins'),
            'ANSIBLE_CALLBACKS_ENABLED': 'probe',
            'ANSIBLE_VAULT_PASSWORD_FILE': str(tmp_path / 'password'),
            'PROBE_OUT': str(out)})
    assert run.rc == 0, run
    seen = json.loads(out.read_text())
    assert seen['playbook'] == str(playbook)
    assert seen['roles'] == [str(tmp_path / 'roles' / 'probe_role')]
    # the first way (get_role_path() resolves symbolic links: a collection's
    # role, installed through one, would no longer be seen as the collection's)
    assert seen['roles_first_way']
    results = dict((r['task'], r) for r in seen['results'])
    assert sorted(results) == ['in the play', 'probe_role : in the role']
    where = {'in the play': tmp_path / 'files' / 'play.key',
             'probe_role : in the role': tmp_path / 'roles/probe_role/files/role.key'}
    for name, result in results.items():
        data = result['data']
        assert result['host'] == 'localhost' and result['public'], name
        # the task the worker ran is the one the callback is told of
        assert data['task_uuid'] == result['task_uuid'] == seen['started'][name], name
        assert data['play_uuid'] == seen['play'], name
        assert data['task_is_its'] and data['loader_is_its'], name
        # another action beside this one, as template runs copy
        assert data['other_action'].endswith('debug') and data['other_shares'], name
        # the connection's own context (the task's is another object)
        assert (data['play_context'], data['remote_addr']) == ('PlayContext', 'localhost'), name
        assert data['load_name'] in ('local', 'ansible.builtin.local'), name
        assert data['base_dir'] == str(tmp_path), name
        assert os.path.realpath(data['found']) == os.path.realpath(str(where[name])), name
        assert bytes.fromhex(data['content']) == KEY, name


def test_every_function_says_where_it_was_checked_and_its_fallback():
    public = [name for name in dir(_ansible_core) if not name.startswith('_')
              and callable(getattr(_ansible_core, name))
              and getattr(getattr(_ansible_core, name), '__module__', '') == _ansible_core.__name__
              and not isinstance(getattr(_ansible_core, name), type)]
    assert len(public) >= 10
    for name in public:
        doc = getattr(_ansible_core, name).__doc__ or ''
        assert 'Checked on ansible-core' in doc and 'Fallback' in doc, name
