# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The thin plugin shell: which files it claims and what its docs promise."""

import os
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
if 'ansible_collections.nixdeploy.fleet' not in sys.modules:
    sys.path.insert(0, REPO)
    from tests.collection import collections_path  # noqa: E402
    sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.inventory import nix as plugin  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (  # noqa: E402
    _inventory_sources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import (  # noqa: E402
    _nix_config)


@pytest.mark.parametrize('name, claimed', [
    ('fleet.nix.yml', True),
    ('fleet.nix.yaml', True),
    ('fleet.yml', False),
    ('flake.nix', False),
    ('fleet.nix.yml.bak', False),
])
def test_verify_file(tmp_path, name, claimed):
    path = tmp_path / name
    path.write_text('plugin: nixdeploy.fleet.nix\n')
    assert bool(plugin.InventoryModule().verify_file(str(path))) is claimed


def test_verify_file_needs_an_existing_file(tmp_path):
    assert not plugin.InventoryModule().verify_file(str(tmp_path / 'missing.nix.yml'))


def test_documented_sources_are_the_mapped_ones():
    """The option's choices are the table's rows, each described."""
    doc = yaml.safe_load(plugin.DOCUMENTATION)
    assert doc['options']['source']['choices'] == list(_inventory_sources.CHOICES)
    described = ' '.join(doc['options']['source']['description'])
    assert all('V(%s)' % name in described for name in _inventory_sources.CHOICES)
    assert doc['options']['plugin']['choices'] == [plugin.InventoryModule.NAME]
    assert set(['constructed', 'inventory_cache', 'nixdeploy.fleet.nix']) <= \
        set(doc['extends_documentation_fragment'])


def test_examples_are_yaml():
    docs = list(yaml.safe_load_all(plugin.EXAMPLES))
    assert len(docs) == 4
    assert all(d['plugin'] == 'nixdeploy.fleet.nix' for d in docs)


class Configured(plugin.InventoryModule):
    """The plugin with its options as a config file would set them."""

    def __init__(self, **options):
        super(Configured, self).__init__()
        self.options = dict({'nix_bin': 'nix', 'nix_args': [], 'nix_options': {}, 'impure': False,
                             'show_trace': False, 'override_inputs': {}}, **options)

    def get_option(self, option, hostvars=None):
        return self.options[option]


# the collection's own lines (accept-flake-config = false ...) come first,
# after the user's NIX_CONFIG, before the inventory's nix_options
FIXED = ''.join(line + '\n' for line in _nix_config.FIXED_LINES)


def nix_config(module):
    return plugin.NixOptions.from_params(module._nix_params()).environment({})['NIX_CONFIG']


def test_the_evaluation_runs_without_import_from_derivation():
    """Loading the inventory builds nothing: the setting reaches Nix as a
    NIX_CONFIG line (never argv), after the user's own NIX_CONFIG."""
    module = Configured(nix_options={'substituters': ''})
    assert nix_config(module) == FIXED + 'allow-import-from-derivation = false\nsubstituters =\n'
    env = plugin.NixOptions.from_params(module._nix_params()).environment(
        {'NIX_CONFIG': 'allow-import-from-derivation = true'})
    assert env['NIX_CONFIG'].splitlines()[-2:] == [
        'allow-import-from-derivation = false', 'substituters =']
    argv = plugin.NixCommand(plugin.NixOptions.from_params(module._nix_params())).argv('eval', [])
    assert not any('import-from-derivation' in arg for arg in argv)
    # the inventory config's own option leaves the operator's choice alone
    assert module.options['nix_options'] == {'substituters': ''}


@pytest.mark.parametrize('value, line', [(True, 'true'), ('true', 'true'), (False, 'false')])
def test_the_operators_nix_options_decide_import_from_derivation(value, line):
    module = Configured(nix_options={'allow-import-from-derivation': value})
    assert nix_config(module) == FIXED + 'allow-import-from-derivation = %s\n' % line
