"""The house by stage (docs/architecture.md), read from every plugin file:
module_utils holds only what the modules and their documentation need and
imports nothing of the controller's; plugin_utils is one folder per stage
(and its sub-packages, one level below), and each stage imports only the
stages below it; no module imports itself
back through another (no import loop); every error raised derives
from the one base (common/_errors.py); each stage's target programs live in
its own target/ folder; no platform name or copy mode is compared outside
its table (module_utils/_platforms.py, _copy_modes.py); each class name is
defined once in plugins/; a phase reads the task stage through three of its
modules only."""

import ast
import os
import sys
import warnings

from tests.collection import REPO, collections_path

sys.path.insert(0, collections_path())

PLUGINS = os.path.join(REPO, 'plugins')
PKG = 'ansible_collections.nixdeploy.fleet.plugins'
# lowest first: a stage imports the stages before it in this list, never one after it
STAGES = ('common', 'nix', 'host', 'task', 'inventory', 'evaluation', 'builds', 'copy', 'keys',
          'activation', 'publish', 'status', 'report')
# the modules' surface: argument specs, the option table (its rows, the
# judgement of a variable's value) and the options it shares, the copy
# modes, the health check kinds, the phases, platforms and goals,
# record_stats, the modules' main()
MODULE_UTILS = ('_copy_modes.py', '_health_kinds.py', '_module.py', '_options.py', '_phases.py',
                '_platforms.py', '_record_stats.py', '_role_vars.py', '_role_vars_table.py',
                '_role_vars_values.py', '_specs.py')
# what ansible-doc and ansible-test load of a module: its file, its doc
# fragments and module_utils
SURFACE = ('modules', 'doc_fragments')


def imports(path):
    """The collection's modules ``path`` imports anywhere in it, as dotted
    names below plugins/ (``plugin_utils.nix._nix``, ``module_utils._specs``)."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or '').startswith(PKG + '.'):
            module = node.module[len(PKG) + 1:]
            if module.split('.')[-1].startswith('_'):
                found.add(module)
            else:  # from <package> import _module
                found.update('%s.%s' % (module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name[len(PKG) + 1:] for alias in node.names
                         if alias.name.startswith(PKG + '.'))
    return found


def plugin_files():
    """{dotted name below plugins/: path} of every Python file of plugins/."""
    out = {}
    for folder, _dirs, names in os.walk(PLUGINS):
        for name in names:
            if name.endswith('.py'):
                rel = os.path.relpath(os.path.join(folder, name), PLUGINS)[:-3]
                out[rel.replace(os.sep, '.')] = os.path.join(folder, name)
    return out


def stage_of(module):
    """The stage a module below plugins/ belongs to: ``<stage>`` of
    ``plugin_utils.<stage>.<file>`` and of ``plugin_utils.<stage>.<sub>.<file>``
    (a stage's sub-package, evaluation/cache/ ...); None outside plugin_utils."""
    parts = module.split('.')
    return parts[1] if parts[0] == 'plugin_utils' and len(parts) in (3, 4) else None


def test_every_import_names_a_file_of_the_collection():
    files = plugin_files()
    missing = sorted('%s imports %s' % (name, module) for name, path in files.items()
                     for module in imports(path) if module not in files)
    assert missing == []


def test_plugin_utils_is_one_folder_per_stage():
    here = os.path.join(PLUGINS, 'plugin_utils')
    assert sorted(n for n in os.listdir(here) if n != '__pycache__') == \
        sorted(STAGES + ('__init__.py',))
    for stage in STAGES:
        folder = os.path.join(here, stage)
        assert os.path.isfile(os.path.join(folder, '__init__.py')), stage
        # a stage's folders are its own target programs (target/) and its
        # sub-packages, one idea each (evaluation/cache/, ...): a package of
        # its own (an __init__.py), one level deep, so a file's stage is
        # always the folder under plugin_utils/ (stage_of)
        for name in _folders(folder):
            if name == 'target':
                continue
            sub = os.path.join(folder, name)
            assert os.path.isfile(os.path.join(sub, '__init__.py')), '%s/%s' % (stage, name)
            assert _folders(sub) == [], '%s/%s' % (stage, name)


def _folders(folder):
    return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n))
                  and n != '__pycache__')


