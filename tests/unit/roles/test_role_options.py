"""Every option of the roles says what its one source says, both ways.

The source of the deploy role's variables is the option table
(module_utils/_role_vars_table.py), whose rows tests/docsite/role_spec_gen.py
writes into the role's argument spec (tests/unit/roles/
test_generated_role_files.py: the files are current): each row's entry must
read back as the row's type, default, choices, elements, no_log and
sub-options (the health checks' and their http's), and the hand-written rest
must be only the keys the role passes to nix_activate, as nix_activate
specifies them. The rollback and publish roles pass their variables to
module options: each variable's spec must be that option's. docs/roles.md
has a line for every variable of each role; the roles' READMEs list no
variables of their own. The few option tables the guides keep (a chosen few
options, explained) name only options their plugin has, with its default.

Not here, because ansible-test sanity's validate-modules checks it
(tests/sanity/run.sh): each module's argument spec (module_utils/_specs.py,
built from the table) against its DOCUMENTATION with the doc fragments
merged, both ways, sub-options included. The defaults files against the
specs: tests/unit/roles/test_argument_specs.py.
"""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.collection import REPO, collections_path
from tests.docsite import roles_md

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _role_vars, _specs)

MODULE_SPECS = {
    'nix_eval': _specs.EVAL_SPEC, 'nix_build': _specs.BUILD_SPEC,
    'nix_copy_closure': _specs.COPY_SPEC, 'nix_activate': _specs.ACTIVATE_SPEC,
    'nix_keys': _specs.KEYS_SPEC, 'nix_publish': _specs.PUBLISH_SPEC,
    'nix_channel': _specs.CHANNEL_SPEC,
}
# the deploy role's variables that are no row of the table: nix_activate's
# keys options, which the role passes in its activate task
DEPLOY_KEYS = {'nix_keys': ('nix_activate', 'keys'), 'nix_keys_prune': ('nix_activate', 'keys_prune')}
# variables a module reads itself when its option is unset (no task passes them)
READ_BY_MODULE = {'publish': {'nix_flake': ('nix_channel', 'flake')}}
# variables that are the role's own (no module option)
ROLE_OWN = {'rollback': {'nix_summary'}}
# where a role's default is not the module's, and why
OWN_DEFAULTS = {
    # GC roots of the published systems, apart from the deploy role's
    ('publish', 'nix_publish_gc_root_dir'): '/nix/var/nix/gcroots/nixdeploy-published',
}
# "{{ nix_x }}" or "{{ nix_x | default(omit) }}": a variable passed as an option
PASSED = re.compile(r'^\{\{\s*(nix_\w+)\s*(\|\s*default\(omit\)\s*)?\}\}$')
# the guides' option tables and whose options they explain
DOC_TABLES = {
    'docs/inventory.md': ('inventory', 'nixdeploy.fleet.nix'),
    'docs/report.md': ('callback', 'nixdeploy.fleet.report'),
    'docs/modules/nix_eval.md': ('module', 'nixdeploy.fleet.nix_eval'),
    'docs/modules/nix_keys.md': ('module', 'nixdeploy.fleet.nix_keys'),
}


def load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


