"""What Nix's own flake call puts last on each node, asked of the Nix in
use (plugin_utils/evaluation/_flake_call.py): a probe flake whose outputs
define every such name, read back with real Nix."""

import shutil
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import (  # noqa: E402
    _flake_call)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402


@pytest.mark.skipif(not shutil.which('nix'), reason='needs nix')
def test_nix_says_which_names_its_call_puts_last(tmp_path):
    """Whatever the outputs define, Nix's call gives `inputs`, `outputs` and
    `sourceInfo` its own values (and `_type` where that Nix adds it), and
    keeps the outputs' other names: the answer record.nix ends each node
    with."""
    runner = _nix.NixCommand(_nix.NixOptions(options={'substituters': ''}), 120)
    found = _flake_call.ask(runner, str(tmp_path))
    assert isinstance(found, dict), found
    assert {'inputs', 'outputs', 'sourceInfo'} <= set(found['flake'])
    assert set(found['flake']) <= set(_flake_call.FLAKE_NAMES)
    assert set(found['plain']) <= set(_flake_call.PLAIN_NAMES)
    # the two stacks' Nix: 2.8 adds no _type, 2.34 does
    like = runner.features().version[:2]
    if like <= (2, 8) or like >= (2, 34):
        assert ('_type' in found['flake']) == (like >= (2, 34)), (like, found)
    # the probe's folder is gone
    assert not list(tmp_path.iterdir())


def test_a_name_the_recorded_call_cannot_give_turns_recording_off():
    own = dict.fromkeys(('probe', '_type'), 'own')
    assert _flake_call.judge({'flake': dict(own, inputs='inputs', outputs='outputs',
                                            sourceInfo='sourceInfo'), 'plain': {}}) == {
        'flake': ['inputs', 'outputs', 'sourceInfo'], 'plain': []}
    # a name Nix replaces with something record.nix cannot give
    said = _flake_call.judge({'flake': dict(own, inputs='inputs', lazyThing='unknown'),
                              'plain': {}})
    assert said == ("this Nix's flake call gives self lazyThing that the recorded call "
                    "cannot give")
    # a known name replaced by another part than record.nix gives it
    assert 'gives self inputs' in _flake_call.judge(
        {'flake': dict(own, inputs='sourceInfo'), 'plain': {}})
    assert 'a non-flake input outputs' in _flake_call.judge(
        {'flake': own, 'plain': {'outputs': 'outputs'}})
    # the outputs' own names must stay theirs
    assert 'does not keep' in _flake_call.judge({'flake': {'probe': 'inputs'}, 'plain': {}})
    assert 'no answer' in _flake_call.judge('nothing')
