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
from tests.evaldiff import shapes as evaldiff_shapes

pytestmark = pytest.mark.skipif(shutil.which('nix') is None or shutil.which('git') is None,
                                reason='needs nix and git')

# (seed, random commits after the first, every shape of issues 76 and 89
# from the first commit): together they add, remove and rename hosts, bump
# an input, move files and flip executable bits; the last two have every
# shape of issue 76 (outputs.nix for 17, parts/ for 349, odd names, follows,
# positions, toFile of ./., ...) and of issue 89 (outputs that export
# inputs, outputs and sourceInfo, an input's .inputs read, self's names;
# their first commit is left in the work tree), and each commit of theirs
# is checked
FIXED = (('349', 6, False), ('17', 6, False), ('349', 3, True), ('17', 3, True))
FRESH_COMMITS = 5
# where the lead's reuse across commits lives: once it is there, a
# campaign that never reuses a host proves nothing
RECORD = os.path.join(REPO, 'plugins', 'plugin_utils', 'evaluation', 'record', '_record.py')


class StaleCampaign(runner.Campaign):
    """A stage that answers every commit with the first commit's answers:
    what a reuse that never notices a change would give."""

    first = None

    def stage(self, expected, cache):
        if self.first is None:
            self.first = super().stage(expected, cache)
        return self.first


def play(seed, commits, tmp_path, kind=runner.Campaign, every_shape=False):
    lines = []
    totals = kind(seed, commits, parent=str(tmp_path), log=lines.append,
                  every_shape=every_shape).run()
    return totals, '\n'.join(lines)


def test_a_stale_answer_is_a_difference_with_what_replays_it(tmp_path):
    """The check itself: seed 349's first commit edits sub/hosts/sb's tag."""
    totals, shown = play('349', 1, tmp_path, StaleCampaign)
    # every host is one: another answer (sub/sb), or the right one of the
    # commit before (its revision is not the commit's)
    assert len(totals.differences) == totals.answers // 2, shown
    text = [d for d in totals.differences if ' host sub/sb ' in d][0]
    assert text.startswith('DIFFERENCE (another answer): seed 349, commit 1, host sub/sb '), text
    assert 'tag: reference' in text and 'edit sub/hosts/sb' in text, text
    assert 'replay: python -m tests.evaldiff --seed 349 --commits 1 --keep' in text, text
    # the work folder of a failed campaign is left for a look
    assert 'the work folder is kept' in shown


def test_the_fixed_campaigns_hold_every_shape_from_their_first_commit():
    """Drawn only (no Nix): the fixed campaigns with every shape have each
    shape of issues 76 and 89 at commit 0, where the first answers are
    checked."""
    found = set()
    for seed, _commits, every_shape in FIXED:
        fleet = evaldiff_shapes.draw(runner.rng_for(seed, 0), '/nowhere', False, every_shape)
        found.update(fleet.in_use())
    wanted = set(evaldiff_shapes.SHAPES + evaldiff_shapes.SHAPES_89)
    assert found == wanted, sorted(wanted - found)


def test_fixed_seeds_answer_as_plain_nix_does(tmp_path):
    reused = 0
    shapes = set()
    for seed, commits, every_shape in FIXED:
        totals, shown = play(seed, commits, tmp_path, every_shape=every_shape)
        assert not totals.differences, shown
        assert totals.commits == commits + 1 and totals.answers >= totals.commits * 6, shown
        reused += totals.how['reused']
        shapes.update(totals.shapes)
    # every shape of issues 76 and 89 was checked, its first answers
    # included, and a commit left in the work tree
    wanted = set(evaldiff_shapes.SHAPES + evaldiff_shapes.SHAPES_89 + ('dirty tree',))
    assert shapes == wanted, sorted(wanted - shapes)
    if os.path.exists(RECORD):
        assert reused > 0, 'no host was reused in %d commits of seeds %s' % (
            sum(c + 1 for _s, c, _e in FIXED), ', '.join(s for s, _c, _e in FIXED))


def test_a_fresh_seed_answers_as_plain_nix_does(tmp_path):
    seed = str(runner.fresh_seed())
    print('eval-diff fresh seed %s; replay: %s' % (seed, runner.replay_command(
        seed, FRESH_COMMITS)))
    totals, shown = play(seed, FRESH_COMMITS, tmp_path)
    assert not totals.differences, 'seed %s:\n%s' % (seed, shown)
    assert totals.commits == FRESH_COMMITS + 1, shown
