"""A flake's own nixConfig in the evaluation stage
(plugin_utils/evaluation/stage/_stage.py, pool/_pool.py): Nix does not apply
it (accept-flake-config = false on every controller Nix process) and warns
in every evaluator; the stage gives every answer one and the same note
naming the settings, which the action says once a run. The operator's
opting in is said even without a cache. Real Nix on this machine."""

import shutil
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._batch import (  # noqa: E402
    EvalStage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._source import (  # noqa: E402
    RunSources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_config import (  # noqa: E402
    ACCEPTED_NOTE)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import short_digest  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')

# three systems, each its own request; the environment's word goes into
# their names only where the flake's pure-eval = false is applied
FLAKE = '''{
  nixConfig.pure-eval = false;
  nixConfig.sandbox = false;
  outputs = { self }:
    let sys = n: derivation { name = "sys-${n}${builtins.getEnv "NIXDEPLOY_TEST_WORD"}";
                              builder = "/bin/sh"; system = "x86_64-linux"; };
    in { a = sys "a"; b = sys "b"; c = sys "c"; };
}
'''


def requests_for(flake):
    return dict(('h-%s' % name, {'flake': flake, 'attr': [name], 'attr_string': name,
                                 'platform': 'nixos'}) for name in 'abc')


@pytest.fixture
def flake(tmp_path, monkeypatch):
    folder = tmp_path / 'flake'
    folder.mkdir()
    (folder / 'flake.nix').write_text(FLAKE)
    # as a CI's nix.conf has it: the collection's own line still wins
    monkeypatch.setenv('NIX_CONFIG', 'experimental-features = nix-command flakes\n'
                       'accept-flake-config = true')
    monkeypatch.setenv('NIXDEPLOY_TEST_WORD', 'fromenv')
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'config'))
    return 'path:%s' % folder


def test_the_refused_settings_are_one_note_said_once_a_run(flake, tmp_path):
    answers = {}
    # one host per evaluator process: each of them warns
    figures = EvalStage(NixOptions(options={'substituters': ''}), workers=2,
                        chunk_size=1).evaluate(requests_for(flake), answers.__setitem__)
    assert figures['processes'] == 3, figures
    notes = set()
    for host, entry in answers.items():
        assert 'fromenv' not in entry['answer']['drv_path'], entry
        refused = [n for n in entry['notes'] if 'nixConfig sets' in n]
        assert refused == ["the flake %s's nixConfig sets pure-eval, sandbox: not applied "
                           "(accept-flake-config = false; nix_options accept-flake-config: "
                           "true applies them)" % flake], (host, entry['notes'])
        assert ACCEPTED_NOTE not in entry['notes']
        notes.update(entry['notes'])
    # the action's rule: a note is said by the first host that carries it
    folder = tmp_path / 'run'
    folder.mkdir(mode=0o700)
    sources = RunSources(str(folder))
    said = [note for entry in answers.values() for note in entry['notes']
            if sources.warn_once(short_digest(note))]
    assert sorted(said) == sorted(notes) and len(said) == len(notes)


def test_the_operators_opting_in_is_said_without_a_cache_too(flake):
    answers = {}
    EvalStage(NixOptions(options={'substituters': '', 'accept-flake-config': True}),
              workers=1).evaluate(requests_for(flake), answers.__setitem__)
    for host, entry in answers.items():
        # the flake's settings applied: its system read the environment
        assert 'fromenv' in entry['answer']['drv_path'], entry
        assert ACCEPTED_NOTE in entry['notes'], entry['notes']
        assert not [n for n in entry['notes'] if 'nixConfig sets' in n], entry['notes']
    answers = {}
    EvalStage(NixOptions(options={'substituters': ''}, extra_args=['--accept-flake-config']),
              workers=1).evaluate(requests_for(flake), answers.__setitem__)
    assert all(ACCEPTED_NOTE in e['notes'] for e in answers.values()), answers
