# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The detached side of a play batch's work, gathered in one place for the
code that runs inside those processes (the evaluators) and for tests. A
phase never uses these directly: it gives a ``_batch_work.BatchWork`` to
its action's ``batch_answer``.

- ``_stream_entries.Stream``: the entries a detached process writes, each
  host's whole as soon as it is known, and the doorbell each host waits on;
- ``_batch_server.BatchServer``: built on them, takes requests as the hosts
  ask and answers them in waves (every batch work);
- ``_detached``: the detached process itself (forked from a worker, ended
  with the job), ``StreamError`` and what a failed work says;
- ``_waits``: the bound of every wait (a lock, a host's answer).
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (
    CHILD_GROUPS, StreamError, without_tracebacks, work_failure)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (
    GATHER_MAX, GATHER_QUIET, GATHER_STALL, LINGER, RESTARTS, UNANSWERED, BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stream_entries import Stream

__all__ = ['BatchServer', 'CHILD_GROUPS', 'GATHER_MAX', 'GATHER_QUIET', 'GATHER_STALL', 'LINGER',
           'RESTARTS', 'Stream', 'StreamError', 'UNANSWERED', 'without_tracebacks',
           'work_failure']
