# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every read of ansible-core's private internals, in this one file.

The collection once ran its deploy play on a strategy plugin of its own,
``nixdeploy.fleet.pipeline``, built on ansible-core's strategy internals;
ansible-core 2.21 changed them and the plugin had to go. What the collection
still needs that ansible-core keeps private is read here, one small function
each: a task's uuid and play (they key the work a play batch shares), the
loader's file read that decrypts vault in memory, a connection's
PlayContext, plugin name and ssh ControlPersist flag, a callback result's
host, task and data, the default stdout callback's last task header, a
role's path and a playbook's file name. Each says which ansible-core releases it was checked on and what it falls back to; a
public accessor comes first where ansible-core has one. When a release moves
one of these, this file is the one to fix, and
tests/unit/plugins/plugin_utils/common/test_ansible_core.py, which runs them
on real Task, Play, Block, DataLoader, connection and callback result
objects on each ansible-core the tests run on, is the test that says so.

No other file of plugins/ reads an ``_attribute`` of an ansible-core object
(tests/unit/test_layers.py checks it), with one kind of exception: what a
plugin's base class gives the subclass, read on ``self`` in that plugin (an
action's ``self._task``, ``self._loader``, ``self._templar``,
``self._connection``, ``self._play_context``, ``self._find_needle()``, a
callback's ``self._display``, an inventory plugin's
``self._read_config_data()``): ansible-core's plugin API, used so by its
own plugins. Their private fields are read here all the same
(``task_uuid(self._task)``), as is that API when another file of the
collection is handed the action (``task_of(action)``).

