"""nix_eval's evaluation builds nothing (plugin_utils/evaluation/_eval.py): a system
whose evaluation imports from a derivation fails its host with Nix's message,
and the derivation's output is not in the store afterwards, unless the
task's nix_options turn ``allow-import-from-derivation`` on. Real Nix on
this machine (whatever its nix.conf says), a flake in a temporary folder
(tests/ifd_flake.py)."""

import shutil
import sys

import pytest

from tests import ifd_flake
from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import _eval  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')


def evaluate(ref, **options):
    evaluator = _eval.Evaluator(_nix.NixOptions(options=dict({'substituters': ''}, **options)),
                                chunk_size=8)
    return evaluator.evaluate({'h1': {'flake': ref, 'attr': ['system']}})['h1']


def test_an_import_from_derivation_fails_the_host_and_builds_nothing(tmp_path):
    name = ifd_flake.needle()
    ref = ifd_flake.write(str(tmp_path / 'flake'), name, _nix.native_system())
    answer = evaluate(ref)
    assert 'out_path' not in answer, answer
    assert "option 'allow-import-from-derivation' is disabled" in answer['error'], answer
    assert not ifd_flake.built(name)


def test_nix_options_may_allow_it(tmp_path):
    name = ifd_flake.needle()
    ref = ifd_flake.write(str(tmp_path / 'flake'), name, _nix.native_system())
    answer = evaluate(ref, **{'allow-import-from-derivation': True})
    assert answer.get('out_path', '').endswith('-nixdeploy-ifd-system-ifd'), answer
    assert ifd_flake.built(name)
