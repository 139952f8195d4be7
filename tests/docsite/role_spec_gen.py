"""The files that repeat the option table (plugins/module_utils/_role_vars_table.py),
written from its rows:

- roles/deploy/meta/argument_specs.yml: each row's entry (type, elements,
  default, choices, no_log, sub-options, description, version_added);
- roles/deploy/defaults/main.yml: each row's default;
- plugins/doc_fragments/role_vars.py: the lists of which options the
  variables fill (the modules', the inventory's, the per-host ones) and the
  variables' names;
- docs/roles.md, from the roles' specs (tests/docsite/roles_md.py).

Only the lines between each file's two markers are written; the rest is
hand-written (the role's own description, its keys variables, the fragment's
prose). Edit a row, then

    python -m tests.docsite.role_spec_gen          # writes the files
    python -m tests.docsite.role_spec_gen --check  # exit 1, naming each stale file

tests/unit/roles/test_generated_role_files.py fails while a file is stale.
"""

import argparse
import os
import sys
import textwrap

import yaml

from tests.collection import REPO, collections_path
from tests.docsite import roles_md

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _phases, _role_vars)

COMMAND = '.venv/bin/python -m tests.docsite.role_spec_gen'
BEGIN = '# Generated from the option table by python -m tests.docsite.role_spec_gen: edit its rows.'
END = '# End of the generated part.'
SPEC = 'roles/deploy/meta/argument_specs.yml'
DEFAULTS = 'roles/deploy/defaults/main.yml'
FRAGMENT = 'plugins/doc_fragments/role_vars.py'
ROLES_MD = os.path.relpath(roles_md.DOC, REPO)
WIDTH = 100
# an argument spec entry's keys, in the order an entry shows them (description
# and version_added come from the row, the sub-options last)
HEAD_KEYS = ('type', 'elements', 'required', 'default', 'choices', 'no_log')
TAIL_KEYS = ('mutually_exclusive', 'required_one_of', 'required_together', 'required_if',
             'required_by')
# the defaults file's lines are the role's public names, shared with the inventory
NOQA = '  # noqa: var-naming[no-role-prefix]'
# each phase's module, as the fragment names it
MODULE = dict((phase.name, phase.action) for phase in _phases.PHASES)


class CannotWrite(Exception):
    """What the table says cannot be written as it is (a row without a
    description, a spec key the role spec has no place for)."""


def _plain(value):
    """``value`` with tuples as lists (YAML's safe dumper has no tuple)."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return dict((key, _plain(item)) for key, item in value.items())
    return value


def scalar(value):
    """``value`` as YAML on one line (flow style, quoted where YAML would
    read another type: 'true' stays a string)."""
    text = yaml.safe_dump(_plain(value), default_flow_style=True, width=10 ** 6)
    return text.rstrip('\n').replace('\n...', '')


def paragraphs(texts, indent):
    """``texts`` as a YAML sequence at ``indent`` spaces, each item wrapped to
    WIDTH: a plain scalar when it reads back the same, else double-quoted."""
    lines = []
    for text in texts:
        for quote in (False, True):
            body = '"%s"' % text.replace('\\', '\\\\').replace('"', '\\"') if quote else text
            item = textwrap.wrap(body, WIDTH, initial_indent=' ' * indent + '- ',
                                 subsequent_indent=' ' * (indent + 2), break_long_words=False,
                                 break_on_hyphens=False)
            try:
                if yaml.safe_load('\n'.join(item)) == [text]:
                    break
            except yaml.YAMLError:
                # a colon and a space in a plain scalar: quoted, then
                continue
        else:
            raise CannotWrite('%r cannot be written as YAML' % text)
        lines.extend(item)
    return lines


def entry(name, spec, texts, subtexts, path, indent, version_added=None):
    """The lines of one argument spec entry ``name`` (``path``: its place,
    for messages) with its sub-options' (``subtexts``: their descriptions by
    path below the row's option)."""
    unknown = set(spec) - set(HEAD_KEYS + TAIL_KEYS + ('options',))
    if unknown:
        raise CannotWrite('%s: the role spec has no place for %s'
                          % (path, ', '.join(sorted(unknown))))
    if not texts:
        raise CannotWrite('%s has no description: give its row one' % path)
    pad = ' ' * (indent + 2)
    lines = [' ' * indent + name + ':']
    lines += ['%s%s: %s' % (pad, key, scalar(spec[key])) for key in HEAD_KEYS
              if spec.get(key) is not None]
    if version_added:
        lines.append('%sversion_added: %s' % (pad, scalar(str(version_added))))
    lines += [pad + 'description:'] + paragraphs(texts, indent + 4)
    lines += ['%s%s: %s' % (pad, key, scalar(spec[key])) for key in TAIL_KEYS if key in spec]
    if spec.get('options'):
        lines.append(pad + 'options:')
        for sub, subspec in spec['options'].items():
            below = path.split('.', 1)[1] + '.' + sub if '.' in path else sub
            lines += entry(sub, subspec, subtexts.get(below), subtexts, '%s.%s' % (path, sub),
                           indent + 4)
    return lines


def _sub_paths(spec, prefix=''):
    for sub, subspec in (spec.get('options') or {}).items():
        yield prefix + sub
        yield from _sub_paths(subspec, prefix + sub + '.')


