"""The house by stage (docs/architecture.md), read from every plugin file:
module_utils holds only what the modules and their documentation need and
imports nothing of the controller's; plugin_utils is one folder per stage,
and each stage imports only the stages below it; every error raised derives
from the one base (common/_errors.py); each stage's target programs live in
its own target/ folder; no platform name is compared outside the platform
table (module_utils/_platforms.py)."""

import ast
import os
import sys

from tests.collection import REPO, collections_path

sys.path.insert(0, collections_path())

PLUGINS = os.path.join(REPO, 'plugins')
PKG = 'ansible_collections.nixdeploy.fleet.plugins'
# lowest first: a stage imports the stages before it in this list, never one after it
STAGES = ('common', 'nix', 'host', 'task', 'inventory', 'evaluation', 'builds', 'copy', 'keys',
          'activation', 'publish', 'report')
# the modules' surface: argument specs, the option table and the options it
# shares, the health check kinds, the phases, platforms and goals,
# record_stats, the modules' main()
MODULE_UTILS = ('_health_kinds.py', '_module.py', '_options.py', '_phases.py', '_platforms.py',
                '_record_stats.py', '_role_vars.py', '_specs.py')
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
    parts = module.split('.')
    return parts[1] if parts[0] == 'plugin_utils' and len(parts) == 3 else None


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
        # one level: the stage's own target programs (target/) are the only
        # folder in a stage
        assert sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n))
                      and n != '__pycache__') in (['target'], []), stage


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
    wrong = []
    for name, path in sorted(plugin_files().items()):
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


def test_no_platform_name_is_compared_outside_the_platform_table():
    """Platform differences are the table's data (module_utils/_platforms.py):
    a file that tests ``platform == 'nixos'`` misses the next platform."""
    words = _platform_words()
    wrong = []
    for name, tree in _trees():
        if name == 'module_utils._platforms':
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                said = [w for operand in [node.left] + node.comparators
                        for w in _constants(operand) if w in words]
                if said:
                    wrong.append('%s:%d compares %s' % (name, node.lineno, ', '.join(said)))
    assert wrong == []


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
