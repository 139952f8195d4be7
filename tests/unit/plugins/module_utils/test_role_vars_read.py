"""Every ``nix_*`` variable the collection reads is known to the unknown
variable check (module_utils/_role_vars.py: ``unknown_variables``, which
nix_eval runs on each host's variables; ``nix_unknown_vars: error`` fails a
host with an unknown one). A variable a plugin reads but the check does not
know would be called a typo ("did you mean ...?") while it works.

What counts as read, found from code, never from comments or docstrings:

- Python under plugins/: every string literal whose whole text is a
  ``nix_*`` name (``hostvars.get('nix_peer_host')``, ``task_vars[...]``,
  ``fact_or_var(hostvars, 'nix_out_path')``, a constant such as
  ``OPT_OUT = 'nix_host_key_unchecked'`` used as a key later). The syntax
  tree is read (``ast``), so comments are never seen, and a docstring or a
  DOCUMENTATION text is one long literal that is no name. The shell and Nix
  files under plugins/ run on the hosts or in Nix and read no Ansible
  variable.
- YAML and templates under roles/ and playbooks/ (tasks, defaults,
  handlers, vars; the filters' YAML under plugins/filter/ is their
  documentation only): every ``nix_*`` name inside ``{{ }}`` or ``{% %}``,
  and inside the bare expressions of ``when``, ``changed_when``,
  ``failed_when``, ``until`` and ``that``. Keys (a module option such as
  ``nix_bin:``) are not reads. The roles' meta/argument_specs.yml is their
  list of variables, checked by test_role_vars.py
  (test_every_roles_variable_is_known).

``NOT_VARIABLES`` names the few literals that are no variable at all (each
with where it is and what it is); every other name found must be known.
"""

import ast
import os
import re
import sys

import yaml

from tests.collection import REPO, collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars  # noqa: E402

NAME = re.compile(r'^nix_[a-z_]+$')
IN_TEXT = re.compile(r'\bnix_[a-z_]+\b')
JINJA = re.compile(r'\{\{(.*?)\}\}|\{%(.*?)%\}', re.S)
# task keywords whose value is a bare Jinja expression (or a list of them)
CONDITIONALS = ('when', 'changed_when', 'failed_when', 'until', 'that')

# String literals in plugins/ that are no Ansible variable. Each was
# checked where it is used; keep a name here only while that stays true.
NOT_VARIABLES = {
    # module names (plugins/modules/<name>.py), as a phase or a task names
    # its module: _phases.py, controller_only() in each module
    'nix_eval': 'module',
    'nix_build': 'module',
    'nix_copy_closure': 'module',
    'nix_activate': 'module',
    'nix_publish': 'module',
    'nix_channel': 'module',
    'nix_status': 'module',
    # what a host's probe script prints, a key of the parsed probe
    # (copy/_copy.py, builds/_builders.py), not a variable
    'nix_dir': 'probe key',
    # result keys: nix_eval's and nix_publish's count of Nix processes
    # (action/nix_eval.py, action/nix_publish.py) and the report's sum of
    # them (report/_report_record.py, _report_html.py)
    'nix_processes': 'result key',
    'nix_evaluations': 'report key',
    # an evaluation error's key for Nix's own words (evaluation/_eval.py,
    # pool/_pool.py)
    'nix_message': 'error key',
    # an attribute name in __slots__ (inventory/_inventory_sources.py)
    'nix_params': 'attribute',
}
MODULES = os.path.join(REPO, 'plugins', 'modules')


def _files(folder, endings):
    for base, dirs, files in os.walk(os.path.join(REPO, folder)):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if name.endswith(endings):
                yield os.path.join(base, name)


def _docstrings(tree):
    """The ids of string literals that stand alone as a statement (a
    module's, class's or function's docstring, or a bare string)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            out.add(id(node.value))
    return out


def python_names(path):
    """{name: [line, ...]} of the string literals in ``path`` that are a
    ``nix_*`` name."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    skip = _docstrings(tree)
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in skip and NAME.match(node.value):
            found.setdefault(node.value, []).append(node.lineno)
    return found


