# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy report as one self-contained HTML page.

Inline CSS, no script, no image, no font, nothing fetched: the page's
Content-Security-Policy forbids every load, so it reads the same from an AWX
artifact, a CI workspace or a mail attachment. Every value from the
inventory, the flake or Nix is escaped.
"""

import time
from html import escape

try:
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._cause import wrap
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report import (
        STATUSES, ordered_hosts)
except ImportError:
    # run as a plain script (the merge command): the sibling file and
    # common's (on the path _report.py set)
    from _cause import wrap  # pylint: disable=import-error
    from _report import STATUSES, ordered_hosts  # pylint: disable=import-error

STATUS_TEXT = {'failed': 'failed', 'rolled_back': 'rolled back', 'incomplete': 'not activated',
               'changed': 'changed', 'unchanged': 'unchanged'}
CHECK_STATUS_TEXT = dict(STATUS_TEXT, changed='would change')
# characters a line of the host table's outcome holds (broken on spaces)
SUMMARY_WIDTH = 90
# what a run was (the run's ``mode``), as the header says it
MODE_TEXT = {'check': u'<b>check mode</b>: nothing changed',
             'rollback': u'<b>rollback</b>: hosts went back to an earlier generation',
             'rollback-check': u'<b>rollback, check mode</b>: nothing changed'}
# a run that has no host to show (its ``state``), as the page says it
STATE_TEXT = {'running': u'This run started at %(when)s and has no result (yet): it is still '
                         u'running, or it ended before any host was deployed (no host selected, '
                         u'an inventory that did not parse, a failure before the first phase). '
                         u'Reports of earlier runs are kept beside this page under their own names.',
              'no_hosts': u'This run started at %(when)s and ended without deploying any host '
                          u'(no host selected, or none reached a phase of the deploy).',
              'inventory_failed': u'This run started at %(when)s and stopped before any host: its '
                                  u'inventory did not parse (the run printed why). Reports of '
                                  u'earlier runs are kept beside this page under their own names.'}
# phase outcomes with a colour of their own; any other outcome is drawn grey
OUTCOMES = ('changed', 'ok', 'failed', 'rolled_back', 'unreachable', 'skipped')

CSS = u"""
:root { --fail: #c53030; --back: #c05621; --chg: #2b6cb0; --ok: #2f855a; --grey: #a0aec0;
        --unr: #553c9a;
        --ink: #1a202c; --muted: #4a5568; --line: #e2e8f0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); margin: 0 auto; padding: 24px 32px 48px; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0; }
.meta span + span::before { content: " \\00b7  "; }
code, pre, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
.totals { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 16px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 112px; }
.card b { display: block; font-size: 20px; }
.card small { color: var(--muted); }
.card.failed b { color: var(--fail); } .card.rolled_back b { color: var(--back); }
.card.unreachable b { color: var(--unr); }
.badge.unreachable { background: var(--unr); }
.attention article.unreachable { border-color: var(--unr); background: #faf5ff; }
.running { border: 1px solid var(--line); border-left: 4px solid var(--grey); padding: 8px 12px; }
.card.changed b { color: var(--chg); } .card.unchanged b { color: var(--ok); }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px;
         color: #fff; background: var(--grey); white-space: nowrap; }
.badge.failed { background: var(--fail); } .badge.rolled_back { background: var(--back); }
.badge.changed { background: var(--chg); } .badge.unchanged { background: var(--ok); }
.badge.hostkey { background: #975a16; }
.card.hostkey b { color: #975a16; }
.attention article { border-left: 4px solid var(--fail); background: #fff5f5; padding: 8px 12px;
                     margin: 0 0 10px; border-radius: 0 6px 6px 0; }
.attention article.rolled_back { border-color: var(--back); background: #fffaf0; }
.attention h3 { margin: 0; font-size: 15px; }
.attention p { margin: 4px 0; }
pre { white-space: pre-wrap; word-break: break-word; background: #f7fafc; border: 1px solid var(--line);
      padding: 6px 8px; margin: 6px 0 0; max-height: 16em; overflow: auto; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; color: var(--muted); font-size: 12px; margin-bottom: 6px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: -2px;
            margin-right: 4px; }
.gantt { display: grid; grid-template-columns: minmax(120px, 220px) 1fr 70px; gap: 3px 10px;
         align-items: center; }
.gantt .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.gantt .name small { color: var(--muted); }
.gantt .dur { text-align: right; color: var(--muted); font-size: 12px; }
.track { position: relative; height: 22px; background: #f7fafc; border-radius: 3px; }
.axis { position: relative; height: 18px; color: var(--muted); font-size: 11px; }
.axis span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.axis span:first-child { transform: none; } .axis span:last-child { transform: translateX(-100%); }
.bar { position: absolute; top: 2px; height: 18px; min-width: 3px; border-radius: 3px;
       color: #fff; font-size: 11px; line-height: 18px; padding: 0 4px; overflow: hidden;
       white-space: nowrap; text-overflow: clip; border-right: 1px solid #fff; }
.o-changed { background: var(--chg); } .o-ok { background: var(--ok); }
.o-failed { background: var(--fail); } .o-rolled_back { background: var(--back); }
.o-unreachable { background: var(--unr); } .o-skipped, .o-other { background: var(--grey); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
/* one failed host's long outcome must not squeeze these into three lines on every row */
td.mono, td.nowrap { white-space: nowrap; }
.diff summary { cursor: pointer; }
.diff ul { margin: 4px 0; padding-left: 20px; }
.add { color: var(--ok); } .rem { color: var(--fail); } .chg { color: var(--chg); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""


def _e(value):
    return escape(u'%s' % ('' if value is None else value), quote=True)


def human_bytes(value, signed=False):
    if value is None:
        return '-'
    sign = '+' if signed and value > 0 else ('-' if value < 0 else '')
    amount = float(abs(value))
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if amount < 1024 or unit == 'GiB':
            text = '%d %s' % (amount, unit) if unit == 'B' else '%.1f %s' % (amount, unit)
            return sign + text
        amount /= 1024.0
    return sign + '%d B' % amount


def seconds(value):
    if value is None:
        return '-'
    if value < 60:
        return '%.1f s' % value
    return '%dm %02ds' % (value // 60, value % 60)


def when(value):
    if value is None:
        return '-'
    return time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(value))


def generation(gen):
    if not gen or gen.get('generation') is None:
        return '-'
    return u'%s' % gen['generation']


def _generations(gen):
    """``; generation 4, now 4 (tried 5)`` when the host's generations are known."""
    if gen['before'].get('generation') is None and gen['after'].get('generation') is None:
        return u''
    text = u'; generation %s, now %s' % (_e(generation(gen['before'])), _e(generation(gen['after'])))
    if gen.get('attempted') and gen['attempted'].get('generation') is not None:
        text += u' (tried %s)' % _e(generation(gen['attempted']))
    return text


HOST_KEY_TITLE = (u'deployed with host key checking turned off for this host (its explicit '
                  u'opt-out): whoever answered at its address got the system')


def _host_key_badge(rec):
    """The badge of a host deployed without checking its host key."""
    if not rec.get('host_key_unchecked'):
        return u''
    return (u' <span class="badge hostkey" title="%s">host key not checked</span>'
            % _e(HOST_KEY_TITLE))


def _status_text(rec, check_mode):
    if rec['status'] == 'failed' and (rec.get('unreachable') or rec.get('connection_lost')):
        return u'unreachable'
    return (CHECK_STATUS_TEXT if check_mode else STATUS_TEXT).get(rec['status'], rec['status'])


def _status_class(rec):
    """The colour of a host's badge: an unreachable host (Ansible's, or a
    phase that lost its connection) its own, not a failed one's."""
    if rec['status'] == 'failed' and (rec.get('unreachable') or rec.get('connection_lost')):
        return u'unreachable'
    return rec['status']


def _summary_lines(text):
    """The outcome words broken on spaces into short lines (never cut mid-word)."""
    return u'<br>'.join(_e(line) for line in wrap(text or u'', SUMMARY_WIDTH))


def _header(report):
    runs = report['runs']
    totals = report['totals']
    started = min([r['started'] for r in runs if r.get('started') is not None] or [None])
    items = [u'started %s' % _e(when(started)), u'%s' % _e(seconds(totals.get('duration')))]
    if len(runs) > 1:
        items.append(u'%d runs merged' % len(runs))
    limits = sorted(set(r.get('limit') for r in runs if r.get('limit')))
    items.append(u'limit <code>%s</code>' % _e(', '.join(limits)) if limits else u'no limit')
    modes = sorted(set(r.get('mode') for r in runs if r.get('mode') in MODE_TEXT))
    for mode in modes:
        items.append(MODE_TEXT[mode])
    if not modes and any(r.get('check_mode') for r in runs):
        items.append(MODE_TEXT['check'])
    for flake in _flakes(runs):
        text = u'flake <code>%s</code>' % _e(flake.get('ref'))
        if flake.get('revision'):
            text += u' rev <code>%s</code>' % _e(flake['revision'][:12])
        elif flake.get('nar_hash'):
            text += u' <code>%s</code>' % _e(flake['nar_hash'][:19])
        if flake.get('dirty'):
            text += u' (dirty: uncommitted changes)'
        items.append(text)
    items.append(u'nixdeploy.fleet %s' % _e(report.get('collection_version') or '?'))
    return (u'<header><h1>nixdeploy report</h1><p class="meta">%s</p></header>'
            % ''.join(u'<span>%s</span>' % item for item in items))


def _flakes(runs):
    seen, out = set(), []
    for run in runs:
        for flake in run.get('flakes') or []:
            key = (flake.get('ref'), flake.get('revision'), flake.get('nar_hash'))
            if key not in seen:
                seen.add(key)
                out.append(flake)
    return out


def _totals(report, check_mode):
    totals = report['totals']
    cards = [('hosts', totals['hosts'], 'hosts')]
    failed, unreachable = failed_counts(report)
    # as the PLAY RECAP and the exit code count them: a rolled-back host is a
    # failed host, and so is one a phase lost the connection to; only a host
    # Ansible itself could not reach is unreachable (a tile of its own)
    lost = len([r for r in report['hosts'].values() if r['status'] == 'failed'
                and r.get('connection_lost') and not r.get('unreachable')])
    within = (['%d rolled back' % totals['rolled_back']] if totals.get('rolled_back') else []) + \
        (['%d unreachable' % lost] if lost else [])
    cards.append(('failed', failed, 'failed (%s)' % ', '.join(within) if within else 'failed'))
    if unreachable:
        cards.append(('unreachable', unreachable, 'unreachable'))
    for status in STATUSES[2:]:
        cards.append((status, totals.get(status, 0), CHECK_STATUS_TEXT[status] if check_mode
                      else STATUS_TEXT[status]))
    diff = totals.get('closure_diff') or {}
    cards += [('', human_bytes(totals.get('bytes_sent')),
               '%d paths copied' % totals.get('paths_sent', 0)),
              ('', '+%d -%d ~%d' % (diff.get('added', 0), diff.get('removed', 0),
                                    diff.get('changed', 0)),
               'packages, %s' % human_bytes(diff.get('size_change_bytes'), signed=True)),
              ('', totals.get('nix_evaluations', 0), _evaluations_label(totals)),
              ('', seconds(totals.get('duration')), 'duration')]
    if totals.get('host_key_unchecked'):
        cards.append(('hostkey', totals['host_key_unchecked'], 'host key not checked'))
    return u'<section class="totals">%s</section>' % ''.join(
        u'<div class="card %s"><b>%s</b><small>%s</small></div>' % (_e(cls), _e(value), _e(label))
        for cls, value, label in cards)


def failed_counts(report):
    """(failed, unreachable) as the PLAY RECAP counts hosts: rolled-back
    hosts among the failed, Ansible's unreachable ones apart. A report
    written before the totals had these keys counts from its host records."""
    totals = report['totals']
    if 'failed_total' in totals and 'unreachable' in totals:
        return totals['failed_total'], totals['unreachable']
    recs = report['hosts'].values()
    unreachable = len([r for r in recs if r.get('unreachable')])
    return len([r for r in recs if r.get('failed') and not r.get('unreachable')]), unreachable


def _attention(hosts, check_mode):
    bad = [rec for rec in hosts if rec['status'] in ('failed', 'rolled_back')]
    if not bad:
        return u'<section class="attention" id="attention"><h2>Failed and rolled back</h2>' \
               u'<p>None: every host went through.</p></section>'
    parts = []
    for rec in bad:
        if rec['status'] == 'rolled_back':
            what = u'rolled back at <b>%s</b>: %s' % (_e(rec.get('failed_phase') or 'activate'),
                                                      _e(rec.get('rollback_reason') or '?'))
        else:
            what = u'%s at <b>%s</b>' % (_status_text(rec, check_mode),
                                         _e(rec.get('failed_phase') or '?'))
            if rec.get('connection_lost') and not rec.get('unreachable'):
                what += u' (connection lost)'
        parts.append(
            u'<article class="%s" data-host="%s"><h3>%s <span class="badge %s">%s</span>%s '
            u'<small>%s</small></h3><p>%s%s</p>%s</article>'
            % (_e(_status_class(rec)), _e(rec['host']), _e(rec['host']), _e(_status_class(rec)),
               _e(_status_text(rec, check_mode)), _host_key_badge(rec),
               _e(rec.get('platform') or ''), what,
               _generations(rec['generation']),
               u'<pre>%s</pre>' % _e(rec['message']) if rec.get('message') else u''))
    return (u'<section class="attention" id="attention"><h2>Failed and rolled back (%d)</h2>%s'
            u'</section>' % (len(bad), ''.join(parts)))


def _timeline(report, hosts):
    runs = report['runs']
    starts = [r['started'] for r in runs if r.get('started') is not None]
    starts += [rec['start'] for rec in hosts if rec.get('start') is not None]
    ends = [r['ended'] for r in runs if r.get('ended') is not None]
    ends += [rec['end'] for rec in hosts if rec.get('end') is not None]
    if not starts or not ends:
        return u''
    origin, span = min(starts), max(max(ends) - min(starts), 0.001)
    legend = u''.join(u'<span><i class="o-%s"></i>%s</span>' % (o, o.replace('_', ' '))
                      for o in OUTCOMES)
    axis = u''.join(u'<span style="left:%.2f%%">%s</span>' % (frac * 100, _e(seconds(span * frac)))
                    for frac in (0, 0.25, 0.5, 0.75, 1))
    rows = [u'<div></div><div class="axis">%s</div><div></div>' % axis]
    for rec in hosts:
        bars = []
        for phase in rec.get('phases') or []:
            if phase.get('start') is None or phase.get('end') is None:
                continue
            left = (phase['start'] - origin) / span * 100
            width = max((phase['end'] - phase['start']) / span * 100, 0.3)
            outcome = phase.get('outcome') if phase.get('outcome') in OUTCOMES else 'other'
            title = u'%s: %s, %s' % (phase['name'], phase.get('outcome'),
                                     seconds(phase['end'] - phase['start']))
            bars.append(u'<span class="bar o-%s" style="left:%.3f%%;width:%.3f%%" title="%s">'
                        u'%s</span>' % (outcome, max(left, 0), min(width, 100 - max(left, 0)),
                                        _e(title), _e(phase['name'])))
        rows.append(u'<div class="name" data-host="%s">%s <small>%s</small></div>'
                    u'<div class="track">%s</div><div class="dur">%s</div>'
                    % (_e(rec['host']), _e(rec['host']), _e(rec.get('platform') or ''),
                       ''.join(bars), _e(seconds(rec.get('duration')))))
    return (u'<section id="timeline"><h2>Timeline</h2><div class="legend">%s</div>'
            u'<div class="gantt">%s</div></section>' % (legend, ''.join(rows)))


def _evaluations_label(totals):
    said = ['%d hosts from cache' % totals['evaluations_from_cache']] \
        if totals.get('evaluations_from_cache') else []
    if totals.get('evaluations_reused'):
        said.append('%d reused from an earlier commit' % totals['evaluations_reused'])
    return 'Nix evaluations' + (', ' + ', '.join(said) if said else '')


def _reused(rec):
    """The line under a store path whose evaluation was reused: which
    content it was evaluated from, how many recorded paths were checked."""
    origin = (rec.get('eval') or {}).get('reused_from')
    if not origin:
        return u''
    content = (origin.get('revision') or '')[:12] or \
        (origin.get('nar_hash') or '')[7:19] or 'another content'
    return u'<br><small>evaluation reused from %s%s (%s paths checked)</small>' % (
        _e(content), ' (dirty)' if origin.get('dirty') else '', _e(origin.get('checked')))


def _table(hosts, check_mode):
    head = (u'<tr><th>host</th><th>platform</th><th>outcome</th><th>generation</th>'
            u'<th>store path</th><th>copied</th><th>closure change</th><th>duration</th></tr>')
    rows = []
    for rec in hosts:
        gen = rec['generation']
        copied = rec.get('copy') or {}
        diff = rec.get('closure_diff')
        change = u'-'
        if diff:
            change = u'+%d -%d ~%d, %s' % (len(diff['added']), len(diff['removed']),
                                           len(diff['changed']),
                                           human_bytes(diff.get('size_change_bytes'), signed=True))
        path = rec.get('store_path') or ''
        rows.append(
            u'<tr data-host="%s"><td><b>%s</b>%s</td><td>%s</td><td><span class="badge %s">%s</span>'
            u' %s</td><td class="num">%s &rarr; %s</td><td class="mono" title="%s">%s%s</td>'
            u'<td class="num">%s</td><td class="nowrap">%s</td><td class="num">%s</td></tr>'
            % (_e(rec['host']), _e(rec['host']), _host_key_badge(rec), _e(rec.get('platform') or '-'),
               _e(_status_class(rec)),
               _e(_status_text(rec, check_mode)), _summary_lines(rec.get('summary')),
               _e(generation(gen['before'])), _e(generation(gen['after'])), _e(path),
               _e(path.rpartition('/')[2][33:] or path or '-'), _reused(rec),
               _e('%s in %s paths' % (human_bytes(copied.get('bytes_sent')),
                                      copied.get('paths_sent')) if copied else '-'),
               _e(change), _e(seconds(rec.get('duration')))))
    return u'<section id="hosts"><h2>Hosts</h2><table>%s%s</table></section>' % (head, ''.join(rows))


def _diffs(hosts):
    parts = []
    for rec in hosts:
        diff = rec.get('closure_diff')
        if not diff:
            continue
        lists = []
        for key, cls, sign in (('added', 'add', '+'), ('removed', 'rem', '-'),
                               ('changed', 'chg', '~')):
            if diff.get(key):
                lists.append(u'<div class="%s">%s %s: %s</div>' % (
                    cls, sign, key, _e(', '.join(diff[key]))))
        lines = u'<pre>%s</pre>' % _e('\n'.join(diff['lines'])) if diff.get('lines') else u''
        parts.append(u'<details class="diff" data-host="%s"><summary><b>%s</b>: +%d -%d ~%d, %s'
                     u'</summary>%s%s</details>'
                     % (_e(rec['host']), _e(rec['host']), len(diff['added']), len(diff['removed']),
                        len(diff['changed']), _e(human_bytes(diff.get('size_change_bytes'),
                                                             signed=True)),
                        ''.join(lists), lines))
    if not parts:
        return u''
    return u'<section id="diffs"><h2>Closure differences</h2>%s</section>' % ''.join(parts)


def render(report):
    """The report as one HTML page (text)."""
    hosts = ordered_hosts(report)
    check_mode = any(run.get('check_mode') for run in report['runs'])
    totals = report['totals']
    failed, unreachable = failed_counts(report)
    title = u'nixdeploy report: %d hosts, %d failed (%d rolled back), %d unreachable' % (
        totals['hosts'], failed, totals.get('rolled_back', 0), unreachable)
    if not report['hosts'] and any(run.get('state') in STATE_TEXT for run in report['runs']):
        return _page(title, u''.join([
            _header(report),
            u'<section class="running" id="state"><p>%s</p></section>' % u' '.join(
                _e(STATE_TEXT[run['state']] % {'when': when(run.get('started'))})
                for run in report['runs'] if run.get('state') in STATE_TEXT),
            _footer(report)]))
    body = u''.join([
        _header(report),
        _totals(report, check_mode),
        _attention(hosts, check_mode),
        _timeline(report, hosts),
        _table(hosts, check_mode),
        _diffs(hosts),
        _footer(report),
    ])
    return _page(title, body)


def _footer(report):
    return (u'<footer>Schema %s version %s, generated %s. The same data as JSON: '
            u'<code>nixdeploy-report.json</code> beside this page.</footer>'
            % (_e(report['schema']), _e(report['schema_version']), _e(when(report.get('generated')))))


def _page(title, body):
    return (u'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            u'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            u'style-src \'unsafe-inline\'">'
            u'<meta name="viewport" content="width=device-width, initial-scale=1">'
            u'<title>%s</title><style>%s</style></head><body>%s</body></html>\n'
            % (_e(title), CSS, body))
