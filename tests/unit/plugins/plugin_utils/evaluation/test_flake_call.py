"""What Nix's own flake call puts last on each node, asked of the Nix in
use (plugin_utils/evaluation/record/_flake_call.py): a probe flake whose outputs
define every such name, read back with real Nix."""

import shutil
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record import (  # noqa: E402
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
    assert set(found) == {'flake', 'plain', 'placed'}
    assert set(found['plain']) <= set(_flake_call.PLAIN_NAMES)
    # the two stacks' Nix: 2.8 adds no _type, 2.34 does
    like = runner.features().version[:2]
    if like <= (2, 8) or like >= (2, 34):
        assert ('_type' in found['flake']) == (like >= (2, 34)), (like, found)
        # 2.34 makes a node's outPath its folder: the second probe's
        # relative and `?dir=` inputs were where record.nix puts them (2.8
        # is not asked)
        assert runner.features().path_dir == (like >= (2, 34))
    assert found['placed'] is None, found
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


def test_an_input_placed_otherwise_than_record_nix_places_it_is_said():
    """Where Nix makes a node's outPath its folder (2.25+), a second probe
    reads where Nix's call puts a relative input, one relative to that, a
    relative non-flake input and a `?dir=` non-flake input, and their
    sources: a Nix that puts any of them elsewhere than record.nix does
    (`<src>/rel` for `<src>/./rel`, a child's own folder as its source, a
    nested input under its parent's folder twice as Nix 2.26-2.28 did) is
    said, for the flakes that have such an input (reuse/_rules)."""
    assert _flake_call.misplaced({'places': dict(_flake_call.PLACES)}) is None
    for name, there in (('rel', '<src>/rel'), ('relSource', '<src>/./rel'),
                        ('grand', '<src>/./rel/./rel/./grand'), ('sub', '<dep>')):
        said = _flake_call.misplaced({'places': dict(_flake_call.PLACES, **{name: there})})
        assert said == ("this Nix's flake call places %s at %s where the recorded call places "
                        "it at %s" % (name, there, _flake_call.PLACES[name])), said
    assert 'gave no answer' in _flake_call.misplaced({'flake': {}})
