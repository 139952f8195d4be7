"""The spot check (plugin_utils/evaluation/_eval_stage_spot_check.py,
docs/eval-cache.md "The spot check"): a recorded evaluator's answers are
drawn too, so one that is not what Nix gives is caught on the run that
records it, before any of its flake's answers is given. Real Nix, git and
strace; every answer given is checked against a plain `nix eval`
(``Flake.run``)."""

import os

import pytest

from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse import (  # noqa: F401
    Flake, how, pytestmark)

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import (  # noqa: E402
    _eval_reuse)


@pytest.fixture
def wrong_recorder(monkeypatch):
    """A recorder whose ``self`` is not Nix's (as a new Nix, or a flake
    shape record.nix does not call as Nix does, would make it): its
    ``lastModified`` is a second late."""
    spec_of = _eval_reuse.Reuse._spec

    def late(*args):
        spec = spec_of(*args)
        spec.call['info']['lastModified'] += 1
        return spec
    monkeypatch.setattr(_eval_reuse.Reuse, '_spec', staticmethod(late))


def test_a_recorded_answer_that_is_not_nix_s_is_caught_on_its_first_run(tmp_path, wrong_recorder):
    flake = Flake(str(tmp_path))
    for name in 'abcd':
        flake.write('hosts/%s.nix' % name, '{ self }: { v = toString self.lastModified; }\n')
    flake.commit('every host reads lastModified')
    # (Flake.run: every answer given is a plain `nix eval`'s)
    entries, _figures = flake.run(workers=2, reuse_check=1)
    failed = [name for name, entry in entries.items() if 'error' in entry]
    assert len(failed) == 1, entries
    assert 'the answer a recorded evaluation gave for' in entries[failed[0]]['error']
    assert 'is not what Nix gives for this commit' in entries[failed[0]]['error']
    assert all(how(entries)[name] == 'evaluated' for name in 'abcd' if name not in failed)
    assert any(name.startswith('distrust-') for name in os.listdir(flake.cache))
    # reuse (and recording) stays off for it, and says so
    flake.write('README', 'y')
    flake.commit('readme')
    entries, _figures = flake.run(workers=2, reuse_check=1)
    assert how(entries) == dict.fromkeys('abcd', 'evaluated')
    assert any('reuse stays off for this flake until' in note for note in entries['a']['notes'])


def test_a_right_recorder_is_checked_once_then_costs_its_turn(tmp_path):
    """A recorder found right is marked (the drawn host, and the recorder:
    a flake, this Nix, this record.nix), and every other host's wait is
    kept; the next commit reuses as before."""
    flake = Flake(str(tmp_path))
    entries, _figures = flake.run(workers=2, reuse_check=1)
    assert how(entries) == dict.fromkeys('abcd', 'evaluated')
    # one recorded host drawn (the recorder is new), found right: its mark
    # and its recorder's; every other host's wait
    marks = [name for name in os.listdir(flake.cache) if name.startswith('checked-')]
    assert len(marks) == 5, marks
    assert not any(name.startswith('distrust-') for name in os.listdir(flake.cache))
    flake.write('files/b.txt', 'B')
    flake.commit('b')
    entries, _figures = flake.run(workers=2, reuse_check=1)
    # (which hosts follow b in its evaluator depends on the host drawn first)
    assert how(entries)['b'] == 'evaluated', entries
    assert list(how(entries).values()).count('reused') >= 2, entries
