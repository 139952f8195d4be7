# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters nixdeploy.fleet.status_lines and nixdeploy.fleet.status_metrics
(documented in status_lines.yml and status_metrics.yml)."""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import _status_view


def _facts(hosts, hostvars, reached):
    """{host: its fact nixdeploy_status, or None for a host not read in
    this run}: a host not in ``reached`` may hold an older run's fact (the
    fact cache), which is not what it runs now."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError('the status filters take hostvars, got %s'
                                 % type(hostvars).__name__)
    reached = set(reached or ())
    facts = {}
    for host in hosts or ():
        fact = (hostvars.get(host) or {}).get(_status_view.FACT) if host in reached else None
        facts[host] = fact if isinstance(fact, Mapping) else None
    return facts


def status_lines(hosts, hostvars, reached):
    facts = _facts(hosts, hostvars, reached)
    status = _status_view.StatusRun()
    status.batch = facts
    lines = status.batch_lines()
    return [printable(text) for text in lines + [status.totals_line()]]


def status_metrics(hosts, hostvars, reached):
    return _status_view.metrics(_facts(hosts, hostvars, reached))


class FilterModule(object):

    def filters(self):
        return {'status_lines': status_lines, 'status_metrics': status_metrics}
