"""The option table (module_utils/_role_vars.py) is the one source: the
modules' argument specs take its entries and the doc fragment role_vars
names each of its options, both ways. The modules' documentation against
their specs: ansible-test sanity's validate-modules; the roles' specs,
defaults and docs against the table: tests/unit/roles/test_role_options.py."""

import re
import sys

import pytest
import yaml

from tests.collection import collections_path

# module_utils import each other as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _role_vars, _specs)

SPECS = {'eval': _specs.EVAL_SPEC, 'build': _specs.BUILD_SPEC,
         'copy': _specs.COPY_SPEC, 'activate': _specs.ACTIVATE_SPEC}
MODULES = {'eval': 'nix_eval', 'build': 'nix_build', 'copy': 'nix_copy_closure',
           'activate': 'nix_activate'}


def test_every_variable_is_nix_and_its_option():
    for row in _role_vars.ROWS:
        wanted = row.option if row.option.startswith('nix_') else 'nix_' + row.option
        assert row.variable == wanted, row.option
    assert len(set(r.variable for r in _role_vars.ROWS)) == len(_role_vars.ROWS)


@pytest.mark.parametrize('phase', sorted(SPECS))
def test_the_modules_take_the_tables_spec(phase):
    spec = SPECS[phase]
    for option, entry in _role_vars.spec(phase).items():
        assert spec[option] == entry, (phase, option)
    # and no option of the table's is specified anywhere else
    for row in _role_vars.ROWS:
        if phase not in row.modules:
            assert row.option not in spec or row.option in _role_vars.spec(phase), (phase, row.option)


def test_the_doc_fragment_names_each_modules_options():
    from ansible_collections.nixdeploy.fleet.plugins.doc_fragments.role_vars import ModuleDocFragment
    paragraphs = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']['from_role_vars'][
        'description']
    text = ' '.join(paragraphs)
    listing = [p for p in paragraphs if p.startswith('The options that take part')][0]
    nix = set(_role_vars.rows('eval')) & set(_role_vars.rows('activate')) & set(
        _role_vars.rows('copy')) & set(_role_vars.rows('build'))
    for phase in _role_vars.PHASES:
        named = listing.split('for %s' % MODULES[phase], 1)[1].split('; for ')[0]
        for row in _role_vars.rows(phase):
            if row not in nix:
                assert 'C(%s)' % row.option in named, (phase, row.option)
    for row in nix:
        assert 'C(%s)' % row.option in listing.split(' and, for ')[0], row.option
    # and it names no option the table does not have
    named = set(re.findall(r'C\((\w+)\)', listing.split('The options that take part are', 1)[1]))
    assert named == set(row.option for row in _role_vars.ROWS), sorted(
        named ^ set(row.option for row in _role_vars.ROWS))
    for row in _role_vars.ROWS:
        assert 'C(%s)' % row.option in text, row.option
        if row.old:
            assert 'C(%s)' % row.old in text, row.old
    per_host = [p for p in paragraphs if p.startswith('An option that differs per host')][0]
    for row in _role_vars.ROWS:
        assert ('C(%s)' % row.option in per_host) == (row.scope == 'host'), row.option
    inventory = [p for p in paragraphs if p.startswith('Without it')][0]
    for row in _role_vars.ROWS:
        assert ('C(%s)' % row.option in inventory) == row.inventory, row.option


def test_a_batch_sees_each_host_with_its_own_values_side_by_side():
    """One host's task (h1, from_role_vars) and how the batch sees three
    other hosts of the same play batch: one with its own variables, one with
    none (the table's defaults), one whose fact is only in flight; an option
    the task gives for all stays the same for every host."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch import with_facts
    own = {'nix_copy_mode': 'cascade', 'nix_remote_nix_dir': '/opt/nix/bin',
           'ansible_facts': {'nix_out_path': '/nix/store/a-h1'}}
    task = {'path': '/nix/store/a-h1', 'compress': True}
    filled = _role_vars.fill('copy', task, own, lambda value: value, True)
    # host_key_unchecked: a host's own opt-out, read from its variable always
    assert filled.own_options == {'copy_mode', 'path', 'remote_nix_dir', 'host_key_unchecked'}
    args = filled.args
    hosts = {
        'h2': {'nix_copy_mode': 'substitute', 'nix_compress': False,
               'ansible_facts': {'nix_out_path': '/nix/store/b-h2'}},
        'h3': {'ansible_facts': {'nix_out_path': '/nix/store/c-h3'}},
        'h4': with_facts({'ansible_facts': {}}, {'nix_out_path': '/nix/store/d-h4'}),
    }
    seen = dict((name, filled.for_host(args, 'copy', hostvars))
                for name, hostvars in hosts.items())
    assert [seen[h]['copy_mode'] for h in sorted(seen)] == ['substitute', 'push', 'push']
    assert seen['h2']['path'] == '/nix/store/b-h2' and seen['h4']['path'] == '/nix/store/d-h4'
    assert seen['h3']['remote_nix_dir'] is None and seen['h3']['copy_mode'] == 'push'
    # compress is the batch's (the task's), whatever h2's variable says
    assert all(seen[h]['compress'] is True for h in seen)
    # the batch key: the per-host options are each host's, not shared
    assert all(filled.shared(args).get(k) is None for k in _role_vars.per_host('copy'))
    # a task that gives one mode for all: every host copies that way
    alike = _role_vars.fill('copy', dict(task, copy_mode='cache'), own, lambda v: v, True)
    assert 'copy_mode' not in alike.own_options
    assert alike.for_host(alike.args, 'copy', hosts['h2'])['copy_mode'] == 'cache'