def _sh_names(path):
    """The ``*.sh`` file names a Python file names in its string constants."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    return set(node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
               and isinstance(node.value, str) and node.value.endswith('.sh')
               and '/' not in node.value and ' ' not in node.value)


# host/target/ holds the library every program starts with, nothing else
SHARED_PROGRAMS = ('lib.sh',)


def test_each_stages_target_programs_live_in_its_own_folder():
    """A program is rendered (by its file name) from one stage's Python: its
    file is in that stage's target/ folder, never in another stage's."""
    here = os.path.join(PLUGINS, 'plugin_utils')
    where = {}
    for stage in STAGES:
        folder = os.path.join(here, stage, 'target')
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.endswith('.sh'):
                    assert name not in where, '%s is in %s and %s' % (name, where.get(name), stage)
                    where[name] = stage
    assert sorted(n for n, s in where.items() if s == 'host') == list(SHARED_PROGRAMS)
    wrong, used = [], set()
    for name, path in sorted(plugin_files().items()):
        stage = stage_of(name)
        for program in _sh_names(path) & set(where):
            if stage != 'host':
                used.add(program)
            # host names every program in its table of what each emits (_program_fields)
            if stage not in (None, 'host') and where[program] not in (stage, 'host'):
                wrong.append('%s (%s) renders %s of %s/target/'
                             % (name, stage, program, where[program]))
    assert wrong == []
    # every program is rendered by some stage: none is left in a folder unused
    assert sorted(set(where) - used - set(SHARED_PROGRAMS)) == []


def test_module_utils_and_the_modules_import_only_module_utils():
    wrong = sorted('%s imports %s' % (name, module) for name, path in plugin_files().items()
                   if name.split('.')[0] in ('module_utils',) + SURFACE
                   for module in imports(path) if not module.startswith('module_utils.'))
    assert wrong == []


def test_module_utils_holds_only_what_the_modules_need():
    files = plugin_files()
    needed = set()
    todo = [m for name, path in files.items() if name.split('.')[0] in SURFACE
            for m in imports(path)]
    while todo:
        module = todo.pop()
        if module not in needed:
            needed.add(module)
            todo.extend(imports(files[module]))
    held = set(n for n in os.listdir(os.path.join(PLUGINS, 'module_utils')) if n.endswith('.py'))
    assert held == set(MODULE_UTILS)
    assert set('module_utils.%s' % n[:-3] for n in held) == needed


def test_no_stage_imports_a_stage_above_it():
    files = plugin_files()
    # every module of plugin_utils is a stage's, a sub-package's too: none
    # escapes the rule below
    assert sorted(name for name in files if name.startswith('plugin_utils.') and
                  name != 'plugin_utils.__init__' and stage_of(name) is None) == []
    wrong = []
    for name, path in sorted(files.items()):
        stage = stage_of(name)
        if stage is None:
            continue
        for module in sorted(imports(path)):
            if module.startswith('module_utils.'):
                continue
            other = stage_of(module)
            if other is None or STAGES.index(other) > STAGES.index(stage):
                wrong.append('%s (%s) imports %s (%s)' % (name, stage, module, other))
    assert wrong == []


# the stages that run a phase of the deploy (or the status read), and the
# three modules of task/ they may read: the action base, the batch work and
# the run's shared state; the rest of task/ (the batch server, the job's
# end, the progress files, the waits) is the task stage's own
PHASE_STAGES = ('evaluation', 'builds', 'copy', 'keys', 'activation', 'publish', 'status')
TASK_FACE = ('plugin_utils.task._action', 'plugin_utils.task._batch_work',
             'plugin_utils.task._run')


def test_a_phase_reads_the_task_stage_through_its_three_modules_only():
    wrong = []
    for name, path in sorted(plugin_files().items()):
        if stage_of(name) not in PHASE_STAGES:
            continue
        wrong.extend('%s imports %s' % (name, module) for module in sorted(imports(path))
                     if stage_of(module) == 'task' and module not in TASK_FACE)
    assert wrong == [], 'import it from plugin_utils/task/_run.py instead'


def _cycles(graph):
    """Each import loop of ``graph`` ({module: [modules it imports]}) once,
    as the list of modules around it (a depth-first search's back edges)."""
    found, state = [], {}
    for start in sorted(graph):
        if start in state:
            continue
        state[start] = 'open'
        path, todo = [start], [iter(graph[start])]
        while todo:
            module = next(todo[-1], None)
            if module is None:
                state[path.pop()] = 'done'
                todo.pop()
            elif state.get(module) == 'open':
                found.append(path[path.index(module):] + [module])
            elif module not in state:
                state[module] = 'open'
                path.append(module)
                todo.append(iter(graph[module]))
    return found


def test_no_import_loop():
    """No module of the collection imports itself back, through any chain,
    a function's late import included: a loop works only in one import
    order, and says two files are one."""
    files = plugin_files()
    graph = {name: sorted(m for m in imports(path) if m in files) for name, path in files.items()}
    assert [' -> '.join(cycle) for cycle in _cycles(graph)] == []
    # the search finds a loop when there is one
    assert _cycles({'a': ['b'], 'b': ['c'], 'c': ['a'], 'd': ['d']}) == \
        [['a', 'b', 'c', 'a'], ['d', 'd']]


# ---------------------------------------------------------------- one error family
ERROR_BASE = 'NixdeployError'
# what plugins may raise outside the family, and why
RAISE_ALLOWED = {
    'AnsibleParserError': "the inventory plugin's API: Ansible reports a source that fails so",
    'AnsibleFilterError': "a filter's API: Ansible reports a filter that fails so",
    'NotImplementedError': 'an abstract method',
    'AttributeError': "__getattr__'s protocol",
    'KeyError': "a mapping's protocol",
    'OSError': 'a system call that failed; the action base catches OSError with the family',
}
# module_utils imports nothing of plugin_utils (above): its ValueErrors are
# the modules' own, and the action base reads them as a bad argument
MODULE_UTILS_ALLOWED = ('ValueError',)


def _bases(tree):
    """{class name: [base names]} of the classes defined in ``tree``."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            out[node.name] = [b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                              if isinstance(b, (ast.Name, ast.Attribute))]
    return out


def _raised(tree):
    """(line, name) of each ``raise Name(...)`` / ``raise mod.Name`` of a class
    (a capitalised name; ``raise exc`` re-raises what was caught)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = target.id if isinstance(target, ast.Name) else \
                target.attr if isinstance(target, ast.Attribute) else None
            if name and name[0].isupper():
                yield node.lineno, name


def _trees():
    for name, path in sorted(plugin_files().items()):
        with open(path) as handle:
            yield name, ast.parse(handle.read(), path)


def test_every_error_class_derives_from_the_base():
    bases = {}
    for _name, tree in _trees():
        bases.update(_bases(tree))

    def family(cls, seen=()):
        return cls == ERROR_BASE or any(family(b, seen + (cls,)) for b in bases.get(cls, ())
                                        if b not in seen)

    errors = [cls for cls, parents in bases.items()
              if any(p in ('Exception', 'ValueError', 'TypeError') for p in parents)
              and cls != ERROR_BASE]
    assert errors, 'no error class found: the check reads nothing'
    assert sorted(cls for cls in errors if not family(cls)) == []


def test_every_raise_in_plugins_raises_the_family():
    bases = {}
    trees = list(_trees())
    for _name, tree in trees:
        bases.update(_bases(tree))

    def family(cls):
        return cls == ERROR_BASE or any(family(b) for b in bases.get(cls, ()))

    wrong = []
    for name, tree in trees:
        for line, cls in _raised(tree):
            if family(cls) or cls in RAISE_ALLOWED:
                continue
            if name.startswith('module_utils.') and cls in MODULE_UTILS_ALLOWED:
                continue
            wrong.append('%s:%d raises %s' % (name, line, cls))
    assert wrong == []


# ---------------------------------------------------------------- tables, not lists
def _platform_words():
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms  # noqa: E402
    return set(_platforms.PLATFORMS) | set(_platforms.GROUP_NAMES.values())


def _constants(node):
    """The string constants of a comparison operand (a tuple, list or set of them too)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [v for elt in node.elts for v in _constants(elt)]
    return []


def _compared(words, table):
    """'file:line compares word' for each comparison with one of ``words``
    in plugins/ outside the file ``table``."""
    wrong = []
    for name, tree in _trees():
        if name == table:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                said = [w for operand in [node.left] + node.comparators
                        for w in _constants(operand) if w in words]
                if said:
                    wrong.append('%s:%d compares %s' % (name, node.lineno, ', '.join(said)))
    return wrong


def test_no_platform_name_is_compared_outside_the_platform_table():
    """Platform differences are the table's data (module_utils/_platforms.py):
    a file that tests ``platform == 'nixos'`` misses the next platform."""
    assert _compared(_platform_words(), 'module_utils._platforms') == []


def test_no_copy_mode_is_compared_outside_the_copy_mode_table():
    """What differs between copy modes is a field of their rows
    (module_utils/_copy_modes.py): a file that tests ``mode == 'cache'``
    misses the next mode that fetches from caches."""
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _copy_modes  # noqa: E402
    assert len(_copy_modes.NAMES) >= 4
    assert _compared(set(_copy_modes.NAMES), 'module_utils._copy_modes') == []


# ---------------------------------------------------------------- each class name once
# The class each plugin type's file must define, by the name Ansible loads it
# by (one in every file of that folder: those repeat by design)
ANSIBLE_CLASSES = {'action': 'ActionModule', 'become': 'BecomeModule', 'cache': 'CacheModule',
                   'callback': 'CallbackModule', 'connection': 'Connection',
                   'doc_fragments': 'ModuleDocFragment', 'filter': 'FilterModule',
                   'inventory': 'InventoryModule', 'lookup': 'LookupModule',
                   'strategy': 'StrategyModule', 'test': 'TestModule', 'vars': 'VarsModule'}


def test_each_class_name_is_defined_once_in_plugins():
    """A class name says which class it is: two ``CascadeCopy`` (or two
    ``Host``) make a reader, a grep and a traceback guess."""
    where = {}
    for name, tree in _trees():
        folder = name.split('.')[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and not (
                    name.count('.') == 1 and ANSIBLE_CLASSES.get(folder) == node.name):
                where.setdefault(node.name, []).append(name)
    # the check reads what it must: the collection's classes are found
    assert len(where) > 50
    twice = dict((cls, sorted(names)) for cls, names in where.items() if len(names) > 1)
    assert twice == {}


# ---------------------------------------------------------------- one way to run a program
# The only runners of a program on a target: the Host's ``sh``, which puts a
# time limit on every call, and the activation's session over it, which also
# reads what the program reported. Nothing takes a runner of its own
# (a ``run_sh`` callable) or wraps ``sh`` in another signature.
RUNNERS = {('plugin_utils.host._host', 'Host.sh'),
           ('plugin_utils.activation._activation_task', 'HostSession.sh')}


def _defs(tree):
    """(qualified name, function node) of every function in ``tree``."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, prefix + child.name + '.')
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + '.')
            else:
                yield from walk(child, prefix)
    return walk(tree, '')


