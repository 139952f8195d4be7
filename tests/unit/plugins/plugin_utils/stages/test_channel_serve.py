"""nix_channel's batch server rebuilds its work from the context a host's
task wrote (``serve_channel``, ``ChannelBatch``: its state, force, check
mode, repository, Nix options): with real git, the real batch server and
the stage as a host's task runs it (``test_channel_stage.Play``), a ref
taken back to an earlier commit moves only where the task says ``force``,
and check mode moves nothing even then."""

from tests.unit.plugins.plugin_utils.publish.test_publish import commit
# play: the play batch over a throwaway checkout and bare channel repository
from tests.unit.plugins.plugin_utils.stages.test_channel_stage import (  # noqa: F401  pylint: disable=unused-import
    HOSTS, play)

REF = 'refs/heads/nixos-tested-h1'


def _moved_to(play, revision):
    """Every host's ref at ``revision``, moved by the batch's server."""
    for host in HOSTS:
        play.deploys(host, revision)
    for host in HOSTS:
        assert 'error' not in play.entry(host), host
    assert set(play.refs().values()) == {revision}


def test_a_ref_goes_back_only_with_force_and_not_in_check_mode(play):
    first, second = commit(play.work, 'a'), commit(play.work, 'b')
    _moved_to(play, second)
    # h1 deploys the earlier commit again: not a fast-forward
    play.deploys('h1', first)
    kept = play.entry('h1')
    # unforced: the ref holds a newer commit, it stays there
    assert kept['result']['status'] == 'ahead', kept
    assert play.refs()[REF] == second
    # forced in check mode: what would move, nothing moved
    would = play.entry('h1', check_mode=True, force=True)
    assert would['result']['status'] == 'would move', would
    assert play.refs()[REF] == second
    # forced: the ref goes back
    forced = play.entry('h1', force=True)
    assert forced['result']['status'] == 'moved' and forced['result']['before'] == second, forced
    assert play.refs()[REF] == first