def role_options(role):
    return load('roles', role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']


def view(entry, default=True):
    """What an option says to its user, as one comparable value: an
    argument spec entry (Python) or a role's argument spec entry (YAML)."""
    out = {
        'type': entry.get('type', 'str'),
        'elements': entry.get('elements'),
        'choices': sorted(str(c) for c in entry.get('choices') or []),
        'required': bool(entry.get('required')),
        'no_log': bool(entry.get('no_log')),
        'options': dict((name, view(sub)) for name, sub in (entry.get('options') or {}).items()),
    }
    for key in ('mutually_exclusive', 'required_one_of'):
        out[key] = sorted(sorted(group) for group in entry.get(key) or [])
    if default:
        # a list or dict default of [] / {} and none are not the same
        out['default'] = entry.get('default')
    return out


def differences(one, other):
    return sorted(key for key in set(one) | set(other) if one.get(key) != other.get(key))


def test_the_deploy_role_holds_every_row_of_the_table_as_the_table_says():
    # the rows' entries are generated: this proves the generator writes what
    # the row says (a key dropped, a value quoted into another type)
    options = role_options('deploy')
    for row in _role_vars.ROWS:
        assert row.variable in options, '%s is no variable of the deploy role' % row.variable
        role, table = view(options[row.variable]), view(row.spec)
        assert role == table, (row.variable, differences(role, table))
    for variable, (module, option) in DEPLOY_KEYS.items():
        role, spec = view(options[variable]), view(MODULE_SPECS[module][option])
        assert role == spec, (variable, differences(role, spec))
    rows = set(row.variable for row in _role_vars.ROWS)
    assert set(options) - rows == set(DEPLOY_KEYS), 'variables of the role that no row has'


def test_the_deploy_role_passes_its_keys_and_leaves_every_row_to_its_variables():
    tasks = load('roles', 'deploy', 'tasks', 'activate.yml')
    activate = [t['nixdeploy.fleet.nix_activate'] for t in tasks if 'nixdeploy.fleet.nix_activate' in t][0]
    assert activate['from_role_vars'] is True
    for variable, (_module, option) in DEPLOY_KEYS.items():
        assert variable in activate[option]
    # a row passed as an argument would be a second source of its value
    for name in ('eval', 'build', 'copy', 'activate'):
        for task in load('roles', 'deploy', 'tasks', name + '.yml'):
            args = [v for k, v in task.items() if k.startswith('nixdeploy.fleet.')]
            for arg in args:
                assert not set(arg) & set(_role_vars.BY_OPTION), (name, sorted(set(arg) & set(_role_vars.BY_OPTION)))


def passes(role):
    """(variable, module, option, plain) for each variable a role's tasks pass
    to a module option (in module_defaults too); plain: without default(omit)."""
    out = []

    def visit(node):
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            module = key.split('.')[-1]
            if key.startswith('nixdeploy.fleet.') and isinstance(value, dict):
                for option, arg in value.items():
                    match = PASSED.match(str(arg).strip())
                    if match:
                        out.append((match.group(1), module, option, not match.group(2)))
            elif key == 'module_defaults':
                visit([{k: v} for k, v in value.items()])
            else:
                visit(value)
    visit(load('roles', role, 'tasks', 'main.yml'))
    return out


@pytest.mark.parametrize('role', ['rollback', 'publish'])
def test_each_variable_a_role_passes_says_what_its_module_option_says(role):
    options = role_options(role)
    passed = passes(role)
    assert passed
    for variable, module, option, plain in passed:
        assert variable in options, '%s: %s is passed to %s but not in the spec' % (role, variable, module)
        spec = MODULE_SPECS[module][option]
        mine, theirs = view(options[variable], default=False), view(spec, default=False)
        # required apart: a variable passed as is must be given when the option must be
        mine.pop('required'), theirs.pop('required')
        assert mine == theirs, (role, variable, module, option, differences(mine, theirs))
        if spec.get('required') and plain:
            assert options[variable].get('required') or 'default' in options[variable], (role, variable)
        if 'default' in options[variable]:
            wanted = OWN_DEFAULTS.get((role, variable), spec.get('default'))
            assert options[variable]['default'] == wanted, (role, variable)
    for variable, (module, option) in READ_BY_MODULE.get(role, {}).items():
        mine = view(options[variable])
        theirs = view(MODULE_SPECS[module][option])
        assert mine == theirs, (role, variable, differences(mine, theirs))
    used = set(v for v, _m, _o, _p in passed) | set(READ_BY_MODULE.get(role, {})) | ROLE_OWN.get(role, set())
    assert set(options) == used, (role, 'in the spec, used by no task', sorted(set(options) - used),
                                  'used, not in the spec', sorted(used - set(options)))


def test_every_variable_a_role_reads_is_in_its_spec():
    for role in ('deploy', 'rollback', 'publish'):
        text = ''
        for name in sorted(os.listdir(os.path.join(REPO, 'roles', role, 'tasks'))):
            with open(os.path.join(REPO, 'roles', role, 'tasks', name)) as handle:
                text += handle.read()
        # a variable in a template: the name after {{ or a filter's argument
        read = set(re.findall(r'\{\{[^}]*?\b(nix_\w+)', text))
        assert read <= set(role_options(role)), (role, sorted(read - set(role_options(role))))


def test_docs_roles_md_has_a_line_for_every_variable_of_each_role():
    with open(roles_md.DOC) as handle:
        current = handle.read()
    for role in roles_md.ROLES:
        for name, option in role_options(role).items():
            assert '| `%s` | %s |' % (name, roles_md.cell(roles_md.type_of(option))) in current, name


@pytest.mark.parametrize('role', ['deploy', 'rollback', 'publish'])
def test_role_readmes_point_to_the_generated_tables(role):
    with open(os.path.join(REPO, 'roles', role, 'README.md')) as handle:
        readme = handle.read()
    assert '../../docs/roles.md' in readme
    assert not re.search(r'^\| `nix_', readme, re.M), 'a hand-written variable table'


def documented(kind, names):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path())
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-doc'), '-t', kind,
                           '--json'] + list(names), stdout=subprocess.PIPE, env=env, check=True)
    return dict((name, doc['doc']['options']) for name, doc in json.loads(proc.stdout).items())


def option_tables(text):
    """(header cells, [row cells]) of each Markdown table whose first header is 'option'."""
    tables, current = [], None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')] if line.startswith('|') else None
        if cells and cells[0] == 'option':
            current = (cells, [])
            tables.append(current)
        elif cells and current and not set(cells[0]) <= set('-:'):
            current[1].append(cells)
        elif not cells:
            current = None
    return tables


def test_the_guides_option_tables_name_real_options_with_their_defaults():
    kinds = {}
    for kind, name in DOC_TABLES.values():
        kinds.setdefault(kind, []).append(name)
    options = {}
    for kind, names in kinds.items():
        options.update(documented(kind, names))
    for path, (_kind, plugin) in sorted(DOC_TABLES.items()):
        with open(os.path.join(REPO, path)) as handle:
            tables = option_tables(handle.read())
        assert tables, '%s has no option table any more: drop it here' % path
        for header, rows in tables:
            for cells in rows:
                names = re.findall(r'`(\w+)`', cells[0].split('(')[0])
                assert names, (path, cells[0])
                for name in names:
                    assert name in options[plugin], '%s: %s is no option of %s' % (path, name, plugin)
                if 'default' not in header or len(names) != 1:
                    continue
                shown = re.match(r'`([^`]*)`', cells[header.index('default')])
                default = options[plugin][names[0]].get('default')
                if shown and default is not None:
                    assert yaml.safe_load(shown.group(1)) == default, (path, names[0], shown.group(1))