def _runner_name(name):
    return name == 'sh' or name.endswith('_sh')


def test_a_program_on_a_host_runs_only_through_host_sh():
    runners, takers = set(), []
    for name, tree in _trees():
        for qualified, node in _defs(tree):
            if _runner_name(qualified.rsplit('.', 1)[-1]):
                runners.add((name, qualified))
            args = node.args
            takers.extend('%s %s takes %s' % (name, qualified, arg.arg)
                          for arg in args.posonlyargs + args.args + args.kwonlyargs
                          if _runner_name(arg.arg))
        for node in ast.walk(tree):
            if isinstance(node, ast.Lambda):
                takers.extend('%s:%d a lambda takes %s' % (name, node.lineno, arg.arg)
                              for arg in node.args.args if _runner_name(arg.arg))
    assert runners == RUNNERS
    assert takers == []


# ---------------------------------------------------------------- ansible-core's internals
ADAPTER = 'plugin_utils.common._ansible_core'
# Read on ``self``, a private attribute is a plugin's base class API (an
# action's self._task, self._loader, self._connection, self._find_needle(); a
# callback's self._display; an inventory plugin's self._read_config_data()):
# allowed, except these, which only a subclass of a Task, a Block, a Play, a
# DataLoader, a task result or a strategy would read on self
INTERNALS_ON_SELF = ('_uuid', '_parent', '_play', '_role_path', '_file_name',
                     '_get_file_contents', '_return_data', '_load_name', '_persistent',
                     '_variable_manager', '_shared_loader_obj', '_tqm')
