"""Every wait of a cascade has a bound (issue 80), each met by a real
process that never ends, the bound made short by setting its constant:

- a hop whose sender's ssh to the receiver never answers is stopped
  (``_peer.HOP_TIMEOUT``), the sender sends no more and the controller
  pushes instead;
- a cascade whose time runs out (``_peer.CASCADE_TIMEOUT``) starts no more
  copies: the hosts not served fail saying so;
- a host's probe that waits on its store's lock, held by another process,
  is stopped (``_peer.PROBE_TIMEOUT``);
- a host waiting for the batch's cascade from a server that never answers
  (another process holds its ``.running`` lock) gives up
  (``_cascade_stage.CASCADE_ANSWER_WAIT``) and gets the controller's push,
  with a warning.

Real hops between targets with Nix stores of their own (copy_target.py);
only ssh's login is faked (test_copy_bounds.py's helpers)."""

import os
import sys
import time

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.copy.test_copy_bounds import Stalled, entry, stall_sender
# the fixtures
# pylint: disable=unused-import
from tests.unit.plugins.plugin_utils.copy.test_copy_bounds import (  # noqa: F401
    closure, holders, hung, pair, ssh)
# pylint: enable=unused-import

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _cascade_stage, _peer)


def test_a_hop_that_stalls_is_stopped_and_the_controller_pushes(tmp_path, monkeypatch, pair,
                                                                closure):
    stalled = Stalled(tmp_path)
    stall_sender(pair, 'h1', stalled)
    monkeypatch.setattr(_peer, 'HOP_TIMEOUT', 3)
    pair.entry('h1')
    h2 = pair.entry('h2')
    (error,) = h2['hop_errors']
    assert error.startswith('h1 -> h2: the hop (nix copy on h1 to h2) did not end within 3s and '
                            'was stopped; h1 sends no more'), error
    assert h2['copied_from'] == 'controller' and 'failed' not in h2
    assert pair.targets['h2'].lacks([closure.top, closure.base]) == []
    assert stalled.pids() and stalled.all_gone()


def test_a_cascade_out_of_time_starts_no_copy_and_says_so(tmp_path, monkeypatch, pair, closure):
    stalled = Stalled(tmp_path)
    stall_sender(pair, 'h1', stalled)
    monkeypatch.setattr(_peer, 'CASCADE_TIMEOUT', 6)
    started = time.monotonic()
    pair.entry('h1')
    assert time.monotonic() - started < 30
    h2 = pair.entry('h2')
    assert h2['failed'] is True and h2['msg'].startswith(
        'h2: the cascade could not copy %s: h1 -> h2: the hop (nix copy on h1 to h2) did not '
        'end within ' % closure.top), h2['msg']
    assert ("controller -> h2: not started: the cascade's time limit of 6s (CASCADE_TIMEOUT) "
            "passed first; deploy again" in h2['msg'])
    assert pair.targets['h2'].lacks([closure.top]) == [closure.top]
    assert stalled.all_gone()


def test_a_probe_that_waits_on_a_locked_store_is_stopped(monkeypatch, pair, holders):
    # another process holds h2's store lock (Nix's big-lock) and never lets go
    db = os.path.join(pair.targets['h2'].store.split('root=', 1)[1], 'nix', 'var', 'nix', 'db')
    os.makedirs(db, exist_ok=True)
    holders(os.path.join(db, 'big-lock'))
    monkeypatch.setattr(_peer, 'PROBE_TIMEOUT', 2)
    pair.entry('h1')
    h2 = pair.entry('h2')
    assert h2['failed'] is True and h2['connection_lost'] is False
    assert h2['msg'].startswith('h2: the probe of its store over ssh did not end within 2s and '
                                'was stopped; look at the host\'s nix-daemon'), h2['msg']


def test_a_host_waiting_on_a_cascade_held_forever_gets_a_push(monkeypatch, pair, closure,
                                                              hung):
    monkeypatch.setattr(_cascade_stage, 'CASCADE_ANSWER_WAIT', 1)
    started = time.monotonic()
    h2 = entry(pair, 'h2', held='copy', hold=hung)
    assert time.monotonic() - started < 30
    assert h2['warnings'][0].startswith(
        "h2: got no answer from the play batch's cascade (one process runs it for the batch) "
        "and got the controller's push instead (no answer for h2 from the copy batch's "
        "process after 1s"), h2['warnings']
    assert (h2['copied_from'], h2['paths_sent']) == ('controller', 2)
    assert pair.targets['h2'].lacks([closure.top, closure.base]) == []
