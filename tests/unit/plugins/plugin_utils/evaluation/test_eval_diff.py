"""A short differential campaign of the evaluation cache's reuse across
commits (tests/evaldiff; ``make eval-diff`` runs the long one): random
commits to a flake of the shapes people write, every host of every commit
answered by the stage with one persistent cache and checked against a plain
``nix eval``. Fixed seeds, then one fresh seed, printed with the command
that replays it. Real Nix and git on this machine."""

import os
import shutil

import pytest

from tests.collection import REPO
from tests.evaldiff import runner

pytestmark = pytest.mark.skipif(shutil.which('nix') is None or shutil.which('git') is None,
                                reason='needs nix and git')

# (seed, random commits after the first): together they add, remove and
# rename hosts, bump an input, move files and flip executable bits
FIXED = (('349', 9), ('17', 9))
FRESH_COMMITS = 6
# where the lead's reuse across commits lives: once it is there, a
# campaign that never reuses a host proves nothing
RECORD = os.path.join(REPO, 'plugins', 'plugin_utils', 'evaluation', '_eval_record.py')


class StaleCampaign(runner.Campaign):
    """A stage that answers every commit with the first commit's answers:
    what a reuse that never notices a change would give."""

    first = None

    def stage(self, expected, cache):
        if self.first is None:
            self.first = super().stage(expected, cache)
        return self.first


def play(seed, commits, tmp_path, kind=runner.Campaign):
    lines = []
    totals = kind(seed, commits, parent=str(tmp_path), log=lines.append).run()
    return totals, '\n'.join(lines)


def test_a_stale_answer_is_a_difference_with_what_replays_it(tmp_path):
    """The check itself: seed 349's first commit edits hosts/mike's tag."""
    totals, shown = play('349', 1, tmp_path, StaleCampaign)
    # every host is one: another answer (mike), or the right one of the
    # commit before (its revision is not the commit's)
    assert len(totals.differences) == totals.answers // 2, shown
    text = [d for d in totals.differences if ' host mike ' in d][0]
    assert text.startswith('DIFFERENCE (another answer): seed 349, commit 1, host mike '), text
    assert 'tag: reference' in text and 'edit hosts/mike' in text, text
    assert 'replay: python -m tests.evaldiff --seed 349 --commits 1 --keep' in text, text
    # the work folder of a failed campaign is left for a look
    assert 'the work folder is kept' in shown


def test_fixed_seeds_answer_as_plain_nix_does(tmp_path):
    reused = 0
    for seed, commits in FIXED:
        totals, shown = play(seed, commits, tmp_path)
        assert not totals.differences, shown
        assert totals.commits == commits + 1 and totals.answers >= totals.commits * 6, shown
        reused += totals.how['reused']
    if os.path.exists(RECORD):
        assert reused > 0, 'no host was reused in %d commits of seeds %s' % (
            sum(c + 1 for _s, c in FIXED), ', '.join(s for s, _c in FIXED))


def test_a_fresh_seed_answers_as_plain_nix_does(tmp_path):
    seed = str(runner.fresh_seed())
    print('eval-diff fresh seed %s; replay: %s' % (seed, runner.replay_command(
        seed, FRESH_COMMITS)))
    totals, shown = play(seed, FRESH_COMMITS, tmp_path)
    assert not totals.differences, 'seed %s:\n%s' % (seed, shown)
    assert totals.commits == FRESH_COMMITS + 1, shown
