"""No plugin of the collection keeps its own data under a name that
ansible-core's base class keeps too.

ansible-core stores its own state on the plugin object: ``set_options``
replaces ``self._options`` and ``self._origins`` (where each option's value
came from) after the plugin's ``__init__``. The summary callback once kept
the revisions reused answers came from as ``self._origins``: ansible-core
put its dict there, every reused host's result raised in the callback
(``'dict' object has no attribute 'add'``, a warning), the batch's summary
lost those hosts and the closing line named two options as revisions.
Its unit tests built the callback without ansible-core's loader and never
saw it.

Read from the source (the names a class assigns on ``self`` and in its
body) against the names ansible-core's base classes define or assign; the
overrides that are meant (ansible-core's documented switches, the
console's display wrapper) are named below."""

import ast
import inspect
import os
import re
import sys

import pytest
from ansible.plugins.action import ActionBase
from ansible.plugins.callback import CallbackBase
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from tests.collection import REPO, collections_path

sys.path.insert(0, collections_path())

# the base classes of each kind of plugin, and the files of that kind
KINDS = {
    'callback': ((CallbackBase,), ['plugins/callback']),
    'action': ((ActionBase,), ['plugins/action', 'plugins/plugin_utils/task/_action.py']),
    'inventory': ((BaseInventoryPlugin, Constructable, Cacheable), ['plugins/inventory']),
}
# overrides that mean to replace ansible-core's value: the switches an
# action plugin sets (TRANSFERS_FILES, _VALID_ARGS, _requires_connection,
# _supports_check_mode, _supports_async), and the console callback's
# display, wrapped so that its pending lines are written first
MEANT = {'TRANSFERS_FILES', '_VALID_ARGS', '_requires_connection', '_supports_check_mode',
         '_supports_async', '_display'}


def base_names(classes):
    """Every name ansible-core's ``classes`` define, or assign on ``self``."""
    names = set()
    for base in classes:
        for cls in base.__mro__:
            if cls is object:
                continue
            names |= set(vars(cls))
            try:
                source = inspect.getsource(cls)
            except (OSError, TypeError):
                continue
            names |= set(re.findall(r'\bself\.(\w+)\s*(?::[^=\n]+)?=(?!=)', source))
    return names


def own_data_names(cls):
    """The data names a class of the collection keeps: assigned on ``self``
    anywhere in it, or in its body (not its methods)."""
    names = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id == 'self':
            names.add(node.attr)
    for node in cls.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(target, ast.Name):
                    names.add(target.id)
    return names


def files(places):
    for place in places:
        path = os.path.join(REPO, place)
        if os.path.isfile(path):
            yield path
            continue
        for name in sorted(os.listdir(path)):
            if name.endswith('.py') and name != '__init__.py':
                yield os.path.join(path, name)


@pytest.mark.parametrize('kind', sorted(KINDS))
def test_no_plugin_keeps_its_data_under_a_name_of_ansible_core(kind):
    classes, places = KINDS[kind]
    theirs = base_names(classes)
    seen, clashes = 0, []
    for path in files(places):
        with open(path) as handle:
            tree = ast.parse(handle.read(), path)
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            seen += 1
            clash = sorted(n for n in own_data_names(cls) & theirs
                           if n not in MEANT and not n.startswith('__'))
            if clash:
                clashes.append((os.path.relpath(path, REPO), cls.name, clash))
    assert seen, 'no plugin class read for %s' % kind
    assert clashes == [], 'rename these (ansible-core keeps its own data there): %s' % clashes


def test_the_names_this_test_knows_are_ansible_cores():
    """The test's own premise: ansible-core keeps option origins in
    ``_origins`` (the name that clashed), and every meant override is one of
    its names."""
    assert '_origins' in base_names((CallbackBase,))
    every = set()
    for classes, _places in KINDS.values():
        every |= base_names(classes)
    assert MEANT <= every, MEANT - every
