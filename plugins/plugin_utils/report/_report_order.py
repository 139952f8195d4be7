# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host statuses of a report and the order its hosts are read in.

Both the report (``_report``: its totals) and its page (``_report_html``)
need them; they live here so neither of those two imports the other.
Standard library only (the merge runs as a plain script).
"""

try:
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import natural_key
except ImportError:
    # run as a plain script (the merge command): common's, on the path _report.py set
    from _data import natural_key  # pylint: disable=import-error

# host statuses, in the order people read them: the hosts that need a look first
STATUSES = ('failed', 'rolled_back', 'incomplete', 'changed', 'unchanged')
# what a host of an interrupted run had reached when it was not done
# (report/_interrupted.py), in the words the console, the JSON's totals and
# the page all use: one word for one state everywhere
ACTIVATING = 'activating'
STOPPED = 'stopped'
INTERRUPTED_WORDS = {ACTIVATING: 'activating', STOPPED: 'stopped before activation'}


def ordered_hosts(report):
    """The host records, the ones that need a look first (failed, rolled
    back), then by name (digit runs as numbers)."""
    rank = dict((status, idx) for idx, status in enumerate(STATUSES))
    return sorted(report['hosts'].values(),
                  key=lambda rec: (rank.get(rec['status'], len(STATUSES)), natural_key(rec['host'])))


def reached_state(rec):
    """What a host record of an interrupted run had reached when it was not
    done (``activating``, ``stopped``), or None: its status says it."""
    state = (rec.get('interrupted') or {}).get('state')
    return state if state in INTERRUPTED_WORDS else None
