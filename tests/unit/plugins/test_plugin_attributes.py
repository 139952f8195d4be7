"""No plugin of the collection keeps its own data under a name that
ansible-core's base classes keep too.

ansible-core keeps its own state on the plugin object, and sets some of it
after the plugin's ``__init__``: ``set_options`` replaces ``self._options``
and ``self._origins`` (where each option's value came from). A plugin that
keeps something of its own as ``self._origins`` then finds ansible-core's
dict there and fails at its first use; for a callback, ansible-core only
warns (``Callback dispatch ... failed``) and skips the rest of that method.
A unit test that builds the plugin without ansible-core's loader never
sees it.

Read from the source: the names a class of the collection assigns on
``self`` or in its body, against the names its ancestry outside the
collection (ansible-core's classes) defines or assigns. The overrides that
are meant (ansible-core's documented switches, a callback's identity, the
console's display wrapper) are named below."""

import ast
import importlib
import inspect
import os
import re
import sys
import textwrap

from tests.collection import REPO, collections_path

sys.path.insert(0, collections_path())

PKG = 'ansible_collections.nixdeploy.fleet.plugins'
# the plugins ansible-core makes objects of, and the action plugins' base
PLACES = ('callback', 'action', 'inventory', 'plugin_utils/task/_action.py')
# overrides that mean to replace ansible-core's value: the switches an
# action plugin sets (TRANSFERS_FILES, _VALID_ARGS, _requires_connection,
# _supports_check_mode, _supports_async), a callback's identity (the
# console's replaces the default callback's), and the console callback's
# display, wrapped so that its pending lines are written first
MEANT = {'TRANSFERS_FILES', '_VALID_ARGS', '_requires_connection', '_supports_check_mode',
         '_supports_async', 'CALLBACK_NAME', 'CALLBACK_TYPE', 'CALLBACK_VERSION', '_display'}


def modules():
    """The collection's plugin modules of PLACES, imported."""
    for place in PLACES:
        path = os.path.join(REPO, 'plugins', place)
        names = [place[:-3]] if place.endswith('.py') else [
            '%s/%s' % (place, n[:-3]) for n in sorted(os.listdir(path))
            if n.endswith('.py') and n != '__init__.py']
        for name in names:
            yield importlib.import_module('%s.%s' % (PKG, name.replace('/', '.')))


def classes():
    """(module file, class) of every class the plugin modules define."""
    for module in modules():
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                # the path below plugins/ (imported through the collections link)
                yield 'plugins/' + module.__file__.split('/plugins/', 1)[1], cls


def theirs(cls):
    """Every name the classes of ``cls``'s ancestry that are not the
    collection's (ansible-core's) define, or assign on ``self``."""
    names = set()
    for base in cls.__mro__:
        if base is object or base.__module__.startswith(PKG):
            continue
        names |= set(vars(base))
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        names |= set(re.findall(r'\bself\.(\w+)\s*(?::[^=\n]+)?=(?!=)', source))
    return names


def own_data_names(cls):
    """The data names a class of the collection keeps: assigned on ``self``
    anywhere in it, or in its body (not its methods)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id == 'self':
            names.add(node.attr)
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(target, ast.Name):
                    names.add(target.id)
    return names


def test_no_plugin_keeps_its_data_under_a_name_of_ansible_core():
    seen, clashes = set(), []
    for path, cls in classes():
        base = theirs(cls)
        if not base:
            continue
        seen.add(path)
        clash = sorted(n for n in own_data_names(cls) & base
                       if n not in MEANT and not n.startswith('__'))
        if clash:
            clashes.append((path, cls.__name__, clash))
    # every kind of plugin was read
    for kind in ('callback/summary.py', 'callback/console.py', 'action/nix_eval.py',
                 'inventory/nix.py', 'plugin_utils/task/_action.py'):
        assert 'plugins/' + kind in seen, sorted(seen)
    assert clashes == [], 'rename these (ansible-core keeps its own data there): %s' % clashes


def test_the_names_this_test_knows_are_ansible_cores():
    """The test's own premise: ansible-core keeps option origins in
    ``_origins`` (the name that clashed), and every meant override is one of
    its names."""
    from ansible.plugins.callback import CallbackBase
    assert '_origins' in theirs(CallbackBase)
    every = set()
    for _path, cls in classes():
        every |= theirs(cls)
    assert MEANT <= every, MEANT - every