def _expressions(value, key=None):
    """The Jinja expressions in a YAML document's ``value``: what is inside
    each ``{{ }}`` and ``{% %}`` of every string, and the bare expressions of
    the conditional keywords."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _expressions(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _expressions(v, key)
    elif isinstance(value, str):
        if key in CONDITIONALS:
            yield value
        else:
            for match in JINJA.finditer(value):
                yield match.group(1) or match.group(2)


def yaml_names(path):
    """{name: [path]} of the ``nix_*`` names the Jinja of ``path`` reads."""
    with open(path) as handle:
        documents = list(yaml.safe_load_all(handle))
    found = {}
    for document in documents:
        for text in _expressions(document):
            for name in IN_TEXT.findall(text):
                found.setdefault(name, []).append(path)
    return found


def read_names():
    """{name: ['file:line', ...]} of every nix_* name the plugins, roles and
    playbooks read."""
    found = {}
    for path in _files('plugins', '.py'):
        rel = os.path.relpath(path, REPO)
        for name, lines in python_names(path).items():
            found.setdefault(name, []).extend('%s:%d' % (rel, n) for n in lines)
    for folder in ('roles', 'playbooks'):
        for path in _files(folder, ('.yml', '.yaml', '.j2')):
            rel = os.path.relpath(path, REPO)
            if rel.endswith(os.path.join('meta', 'argument_specs.yml')):
                continue
            if path.endswith('.j2'):
                with open(path) as handle:
                    texts = [m.group(1) or m.group(2) for m in JINJA.finditer(handle.read())]
                names = set(n for t in texts for n in IN_TEXT.findall(t))
            else:
                names = yaml_names(path)
            for name in names:
                found.setdefault(name, []).append(rel)
    return found


def test_every_nix_variable_the_collection_reads_is_known():
    found = read_names()
    unknown = _role_vars.unknown_variables(set(found) - set(NOT_VARIABLES))
    assert unknown == {}, ['%s (read at %s)' % (name, ', '.join(found[name][:3]))
                           for name in sorted(unknown)]


def test_the_scan_sees_the_reads_it_is_meant_to():
    """A read by hostvars.get, by a fact, by a constant, and in a role's and
    a playbook's Jinja: the scan would miss nothing of these kinds."""
    found = read_names()
    for name in ('nix_peer_host', 'nix_site', 'nix_build_on', 'nix_out_path',
                 'nix_host_key_unchecked', 'nix_summary', 'nix_keys_prune', 'nix_serial',
                 'nix_max_fail_percentage', 'nix_reboot'):
        assert name in found, name
    # a docstring or a comment is not a read: nix_gaol is only ever a typo
    # in text (and in the tests)
    assert 'nix_gaol' not in found


def test_each_name_that_is_no_variable_is_still_there_and_still_none():
    """The allow-list stays as short as it can: each name is still used in
    plugins/, is unknown to the check (a known name needs no entry), and each
    module name is a module."""
    found = read_names()
    for name, kind in sorted(NOT_VARIABLES.items()):
        assert name in found, '%s is no longer used: drop it from NOT_VARIABLES' % name
        assert name not in _role_vars.known_variables(), name
        if kind == 'module':
            assert os.path.exists(os.path.join(MODULES, name + '.py')), name


def test_a_python_literal_is_found_and_a_docstring_is_not(tmp_path):
    path = tmp_path / 'p.py'
    path.write_text('"""nix_doc"""\n\n\ndef f(hostvars):\n    """nix_fdoc"""\n'
                    '    # hostvars.get("nix_comment")\n'
                    "    return hostvars.get('nix_read') or hostvars['nix_index']\n")
    assert python_names(str(path)) == {'nix_read': [7], 'nix_index': [7]}


def test_a_yaml_read_is_found_and_a_key_is_not(tmp_path):
    path = tmp_path / 't.yml'
    path.write_text('- name: x nix_name\n  some.module:\n    nix_bin: "{{ nix_one }}"\n'
                    '    other: "{{ hostvars[h][\'nix_two\'] }} nix_text"\n'
                    '  when:\n    - nix_three | bool\n')
    assert sorted(yaml_names(str(path))) == ['nix_one', 'nix_three', 'nix_two']