# private attributes of the collection's own objects, read on another name
# than self: the Host that Host's classmethods make (host/_host.py)
OWN = {('plugin_utils.host._host', 'target._execute'), ('plugin_utils.host._host', 'target._before'),
       ('plugin_utils.host._host', 'target._pending'),
       ('plugin_utils.host._host', 'target._judged_on')}


def _private(name):
    return name.startswith('_') and not name.startswith('__')


def _imported_from(tree):
    """{name bound by an import in ``tree``: the module it comes from}."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out[(alias.asname or alias.name).split('.')[0]] = alias.name
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                out[alias.asname or alias.name] = node.module or ''
    return out


def _ansible_module(module):
    return module == 'ansible' or module.startswith('ansible.')


def _private_reads(tree):
    """(line, receiver, attribute) of each private attribute read of
    ``tree``: ``x._name``, and ``getattr``/``hasattr``/``setattr``/
    ``delattr`` with the name as a string."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            yield node.lineno, node.value, node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ('getattr', 'hasattr', 'setattr', 'delattr') and \
                len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and \
                isinstance(node.args[1].value, str) and _private(node.args[1].value):
            yield node.lineno, node.args[0], node.args[1].value


def ansible_core_internals(name, tree):
    """What ``tree`` (the plugin file ``name``) may read of ansible-core's
    internals: (line, ``receiver.attribute`` or ``imports module``)."""
    imported = _imported_from(tree)
    found = []
    for node in ast.walk(tree):
        module = node.module if isinstance(node, ast.ImportFrom) else None
        modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [module] if module else []
        found.extend((node.lineno, 'imports %s' % m) for m in modules
                     if _ansible_module(m) and any(_private(p) for p in m.split('.')))
    for line, receiver, attr in _private_reads(tree):
        if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name) and \
                receiver.func.id == 'super':
            receiver = ast.Name(id='self')
        if isinstance(receiver, ast.Name):
            if receiver.id in ('self', 'cls'):
                if attr not in INTERNALS_ON_SELF:
                    continue
            elif receiver.id in imported and not _ansible_module(imported[receiver.id]):
                continue  # a module of the collection's or Python's (os._exit)
        found.append((line, '%s.%s' % (ast.unparse(receiver), attr)))
    return found


