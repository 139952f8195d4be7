# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report's status section: what a ``nixdeploy.fleet.status`` run read.

The report callback gives every task result to ``StatusSection.take``
(only nix_status's are kept, and the hosts the evaluation's login probe
found off); ``add_to`` puts the section into the JSON report as ``status``
({hosts: {host: fact}, totals: {class: hosts}}, the facts as nix_status
keeps them, an off host as ``{class: unreachable}``) when the run read any
host; ``page`` wraps the HTML renderer so that the page shows it as a
table before its footer.
"""

from html import escape

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._reboot_rules import short
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import _status_class, _status_view

_FOOTER = '<footer'


class StatusSection:
    """The status results of one run."""

    def __init__(self):
        self.read = _status_view.StatusRun()
        self.facts = {}
        self.unreached = set()

    def take(self, host, action, status, result):
        if str(action or '').rpartition('.')[2] == 'nix_eval' and status == 'unreachable':
            self.unreached.add(host)
        if self.read.take(action, host, status, result):
            batch, self.read.batch = self.read.batch, {}
            self.facts.update(batch)

    def add_to(self, report):
        """``report`` with its ``status`` section, when the run read a host."""
        if not any(self.facts.values()):
            return report
        hosts = dict((host, fact or {'class': _status_class.UNREACHABLE})
                     for host, fact in self.facts.items())
        for host in self.unreached:
            hosts.setdefault(host, {'class': _status_class.UNREACHABLE})
        report['status'] = {
            'hosts': hosts,
            'totals': dict(_status_view.totals(fact['class'] for fact in hosts.values())),
        }
        return report


def _rows(section):
    order = dict((name, index) for index, name in enumerate(_status_class.NAMES))
    hosts = section['hosts']
    for host in sorted(hosts, key=lambda h: (order.get(hosts[h].get('class'), 0), h)):
        fact = hosts[host]
        change = fact.get('closure_diff')
        cells = (host, fact.get('class'), fact.get('generation'), short(fact.get('current')),
                 short(fact.get('desired')) if fact.get('desired') else '',
                 # none where the controller's store lacks a system: unknown, not nothing
                 _status_view.closure_words(change) if change else '',
                 '; '.join(fact.get('reasons') or ()))
        yield '<tr>%s</tr>' % ''.join('<td>%s</td>' % escape(u'%s' % ('' if c is None else c))
                                      for c in cells)


def section_html(section):
    """The status section as HTML: the totals, then a row a host, worst first."""
    hosts = section['hosts']
    totals = ', '.join('%d %s' % (n, escape(name)) for name, n in
                       _status_view.totals(f.get('class') for f in hosts.values()))
    return (u'<section id="status"><h2>Status</h2><p>%s: %s</p><table><thead><tr>'
            u'<th>Host</th><th>Class</th><th>Generation</th><th>Runs</th><th>Flake gives</th>'
            u'<th>Closure difference</th><th>Why</th></tr></thead><tbody>%s</tbody></table>'
            u'</section>\n'
            % (_status_view.counted(len(hosts), 'host'), totals, ''.join(_rows(section))))


def page(render):
    """``render`` (the report's page) with the status section before the footer."""
    def with_status(report):
        text = render(report)
        if not report.get('status'):
            return text
        at = text.rfind(_FOOTER)
        at = at if at >= 0 else text.rfind('</body>')
        return text[:at] + section_html(report['status']) + text[at:]
    return with_status
