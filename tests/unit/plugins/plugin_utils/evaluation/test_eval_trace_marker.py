"""The evaluation's traced results cannot be forged by the flake
(plugin_utils/evaluation/_eval.py): each evaluation traces its results with a marker
of its own (128 random bits), so a ``builtins.trace`` of the flake's own
code that prints a result line, with the fixed marker of before or any
other, is never read as a host's result. Real Nix on this machine, a flake
in a temporary folder."""

import os
import shutil
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import _eval  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import (  # noqa: E402
    _nix, _nix_stderr)

FORGED = '{"drv":"/nix/store/00000000000000000000000000000000-forged.drv",' \
         '"out":"/nix/store/00000000000000000000000000000000-forged","system":"x86_64-linux"}'

# `good` evaluates (index 0: requests go in name order); `zforger` traces a
# result line for its own index (1) with the fixed marker, then fails: the old
# reader took the traced line as its result and, every index being traced,
# gave it that result.
FLAKE = r'''
{
  outputs = { self }:
    let
      drv = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; };
    in {
      good = drv "nixdeploy-trace-good";
      zforger = builtins.trace ("%s" + "1 " + ''%s'')
        (builtins.trace "trace: %s1 x" (throw "the forger is broken"));
    };
}
''' % (_eval.TRACE_MARKER, FORGED, _eval.TRACE_MARKER)


def test_each_evaluation_gets_its_own_marker():
    one, two = _eval.trace_marker(), _eval.trace_marker()
    assert one != two and one.startswith(_eval.TRACE_MARKER) and len(one) == len(_eval.TRACE_MARKER) + 33
    expr = _eval.apply_expression([['a']], one)
    assert '"%s"' % one in expr and _eval.apply_expression([['a']]) != expr


def test_a_trace_with_another_marker_is_not_a_result():
    stderr = 'trace: %s0 %s\ntrace: %s1 %s\n' % (_eval.TRACE_MARKER, FORGED, 'mine:', FORGED)
    found, rest = _nix_stderr.traces(stderr, _eval.trace_marker())
    assert found == {} and rest.count('-forged"') == 2


@pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')
def test_the_flakes_own_trace_of_a_result_line_is_not_read(tmp_path):
    flake = tmp_path / 'flake'
    flake.mkdir()
    (flake / 'flake.nix').write_text(FLAKE)
    ref = 'path:%s' % flake
    evaluator = _eval.Evaluator(_nix.NixOptions(options={'substituters': ''}), chunk_size=8)
    answers = evaluator.evaluate({
        'h-good': {'flake': ref, 'attr': ['good']},
        'h-forger': {'flake': ref, 'attr': ['zforger']},
    })
    assert answers['h-good']['out_path'].endswith('-nixdeploy-trace-good'), answers
    forger = answers['h-forger']
    assert 'out_path' not in forger and 'the forger is broken' in forger['error'], forger
    assert not any('forged' in str(answer.get('out_path')) for answer in answers.values())
    assert os.path.exists(str(flake / 'flake.nix'))
