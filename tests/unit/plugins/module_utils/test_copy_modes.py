"""The copy modes' table (module_utils/_copy_modes.py) and the copies of it
that cannot read it: the module's documentation (a literal ansible-doc
parses), the argument spec's choices and its need of caches."""

import sys

import pytest
import yaml

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _copy_modes, _specs)
from ansible_collections.nixdeploy.fleet.plugins.modules import nix_copy_closure  # noqa: E402


def test_the_module_documents_each_mode_in_the_tables_order():
    option = yaml.safe_load(nix_copy_closure.DOCUMENTATION)['options']['copy_mode']
    assert option['choices'] == list(_copy_modes.NAMES)
    # one description line a mode, each opening with its name
    said = [line.split(')', 1)[0][2:] for line in option['description']
            if line.startswith('V(')]
    assert said == list(_copy_modes.NAMES)


def test_the_argument_spec_takes_the_table():
    assert _specs.COPY_SPEC['copy_mode']['choices'] == list(_copy_modes.NAMES)
    assert _specs.COPY_SPEC['copy_mode']['default'] in _copy_modes.NAMES
    assert [rule for rule in _specs.COPY_VALIDATION['required_if']
            if rule[0] == 'copy_mode'] == [('copy_mode', name, ('caches',))
                                           for name in _copy_modes.NEEDS_CACHES]


def test_each_row_says_who_sends():
    for mode in _copy_modes.ROWS:
        # the copy stage fetches from the caches or sends from the controller:
        # a row is one of the two
        assert mode.controller_sends != mode.from_caches, mode.name
        # substituting and the cascade are ways of a copy from the controller
        assert mode.controller_sends or not (mode.substitutes or mode.batch_wide), mode.name
        assert mode.description.endswith('.') and '\n' not in mode.description
    assert _copy_modes.NEEDS_CACHES == ('cache',)


def test_a_mode_is_looked_up_by_its_name_only():
    assert _copy_modes.mode_row('cascade').batch_wide
    with pytest.raises(ValueError, match="unknown copy mode 'pusj' .known: push, substitute"):
        _copy_modes.mode_row('pusj')
