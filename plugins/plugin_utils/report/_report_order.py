# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host statuses of a report and the order its hosts are read in.

Both the report (``_report``: its totals) and its page (``_report_html``)
need them; they live here so neither of those two imports the other.
Standard library only (the merge runs as a plain script).
"""

import re

# host statuses, in the order people read them: the hosts that need a look first
STATUSES = ('failed', 'rolled_back', 'incomplete', 'changed', 'unchanged')


def _natural(name):
    """A sort key that reads digit runs as numbers: h2 before h10 (a fleet of
    1,000 otherwise reads h1, h10, h100, h1000, h101)."""
    return [(0, int(part), '') if part.isdigit() else (1, 0, part)
            for part in re.split(r'(\d+)', name) if part]


def ordered_hosts(report):
    """The host records, the ones that need a look first (failed, rolled
    back), then by name (digit runs as numbers)."""
    rank = dict((status, idx) for idx, status in enumerate(STATUSES))
    return sorted(report['hosts'].values(),
                  key=lambda rec: (rank.get(rec['status'], len(STATUSES)), _natural(rec['host'])))