def test_ansible_core_internals_are_read_in_one_file():
    """Every read of a private attribute of an ansible-core object (a Task's
    _uuid, a DataLoader's _get_file_contents, a callback result's _task, a
    connection's _play_context ...) and every import of a private module of
    ansible-core is in plugin_utils/common/_ansible_core.py: when a release
    of ansible-core moves one, that file is the one to fix (its test,
    tests/unit/plugins/plugin_utils/common/test_ansible_core.py, runs it on
    real objects of each ansible-core the tests run on)."""
    trees = dict(_trees())
    # the check reads what it must: the adapter's own reads are found
    assert len(ansible_core_internals(ADAPTER, trees[ADAPTER])) >= 10
    found = [(name, said, line) for name, tree in sorted(trees.items()) if name != ADAPTER
             for line, said in ansible_core_internals(name, tree)]
    assert ['%s:%d %s' % (name, line, said) for name, said, line in found
            if (name, said) not in OWN] == []
    # each exception is still needed
    assert set((name, said) for name, said, _line in found) >= OWN


# Ansible's variables that say where a host is reached (plugin_utils/host/
# _host.py CONNECTION_VARS), and the probe's list of a host's addresses
CONNECTION_NAMES = ('ansible_host', 'ansible_ssh_host', 'ansible_port', 'ansible_ssh_port',
                    'ansible_user', 'ansible_ssh_user', 'ansible_remote_user',
                    'ansible_ssh_private_key_file', 'ansible_private_key_file',
                    'ansible_ssh_common_args', 'ansible_ssh_extra_args')
