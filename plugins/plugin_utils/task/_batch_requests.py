# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The requests a batch server has yet to take: one file a host in the
server's requests folder, and one file of the requests the first host of a
batch foresaw for the others (``foreseen.json``). Hosts write them holding
the server's lock; the serving process takes them holding it too, so no
request is read half written or taken twice."""

import json
import os

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    entry_path, read_json as _read)

# the file of the requests the first host foresaw, in the requests' folder
# (a host's request file is named by a digest: never this name)
FORESEEN = 'foreseen.json'

# how a request was taken: a host's own, one the first host foresaw for
# it, or a host's word that it will not ask
ASKED, FORESAW, DECLINED = 'asked', 'foreseen', 'declined'


class RequestFiles(object):
    """The requests folder of one batch server (``<stem>.requests``)."""

    def __init__(self, folder):
        self.folder = folder
        if not os.path.isdir(folder):
            try:
                os.mkdir(folder, 0o700)
            except OSError:
                pass  # made by another host meanwhile, or the job's folder is gone

    def ask(self, host, request):
        """Write ``host``'s own request (JSON data)."""
        write_json(entry_path(self.folder, host), {'host': host, 'request': request})

    def decline(self, host):
        """Write ``host``'s word that it will not ask this time."""
        write_json(entry_path(self.folder, host), {'host': host, 'declined': True})

    def foresee(self, host, foreseen):
        """Write the requests ``host`` foresaw for the other hosts
        ({host: request}), in one file whatever the batch's size: the first
        host's cost. One plain write: its reader holds the lock the writer
        holds."""
        foreseen = dict((name, as_json(request)) for name, request in foreseen.items()
                        if name != host)
        if foreseen:
            with open(os.path.join(self.folder, FORESEEN), 'w') as handle:
                handle.write(json.dumps({'foreseen': foreseen}))

    def take(self):
        """Every request waiting, each removed as it is read: a list of
        (host, request, how), the foreseen first (a host's own request,
        taken after, wins), how one of ASKED, FORESAW, DECLINED."""
        taken = []
        for name in sorted(os.listdir(self.folder), key=lambda n: (n != FORESEEN, n)):
            if name.startswith('.'):
                continue  # a request being written (write_json's temp file)
            path = os.path.join(self.folder, name)
            found = _read(path)
            try:
                os.unlink(path)
            except OSError:
                pass
            if not isinstance(found, dict):
                continue
            if isinstance(found.get('foreseen'), dict):
                taken.extend((host, request, FORESAW)
                             for host, request in found['foreseen'].items())
            elif 'host' in found:
                taken.append((found['host'], found.get('request'),
                              DECLINED if found.get('declined') else ASKED))
        return taken

    def pending(self, host):
        """Whether a request of ``host`` waits untaken (its own, or the one
        foreseen for it)."""
        if os.path.exists(entry_path(self.folder, host)):
            return True
        found = _read(os.path.join(self.folder, FORESEEN))
        return isinstance(found, dict) and host in (found.get('foreseen') or {})


def as_json(request):
    """``request`` as it reads back from its file (tuples become lists):
    what a foreseen request and a host's own are compared as."""
    return json.loads(json.dumps(request))