def deprecation(row):
    """The paragraph on a row's deprecated variable name."""
    return ('Its former name C(%s) is still read when this one is not set, with a deprecation '
            'warning, until release %s.' % (row.old, _role_vars.REMOVED_IN))


def spec_lines(indent):
    """Every row's entry of the deploy role's argument spec."""
    lines = []
    for row in _role_vars.ROWS:
        stray = set(row.sub_descriptions) - set(_sub_paths(row.spec))
        if stray:
            raise CannotWrite('%s: descriptions of no sub-option: %s'
                              % (row.variable, ', '.join(sorted(stray))))
        texts = tuple(row.description)
        # a row with no text of its own stays without: entry() refuses it
        if texts and row.old:
            texts += (deprecation(row),)
        lines += entry(row.variable, row.spec, texts, row.sub_descriptions, row.variable,
                       indent, row.version_added)
    return lines


def defaults_lines(indent):
    """Every row's default, as the role's defaults file sets it."""
    return ['%s%s: %s%s' % (' ' * indent, row.variable, scalar(row.default), NOQA)
            for row in _role_vars.ROWS if row.default is not None]


def listed(names):
    """C(a), C(b) and C(c)."""
    shown = ['C(%s)' % name for name in names]
    return ', '.join(shown[:-1]) + ' and ' + shown[-1] if len(shown) > 1 else ''.join(shown)


def fragment_texts():
    """The doc fragment's paragraphs on which options the variables fill."""
    rows = _role_vars.ROWS
    nix = [row for row in rows if set(row.modules) == set(_role_vars.PHASES)]
    example = [row for row in rows if row.variable != row.option][0]
    own = listed(row.option for row in rows if row.variable == row.option)
    naming = ("An option's variable is always C(nix_) and the option's name (C(%s) for C(%s)); "
              "%s are their own variables." % (example.variable, example.option, own))
    old = [row for row in rows if row.old]
    if old:
        naming += (' The former %s %s %s still read, with a deprecation warning, until release %s.'
                   % ('names' if len(old) > 1 else 'name',
                      ', '.join('C(%s) of C(%s)' % (row.old, row.variable) for row in old),
                      'are' if len(old) > 1 else 'is', _role_vars.REMOVED_IN))
    each = '; '.join('for %s, %s' % (MODULE[phase], listed(
        row.option for row in _role_vars.rows(phase) if row not in nix))
        for phase in _role_vars.PHASES)
    taking = ('The options that take part are the Nix options (%s) and, %s.'
              % (listed(row.option for row in nix), each))
    inventory = ("Without it, %s still default to the host's own variables (set by the Nix "
                 "inventory or in host_vars)." % listed(r.option for r in rows if r.inventory))
    per_host = ("An option that differs per host (%s) and whose value is this host's own "
                "variable's is each host's own in a computation for the whole play batch, which "
                "reads the other hosts' variables for it."
                % listed(r.option for r in rows if r.scope == 'host'))
    return (naming, taking, inventory, per_host)


def read(path):
    with open(os.path.join(REPO, path), encoding='utf-8') as handle:
        return handle.read()


def replaced(path, text, make):
    """``text`` (the file ``path``) with the lines between its markers made
    anew by ``make(indent)``, the indent being the begin marker's."""
    lines = text.split('\n')
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise CannotWrite('%s: wants one line %r, then one line %r' % (path, BEGIN, END))
    begin = lines[begins[0]]
    indent = len(begin) - len(begin.lstrip())
    return '\n'.join(lines[:begins[0] + 1] + make(indent) + lines[ends[0]:])


MAKERS = (
    (SPEC, spec_lines),
    (DEFAULTS, defaults_lines),
    (FRAGMENT, lambda indent: paragraphs(fragment_texts(), indent)),
)


def outputs():
    """[(path, text it has, text the table makes)] of the generated files;
    docs/roles.md as the roles' specs on disk make it."""
    out = []
    for path, make in MAKERS:
        text = read(path)
        out.append((path, text, replaced(path, text, make)))
    current = read(ROLES_MD)
    return out + [(ROLES_MD, current, roles_md.render(current))]


def stale():
    """The generated files that are not what the table makes now."""
    return [path for path, text, wanted in outputs() if text != wanted]


def write():
    """Writes each file that differs (the specs before docs/roles.md, which
    is made from them); returns the paths written."""
    written = []
    for path, make in MAKERS:
        text = read(path)
        wanted = replaced(path, text, make)
        if wanted != text:
            with open(os.path.join(REPO, path), 'w', encoding='utf-8') as handle:
                handle.write(wanted)
            written.append(path)
    current = read(ROLES_MD)
    wanted = roles_md.render(current)
    if wanted != current:
        with open(roles_md.DOC, 'w', encoding='utf-8') as handle:
            handle.write(wanted)
        written.append(ROLES_MD)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--check', action='store_true',
                        help='exit 1 when a file is not what the table makes (naming it)')
    args = parser.parse_args()
    try:
        if args.check:
            found = stale()
            if found:
                sys.exit('not what the option table makes: %s; run %s'
                         % (', '.join(found), COMMAND))
            return
        for path in write():
            print('wrote %s' % path)
    except CannotWrite as exc:
        sys.exit('%s' % exc)


if __name__ == '__main__':
    main()