# who may name them: the one reader (a Host is built there, from a task's
# connection or another host's variables), and the inventory, which sets them
CONNECTION_READER = 'plugin_utils.host._host'
CONNECTION_WRITERS = ('plugin_utils.inventory.',)


def test_where_a_host_is_reached_is_read_in_one_place():
    """One connection a host: every path that opens ssh (Ansible's own
    connection, nix copy, the activation and its confirmation, builders, the
    cascade's hops) takes a ``Host``, built in plugin_utils/host/_host.py
    from Ansible's variables, at the address the login probe reached
    (plugin_utils/host/_probe.py). No other plugin file reads a connection
    variable by name: a new way to reach a host is a row of CONNECTION_VARS."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (
        CONNECTION_VARS)
    assert sorted(n for _field, names in CONNECTION_VARS for n in names) == \
        sorted(CONNECTION_NAMES)
    found = []
    for name, path in sorted(plugin_files().items()):
        if name == CONNECTION_READER or name.startswith(CONNECTION_WRITERS) or \
                name.startswith(('modules.', 'doc_fragments.')):
            continue
        with open(path) as handle:
            tree = ast.parse(handle.read(), path)
        found.extend('%s:%d %s' % (name, node.lineno, node.value) for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and node.value in CONNECTION_NAMES)
    assert found == []
    # the reader reads them through its table only
    with open(plugin_files()[CONNECTION_READER]) as handle:
        tree = ast.parse(handle.read())
    named = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and node.value in CONNECTION_NAMES]
    assert sorted(named) == sorted(CONNECTION_NAMES)


# the most lines a file of code in plugins/ (Python, the target programs'
# shell, Nix, templates) should have; the modules' files are mostly their
# documentation (DOCUMENTATION, EXAMPLES, RETURN) and may be longer. It is a
# warning sign, never a reason to cut a class across files: a Python file
# over it that holds one class (its whole idea) only warns, up to
# MOST_LINES_ONE_CLASS; any other file over it fails.
MOST_LINES = 400
MOST_LINES_ONE_CLASS = 600
CODE = ('.py', '.sh', '.nix', '.j2')


def _top_level_classes(path):
    with open(path, encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def test_no_file_of_code_in_plugins_is_over_the_limit():
    over, one_class = [], []
    for folder, _dirs, names in os.walk(PLUGINS):
        for name in names:
            path = os.path.join(folder, name)
            modules = os.path.join(PLUGINS, 'modules')
            if not name.endswith(CODE) or os.path.dirname(path) == modules:
                continue
            with open(path, encoding='utf-8') as handle:
                count = sum(1 for _line in handle)
            if count <= MOST_LINES:
                continue
            shown = (os.path.relpath(path, REPO), count)
            if name.endswith('.py') and count <= MOST_LINES_ONE_CLASS and \
                    len(_top_level_classes(path)) == 1:
                one_class.append(shown)
            else:
                over.append(shown)
    if one_class:
        warnings.warn('files over %d lines, each one class: %s' % (MOST_LINES, one_class))
    assert over == [], "split these files by idea (at most %d lines each, or one class in " \
        "at most %d): %s" % (MOST_LINES, MOST_LINES_ONE_CLASS, over)


# ---------------------------------------------------------------- split by idea, not by size
# The collection's classes a class of another file may derive from, and why
INHERIT_ALLOWED = {
    ('action', 'NixdeployAction'): "Ansible loads an action plugin's ActionModule, an "
    "ActionBase whose run is the entry: the frame every action shares (task/_action.py) is "
    "that ActionBase, as ansible-core's and other collections' shared action bases are",
}


def _error_types(bases):
    """The names of ``bases`` ({class: [base names]}) that are exceptions:
    they derive, through any chain, from Python's exception classes."""
    roots = ('BaseException', 'Exception', 'ValueError', 'TypeError', 'KeyError', 'OSError',
             'RuntimeError', 'AnsibleError')

    def is_error(cls, seen=()):
        return cls in roots or any(is_error(b, seen + (cls,)) for b in bases.get(cls, ())
                                   if b not in seen)
    return set(cls for cls in bases if is_error(cls))