It lives in common/, the lowest stage, because the host stage reads the
connection's internals too (tests/unit/test_layers.py: a stage imports only
the stages below it).
"""

try:
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import (
        NixdeployError)
except ImportError:
    # imported by plugin_utils/task/_outcome.py run as a plain script: the
    # sibling file
    from _errors import NixdeployError  # pylint: disable=import-error

# the releases every function below was read against and run on (the two
# stacks the tests run on)
CHECKED = '2.19 and 2.21'

_MISSING = object()


class AnsibleCoreChanged(NixdeployError):
    """This ansible-core lacks an internal the collection reads, with no
    public way to the same value: the message names it and this file."""


def _missing(what):
    # imported here: the plain-script use of this file has no ansible
    from ansible.release import __version__
    return AnsibleCoreChanged(
        'ansible-core %s has no %s, which nixdeploy.fleet reads (checked on ansible-core %s; '
        'plugins/plugin_utils/common/_ansible_core.py is the file to update)'
        % (__version__, what, CHECKED))


def _required(obj, name, what):
    value = getattr(obj, name, _MISSING)
    if value is _MISSING:
        raise _missing(what)
    return value


# ------------------------------------------------------------ tasks and plays
def task_uuid(node):
    """The uuid of a Task, Block or Play (``_uuid``): the same in every
    worker's copy of a task, so it keys the work the hosts of a batch share.

    Checked on ansible-core 2.19 and 2.21 (set in ``Base.__init__``, kept by
    ``copy()``); no public accessor. Fallback: none, AnsibleCoreChanged."""
    return _required(node, '_uuid', '%s._uuid' % type(node).__name__)


def parent_chain(task):
    """``task``, then each object it sits in (``_parent``: blocks, an
    include's task), innermost first.

    Checked on ansible-core 2.19 and 2.21 (``Task._parent``,
    ``Block._parent``). Fallback: an object without ``_parent`` ends the
    chain."""
    node = task
    while node is not None:
        yield node
        node = getattr(node, '_parent', None)


def play_of(task):
    """The Play ``task`` belongs to, or None: ``Task.get_play()`` (public),
    else the first object of ``parent_chain`` whose ``_play`` has a uuid.

    Checked on ansible-core 2.19 and 2.21, where both ways give the same
    play. Fallback: the chain when ``get_play`` is gone or fails (a task
    without a block), None when neither finds a play."""
    get_play = getattr(task, 'get_play', None)
    if get_play is not None:
        try:
            play = get_play()
        except AttributeError:
            play = None
        if play is not None:
            return play
    for node in parent_chain(task):
        play = getattr(node, '_play', None)
        if play is not None and getattr(play, '_uuid', None):
            return play
    return None


# ------------------------------------------------------------ an action, from outside it
def task_of(action):
    """The Task an action plugin runs (``ActionBase._task``), for a file
    of the collection handed the action.

    Checked on ansible-core 2.19 and 2.21 (set in ``ActionBase.__init__``).
    Fallback: none, AnsibleCoreChanged."""
    return _required(action, '_task', 'ActionBase._task')


def loader_of(action):
    """The DataLoader of an action plugin (``ActionBase._loader``): its
    ``get_basedir()`` is where the task's relative paths start.

    Checked on ansible-core 2.19 and 2.21 (set in ``ActionBase.__init__``).
    Fallback: none, AnsibleCoreChanged."""
    return _required(action, '_loader', 'ActionBase._loader')


def other_action(action, name, task):
    """The action plugin ``name`` for ``task``, beside ``action`` (its
    connection, play context, loader and templar), as
    ansible.builtin.template runs ansible.builtin.copy
    (``ActionBase._shared_loader_obj.action_loader``).

    Checked on ansible-core 2.19 and 2.21 (set in ``ActionBase.__init__``).
    Fallback: none, AnsibleCoreChanged."""
    shared = _required(action, '_shared_loader_obj', 'ActionBase._shared_loader_obj')
    return shared.action_loader.get(
        name, task=task, connection=action._connection, play_context=action._play_context,
        loader=action._loader, templar=action._templar, shared_loader_obj=shared)


def find_needle(action, dirname, needle):
    """The path of the controller file ``needle``, searched as
    ansible.builtin.copy searches ``src``: the role's and the playbook's
    ``dirname`` folders, then theirs (``ActionBase._find_needle``); raises
    AnsibleError when none has it.

    Checked on ansible-core 2.19 and 2.21. Fallback: what ``_find_needle``
    does there, the loader's ``path_dwim_relative_stack`` over the task's
    ``get_search_path()``."""
    find = getattr(action, '_find_needle', None)
    if find is not None:
        return find(dirname, needle)
    return loader_of(action).path_dwim_relative_stack(task_of(action).get_search_path(),
                                                      dirname, needle)


def file_contents(loader, path):
    """The bytes of the controller file ``path``, vault-encrypted ones
    decrypted in memory, never into a copy on disk
    (``DataLoader._get_file_contents``); AnsibleError when it cannot be read.

    Checked on ansible-core 2.19 and 2.21. Fallback: the public
    ``get_text_file_contents`` encoded back (UTF-8 with surrogateescape
    gives back every byte it read; it warns of a file that is not UTF-8)."""
    read = getattr(loader, '_get_file_contents', None)
    if read is not None:
        content, _shown = read(path)
        return bytes(content)
    return loader.get_text_file_contents(path).encode('utf-8', 'surrogateescape')


# ------------------------------------------------------------ connections
def play_context_of(connection):
    """The PlayContext a connection plugin was made with
    (``ConnectionBase._play_context``), or None.

    Checked on ansible-core 2.19 and 2.21 (set in ``ConnectionBase.__init__``).
    Fallback: None; its readers take the connection's options first."""
    return getattr(connection, '_play_context', None)


def load_name(plugin):
    """The name the plugin loader loaded a plugin by (``_load_name``), or
    None.

    Checked on ansible-core 2.19 and 2.21 (set by ``PluginLoader``).
    Fallback: None; its readers take ``ansible_name`` or ``transport``
    first."""
    return getattr(plugin, '_load_name', None)


def ssh_persistent(connection):
    """Whether Ansible's ssh connection runs its commands over a
    ControlPersist master of its own (``Connection._persistent``, set when
    it builds a command with ControlPersist).

    Checked on ansible-core 2.19 and 2.21. Fallback: False, which
    plugin_utils/host/_host_key_judge.py reads as "no master of Ansible's":
    the connection's own ``reset()``."""
    return bool(getattr(connection, '_persistent', False))


# ------------------------------------------------------------ callbacks
def result_host(result):
    """The Host of a callback's task result: ``host`` (public since
    ansible-core 2.19), else ``_host``.

    Checked on ansible-core 2.19 and 2.21, where ``_host`` is the same
    object (to be deprecated in 2.23). Fallback: ``_host``, then
    AnsibleCoreChanged."""
    host = getattr(result, 'host', None)
    return host if host is not None else _required(result, '_host', 'TaskResult.host')


def result_task(result):
    """The Task of a callback's task result: ``task`` (public since
    ansible-core 2.19), else ``_task``.

    Checked on ansible-core 2.19 and 2.21, where ``_task`` is the same
    object (to be deprecated in 2.23). Fallback: ``_task``, then
    AnsibleCoreChanged."""
    task = getattr(result, 'task', None)
    return task if task is not None else _required(result, '_task', 'TaskResult.task')


def forget_task_banner(callback):
    """Make a stdout callback built on ``ansible.builtin.default`` print the
    next result's task header again. The default prints a header at most
    once in a row, keyed by the uuid of the task it last headed
    (``_last_task_banner``); the next ``serial`` batch runs the same tasks,
    under the same uuids, so without this its first task gets no header when
    results are what print it (skipped or ok hosts not shown).

    Checked on ansible-core 2.19 and 2.21. Fallback: nothing (a release
    without the field prints its headers its own way)."""
    if hasattr(callback, '_last_task_banner'):
        callback._last_task_banner = None


def result_dict(result):
    """The result dict a callback's task result holds, or None: 2.19's
    ``_return_data`` (the callback's copy of what the task returned, which
    ``result`` copies again, to native types), else ``result`` (public since
    2.19; the only one in 2.21), else ``_result``.

    Checked on ansible-core 2.19 and 2.21. Fallback: ``_result``, then
    None."""
    for name in ('_return_data', 'result', '_result'):
        data = getattr(result, name, None)
        if data is not None:
            return data
    return None


def role_path(role):
    """The folder a Role was loaded from, as the play named it
    (``Role._role_path``), or ''.

    Checked on ansible-core 2.19 and 2.21. Fallback: the public
    ``get_role_path()`` (the same folder with symbolic links resolved),
    then ''."""
    path = getattr(role, '_role_path', _MISSING)
    if path is _MISSING:
        get_path = getattr(role, 'get_role_path', None)
        path = get_path() if get_path is not None else None
    return path or ''


def playbook_file(playbook):
    """The file a Playbook was read from (``Playbook._file_name``), or None.

    Checked on ansible-core 2.19 and 2.21. Fallback: None (the report
    names no playbook)."""
    return getattr(playbook, '_file_name', None)


# ------------------------------------------------------------ templating
def template_error(error, value=None):
    """(text, origins) of ``error``, raised by templating ``value``:
    ansible-core's own words for it, its causes included, as ansible-core
    prints them in a failed task's message (``Syntax error in template:
    unexpected '}'``), and where ansible-core says the value and the
    template that failed come from (``file:line:column``, its ``Origin:``
    line; none for a value with no known origin, such as a dict built in
    a play).

    Checked on ansible-core 2.19 and 2.21: ``format_exception_message`` and
    the ``Origin`` tag (a value's file and line, and the failing template's,
    the error's ``obj``). Fallback: the error's own message, no origin."""
    try:
        from ansible._internal._errors._error_utils import format_exception_message
        text = format_exception_message(error)
    except Exception:  # pylint: disable=broad-except
        text = None
    if not text:
        text = u'%s' % (getattr(error, 'message', None) or error)
    origins = []
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:
        return text, origins
    found = []
    for where in (value, getattr(error, 'obj', None)):
        try:
            origin = Origin.get_tag(where) if where is not None else None
        except Exception:  # pylint: disable=broad-except
            origin = None
        if origin is None or not getattr(origin, 'path', None):
            continue
        line = (origin.path, getattr(origin, 'line_num', None))
        if found and found[-1][0] == line:
            # the same line (a list and the item in it that failed): the
            # failing template's column is the one to show
            found[-1] = (line, u'%s' % origin)
        else:
            found.append((line, u'%s' % origin))
    return text, [shown for _line, shown in found]
