"""docs/roles.md's part on each role, made from the roles' argument specs
(roles/*/meta/argument_specs.yml, what ``ansible-doc -t role`` shows): the
short description, the description and a table of every variable with its
type, choices, default and description. Edit the specs (the deploy role's
option-table entries: edit their row in module_utils/_role_vars_table.py and run
``make generate``, tests/docsite/role_spec_gen.py, which calls this), then

    python -m tests.docsite.roles_md          # writes docs/roles.md
    python -m tests.docsite.roles_md --check  # fails when it is not current

The text outside the markers is hand-written; a unit test
(tests/unit/roles/test_role_options.py) fails when the generated part is not
what the specs say.
"""

import argparse
import os
import re
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(REPO, 'docs', 'roles.md')
ROLES = ('deploy', 'rollback', 'publish', 'status')
BEGIN = ('<!-- The roles and their variables, up to the end marker, are generated from '
         'roles/*/meta/argument_specs.yml by `python -m tests.docsite.roles_md`: edit the specs. -->')
END = '<!-- End of the generated part. -->'

# Ansible's documentation markup as Markdown
_MARKUP = (
    (re.compile(r'L\(([^,()]+),\s*([^)]+)\)'), r'[\1](\2)'),
    (re.compile(r'U\(([^)]+)\)'), r'<\1>'),
    (re.compile(r'I\(([^)]+)\)'), r'*\1*'),
    (re.compile(r'B\(([^)]+)\)'), r'**\1**'),
    (re.compile(r'P\(([^#)]+)#[^)]+\)'), r'`\1`'),
    # C(docs/x.md): a link to that guide, beside this page
    (re.compile(r'C\(docs/([\w.-]+\.md)\)'), r'[\1](\1)'),
    (re.compile(r'\bdocs/([\w-]+\.md)'), r'[\1](\1)'),
)
# C(), O(), V(), M(), E(), RV(): code; their text may hold balanced parentheses
_CODE = re.compile(r'\b(?:C|O|V|M|E|RV)\(')


def _code(text):
    out, pos = [], 0
    for match in _CODE.finditer(text):
        if match.start() < pos:
            continue
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {'(': 1, ')': -1}.get(text[end], 0)
            end += 1
        out.append(text[pos:match.start()])
        out.append('`%s`' % text[match.end():end - 1])
        pos = end
    return ''.join(out) + text[pos:]


def markdown(text):
    """One paragraph of Ansible markup as Markdown (one line)."""
    text = ' '.join(text.split())
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return _code(text)


def cell(text):
    return text.replace('|', '\\|')


def type_of(spec):
    kind = spec.get('type', 'str')
    if spec.get('elements'):
        kind += ' of ' + spec['elements']
    if spec.get('choices'):
        kind += ': ' + ', '.join(str(c) for c in spec['choices'])
    return kind


def default_of(spec):
    if 'default' not in spec or spec['default'] is None:
        return 'required' if spec.get('required') else ''
    shown = yaml.safe_dump(spec['default'], default_flow_style=True, width=1000)
    return '`%s`' % shown.strip().replace('\n...', '')


def spec_of(role):
    with open(os.path.join(REPO, 'roles', role, 'meta', 'argument_specs.yml'),
              encoding='utf-8') as handle:
        return yaml.safe_load(handle)['argument_specs']['main']


def section(role):
    spec = spec_of(role)
    lines = ['## nixdeploy.fleet.%s' % role, '', markdown(spec['short_description']) + '.', '']
    lines += ['- ' + markdown(p) for p in spec.get('description') or []]
    lines += ['', '| variable | type | default | description |', '|---|---|---|---|']
    for name, option in spec['options'].items():
        text = ' '.join(markdown(p) for p in option.get('description') or [])
        if option.get('no_log'):
            text += ' Never logged (`no_log`).'
        row = (name, cell(type_of(option)), cell(default_of(option)), cell(text))
        lines.append('| `%s` | %s | %s | %s |' % row)
    return '\n'.join(lines)


def generated():
    return '\n\n'.join([BEGIN] + [section(role) for role in ROLES] + [END])


def render(current):
    """``current`` (docs/roles.md) with its generated part made anew."""
    head, sep, rest = current.partition(BEGIN)
    if not sep or END not in rest:
        raise SystemExit('%s: the markers of the generated part are missing' % DOC)
    return head + generated() + rest.split(END, 1)[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--check', action='store_true',
                        help='fail when docs/roles.md is not what the specs say')
    args = parser.parse_args()
    with open(DOC, encoding='utf-8') as handle:
        current = handle.read()
    wanted = render(current)
    if args.check:
        if wanted != current:
            sys.exit('docs/roles.md is not what the argument specs say: '
                     'run python -m tests.docsite.roles_md')
        return
    with open(DOC, 'w', encoding='utf-8') as handle:
        handle.write(wanted)


if __name__ == '__main__':
    main()