def _inherited_from_other_files(name, tree):
    """(class, base, file the base is defined in) of each class of ``tree``
    (the plugin file ``name``) whose base is imported from another file of
    plugins/: by its name (``from ..._batch_files import BatchHosts``) or
    through its module (``_health_checks.Watch``)."""
    prefix = PKG + '.'
    names, modules = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or '').startswith(prefix):
            module = node.module[len(prefix):]
            for alias in node.names:
                if module.split('.')[-1].startswith('_'):
                    names[alias.asname or alias.name] = module
                else:  # from <package> import _module
                    modules[alias.asname or alias.name] = '%s.%s' % (module, alias.name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in names:
                yield node.name, base.id, names[base.id]
            elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and \
                    base.value.id in modules:
                yield node.name, base.attr, modules[base.value.id]


def test_no_class_derives_from_a_class_of_another_file():
    """A class is read in one file: one that derives from a class of another
    file of plugins/ (a mixin, a base holding half of its ``self``) is one
    idea spread over two files; it holds the other object instead (given or
    made, kept as an attribute, called by name). Bases of ansible-core and
    of Python are not the collection's and are fine. So are exception
    classes: an error type shared across files (``NixdeployError`` and its
    family) is a type a caller catches, not a class split over files.
    INHERIT_ALLOWED names the rest, each with its reason."""
    trees = list(_trees())
    bases = {}
    for _name, tree in trees:
        bases.update(_bases(tree))
    errors = _error_types(bases)
    assert ERROR_BASE in errors, 'no error class found: the check reads nothing'
    found, allowed = [], set()
    for name, tree in trees:
        for cls, base, where in _inherited_from_other_files(name, tree):
            key = (name.split('.')[0], base)
            if base in errors:
                continue
            if key in INHERIT_ALLOWED:
                allowed.add(key)
                continue
            found.append('%s: %s(%s) of %s' % (name, cls, base, where))
    assert found == []
    # each exception is still needed
    assert allowed == set(INHERIT_ALLOWED)


# the most lines a function or method of plugins/ has, its docstring counted
MOST_FUNCTION_LINES = 60


def test_no_function_in_plugins_is_over_sixty_lines():
    """A long function is several steps in one body: each step is a named
    function of its own, and the function reads as its steps."""
    over = []
    for name, path in sorted(plugin_files().items()):
        with open(path) as handle:
            tree = ast.parse(handle.read(), path)
        for qualified, node in _defs(tree):
            lines = node.end_lineno - node.lineno + 1
            if lines > MOST_FUNCTION_LINES:
                over.append('%s:%s %d' % (os.path.relpath(path, REPO), qualified, lines))
    assert over == []
