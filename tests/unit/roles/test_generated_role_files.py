"""The files written from the option table (tests/docsite/role_spec_gen.py:
the deploy role's argument spec and defaults, the doc fragment role_vars'
lists, docs/roles.md) are what the table makes now, and the generator says
what it cannot write instead of writing it wrong.

What the generated entries say against the rows (type, default, choices,
sub-options): tests/unit/roles/test_role_options.py."""

import pytest
import yaml

from tests.docsite import role_spec_gen
from tests.docsite.role_spec_gen import _role_vars

FILES = (role_spec_gen.SPEC, role_spec_gen.DEFAULTS, role_spec_gen.FRAGMENT,
         role_spec_gen.ROLES_MD)


@pytest.fixture(scope='module')
def outputs():
    return dict((path, (text, wanted)) for path, text, wanted in role_spec_gen.outputs())


@pytest.mark.parametrize('path', FILES)
def test_each_generated_file_is_what_the_table_makes(outputs, path):
    text, wanted = outputs[path]
    assert text == wanted, '%s is not what the option table makes: run %s' % (
        path, role_spec_gen.COMMAND)


@pytest.mark.parametrize('path,make', role_spec_gen.MAKERS)
def test_generating_twice_changes_nothing(outputs, path, make):
    once = outputs[path][1]
    assert role_spec_gen.replaced(path, once, make) == once


def test_a_row_without_a_description_is_refused():
    row = _role_vars.Row('token', ('copy',), {'type': 'int'})
    with pytest.raises(role_spec_gen.CannotWrite, match='nix_token has no description'):
        role_spec_gen.entry(row.variable, row.spec, row.description, {}, row.variable, 6)


def test_a_spec_key_the_role_spec_cannot_hold_is_refused():
    with pytest.raises(role_spec_gen.CannotWrite, match='nix_x: .* no place for aliases'):
        role_spec_gen.entry('nix_x', {'type': 'str', 'aliases': ['y']}, ('Text.',), {}, 'nix_x', 6)


def test_a_sub_option_without_a_description_is_refused():
    spec = {'type': 'dict', 'options': {'url': {'type': 'str'}, 'port': {'type': 'int'}}}
    with pytest.raises(role_spec_gen.CannotWrite, match='nix_x.port has no description'):
        role_spec_gen.entry('nix_x', spec, ('Text.',), {'url': ('The URL.',)}, 'nix_x', 6)


def test_text_yaml_would_misread_is_quoted_and_reads_back():
    texts = ('C(ansible_host_key_checking: true) in group_vars', 'a plain one',
             'C(#) starts a comment ' + 'and a long line that wraps ' * 4 + '#here',
             'a "quoted" word and a back\\slash: both escaped')
    lines = role_spec_gen.paragraphs(texts, 6)
    assert yaml.safe_load('\n'.join(lines)) == list(texts)
    assert lines[0].startswith('      - "')
    assert all(len(line) <= role_spec_gen.WIDTH for line in lines)
