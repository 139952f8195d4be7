# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The answers a batch server writes, one whole file a host and request,
and a host's wait for its own.

Each host's worker waits for its own answer only, so a host whose system is
evaluated goes on to its build while the others are still evaluated. It
sleeps on a doorbell (``_wakeup``), rung when its answer is written or the
serving process ends, and looks anyway every ``_wakeup.SAFETY`` seconds: a
process that hangs costs its hosts their bound, one that dies about two
seconds.
"""

import os
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._digest import short_digest
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _job_end, _wakeup
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    entry_path, read_json as _read)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import BatchError

# How often a waiting host without a doorbell looks for its answer (and the
# serving process for requests): it backs off from the first to the last
# value, so a host that waits minutes costs little, and one whose answer
# comes at once is not held.
LOOKS = (0.02, 0.05, 0.1, 0.2)


class AnswerFiles(object):
    """The answers folder of one batch server (``<stem>.d``)."""

    def __init__(self, folder):
        self.folder = folder
        if not os.path.isdir(folder):
            try:
                os.mkdir(folder, 0o700)
            except OSError:
                pass  # made by another host meanwhile, or the job's folder is gone

    def path(self, host, request):
        """The file of ``host``'s answer to ``request``."""
        return entry_path(self.folder, short_digest('answer', host, request))

    def put(self, path, answer):
        """Write one answer (a whole file: a reader never sees half) and
        ring its doorbell. Once the job has ended (its folder gone), nobody
        reads it: nothing is written, and the wave goes on to keep what it
        keeps for the next job (``_job_end``)."""
        try:
            write_json(path, answer)
        except OSError:
            if not _job_end.job_ended(self.folder):
                raise
            return
        _wakeup.ring(path)

    @staticmethod
    def read(path):
        """The answer at ``path``, or None before it is written."""
        return _read(path)

    def wait(self, path, deadline, process):
        """The answer at ``path`` as soon as it is written; None at
        ``deadline`` (``time.monotonic()``), BatchError when ``process``
        (the serving ``DetachedProcess``) is gone without writing it."""
        # opened before the first look: a ring after that look is heard
        with _wakeup.Wakeup(path) as bell:
            looks = 0
            while True:
                found = _read(path)
                if found is not None:
                    return found
                if (bell.fd is not None or looks % 10 == 9) and not process.running():
                    found = _read(path)
                    if found is not None:
                        return found
                    raise BatchError('the batch\'s work stopped before answering this host%s'
                                     % process.log_tail())
                left = deadline - time.monotonic()
                if left < 0:
                    return None
                if bell.fd is not None:
                    bell.wait(min(_wakeup.SAFETY, left))
                else:
                    time.sleep(LOOKS[min(looks, len(LOOKS) - 1)])
                looks += 1
