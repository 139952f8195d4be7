# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The thin plugin shell: which files it claims and what its docs promise."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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
from ansible_collections.nixdeploy.fleet.plugins.module_utils import _inventory  # noqa: E402


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
    doc = yaml.safe_load(plugin.DOCUMENTATION)
    assert doc['options']['source']['choices'] == list(_inventory.SOURCES)
    assert doc['options']['plugin']['choices'] == [plugin.InventoryModule.NAME]
    assert set(['constructed', 'inventory_cache', 'nixdeploy.fleet.nix']) <= \
        set(doc['extends_documentation_fragment'])


def test_examples_are_yaml():
    docs = list(yaml.safe_load_all(plugin.EXAMPLES))
    assert len(docs) == 4
    assert all(d['plugin'] == 'nixdeploy.fleet.nix' for d in docs)
