# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy report as one self-contained HTML page.

Inline CSS, no script, no image, no font, nothing fetched: the page's
Content-Security-Policy forbids every load, so it reads the same from an AWX
artifact, a CI workspace or a mail attachment.

The page is the template ``report.html.j2`` beside this file, rendered by
jinja2 (ansible-core's own dependency) with autoescape on. This module only
works out the values the page shows, as plain text and numbers: every value
from the inventory, the flake or Nix is escaped by the template, none is
marked safe.
"""

import os
import time

try:
    import jinja2
except ImportError as exc:   # the merge run as a plain script by a Python without it
    jinja2 = None
    MISSING = 'the HTML report needs jinja2 (%s): install it, or merge with --no-html' % exc
else:
    MISSING = None

try:
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._cause import wrap
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._sizes import human_bytes
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report_order import (
        INTERRUPTED_WORDS, STATUSES, ordered_hosts, reached_state)
except ImportError:
    # run as a plain script (the merge command): the sibling file and
    # common's (on the path _report.py set)
    from _cause import wrap  # pylint: disable=import-error
    from _sizes import human_bytes  # pylint: disable=import-error
    from _report_order import (  # pylint: disable=import-error
        INTERRUPTED_WORDS, STATUSES, ordered_hosts, reached_state)

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'report.html.j2')
with open(TEMPLATE, encoding='utf-8') as _handle:
    TEMPLATE_TEXT = _handle.read()
# the page's style sheet, as the template holds it (fixed text)
CSS = TEMPLATE_TEXT.split('<style>', 1)[1].split('</style>', 1)[0]

# the badges' words of the hosts that need a look, in the order their section's heading names them
ATTENTION_ORDER = ('failed', 'rolled back', 'would roll back', 'unreachable')
STATUS_TEXT = {'failed': 'failed', 'rolled_back': 'rolled back', 'incomplete': 'not activated',
               'changed': 'changed', 'unchanged': 'unchanged'}
CHECK_STATUS_TEXT = dict(STATUS_TEXT, changed='would change')
# characters a line of the host table's outcome holds (broken on spaces)
SUMMARY_WIDTH = 90
# what a run was (the run's ``mode``) that the header names; the words are
# the template's (mode_text)
MODES = ('check', 'rollback', 'rollback-check')
# a run that has no host to show (its ``state``); the words are the
# template's (state_text)
STATES = ('running', 'no_hosts', 'inventory_failed')
# phase outcomes with a colour of their own; any other outcome is drawn grey
OUTCOMES = ('changed', 'ok', 'failed', 'rolled_back', 'unreachable', 'skipped')


def _text(value):
    """A value as the page shows it: nothing for None."""
    return '' if value is None else value


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
    """The host's generations (``; generation 4, now 4 (tried 5)``), or None
    when neither is known."""
    if gen['before'].get('generation') is None and gen['after'].get('generation') is None:
        return None
    attempted = gen.get('attempted')
    return {'before': generation(gen['before']), 'after': generation(gen['after']),
            'attempted': generation(attempted)
            if attempted and attempted.get('generation') is not None else None}


def _status_text(rec, check_mode):
    # the badge's class in words: an interrupted host's as the console says it
    words = dict(CHECK_STATUS_TEXT if check_mode else STATUS_TEXT, **INTERRUPTED_WORDS)
    return words.get(_status_class(rec), _status_class(rec))


def _status_class(rec):
    """A host's badge colour: an unreachable one (Ansible's, or a lost connection) its own."""
    if rec['status'] == 'failed' and (rec.get('unreachable') or rec.get('connection_lost')):
        return u'unreachable'
    return reached_state(rec) or rec['status']


def _header(report):
    runs = report['runs']
    started = min([r['started'] for r in runs if r.get('started') is not None] or [None])
    modes = sorted(set(r.get('mode') for r in runs if r.get('mode') in MODES))
    if not modes and any(r.get('check_mode') for r in runs):
        modes = ['check']
    flakes = []
    for flake in _flakes(runs):
        flakes.append({'ref': _text(flake.get('ref')),
                       'revision': (flake.get('revision') or '')[:12],
                       'nar_hash': (flake.get('nar_hash') or '')[:19],
                       'dirty': bool(flake.get('dirty'))})
    return {'started': when(started), 'duration': seconds(report['totals'].get('duration')),
            'runs': len(runs),
            'limits': ', '.join(sorted(set(r.get('limit') for r in runs if r.get('limit')))),
            'modes': modes, 'flakes': flakes,
            # the signals that stopped runs (their hosts show what they had reached)
            'interrupted': sorted(set(_text(r.get('interrupted_by')) for r in runs
                                      if r.get('state') == 'interrupted')),
            'version': report.get('collection_version') or '?'}


def _flakes(runs):
    seen, out = set(), []
    for run in runs:
        for flake in run.get('flakes') or []:
            key = (flake.get('ref'), flake.get('revision'), flake.get('nar_hash'))
            if key not in seen:
                seen.add(key)
                out.append(flake)
    return out


def _cards(report, check_mode):
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
    # an interrupted run's hosts that were not done, by what they had reached
    # (as the console's closing line counts them), not as "not activated"
    not_done = [reached_state(r) for r in report['hosts'].values() if reached_state(r)]
    for status in STATUSES[2:]:
        count = totals.get(status, 0) - (len(not_done) if status == 'incomplete' else 0)
        if status == 'incomplete' and not_done:
            cards += [(state, not_done.count(state), INTERRUPTED_WORDS[state])
                      for state in sorted(set(not_done))]
            if not count:
                continue
        cards.append((status, count, CHECK_STATUS_TEXT[status] if check_mode
                      else STATUS_TEXT[status]))
    diff = totals.get('closure_diff') or {}
    cards += [('', human_bytes(totals.get('bytes_sent')),
               '%d paths copied' % totals.get('paths_sent', 0)),
              ('', '+%d -%d ~%d' % (diff.get('added', 0), diff.get('removed', 0),
                                    diff.get('changed', 0)),
               'packages, %s' % human_bytes(diff.get('size_change_bytes'), signed=True)),
              ('', totals.get('nix_evaluations', 0), _evaluations_label(totals, report['hosts'])),
              ('', seconds(totals.get('duration')), 'duration')]
    if totals.get('host_key_unchecked'):
        cards.append(('hostkey', totals['host_key_unchecked'], 'host key not checked'))
    return [{'cls': cls, 'value': _text(value), 'label': label} for cls, value, label in cards]


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


def attention_title(bad):
    """The heading of the section of hosts that need a look, named for what
    it holds: ``Failed (1), unreachable (1)``; with none, what it would."""
    counts = {}
    for host in bad:
        counts[host['status']] = counts.get(host['status'], 0) + 1
    if not counts:
        return u'Failed, rolled back or unreachable'
    title = u', '.join(u'%s (%d)' % (word, counts[word]) for word in ATTENTION_ORDER
                       if counts.get(word))
    return title[:1].upper() + title[1:]


def _attention(hosts, check_mode):
    """The failed, rolled-back and unreachable hosts, each with what happened to it."""
    out = []
    for rec in hosts:
        if rec['status'] not in ('failed', 'rolled_back'):
            continue
        rolled_back = rec['status'] == 'rolled_back'
        out.append({
            'host': rec['host'], 'cls': _status_class(rec), 'status': _status_text(rec, check_mode),
            'host_key_unchecked': bool(rec.get('host_key_unchecked')),
            'platform': rec.get('platform') or '', 'rolled_back': rolled_back,
            'phase': rec.get('failed_phase') or ('activate' if rolled_back else '?'),
            'reason': rec.get('rollback_reason') or '?',
            'connection_lost': bool(rec.get('connection_lost') and not rec.get('unreachable')),
            'generations': _generations(rec['generation']),
            'message': rec.get('message') or ''})
    return out


def _timeline(report, hosts):
    """The phases of each host on one time axis, or None without times."""
    runs = report['runs']
    starts = [r['started'] for r in runs if r.get('started') is not None]
    starts += [rec['start'] for rec in hosts if rec.get('start') is not None]
    ends = [r['ended'] for r in runs if r.get('ended') is not None]
    ends += [rec['end'] for rec in hosts if rec.get('end') is not None]
    if not starts or not ends:
        return None
    origin, span = min(starts), max(max(ends) - min(starts), 0.001)
    axis = [{'left': '%.2f' % (frac * 100), 'label': seconds(span * frac)}
            for frac in (0, 0.25, 0.5, 0.75, 1)]
    rows = []
    for rec in hosts:
        bars = []
        for phase in rec.get('phases') or []:
            if phase.get('start') is None or phase.get('end') is None:
                continue
            left = max((phase['start'] - origin) / span * 100, 0)
            width = max((phase['end'] - phase['start']) / span * 100, 0.3)
            bars.append({
                'outcome': phase.get('outcome') if phase.get('outcome') in OUTCOMES else 'other',
                'left': '%.3f' % left, 'width': '%.3f' % min(width, 100 - left),
                'title': u'%s: %s, %s' % (phase['name'], phase.get('outcome'),
                                          seconds(phase['end'] - phase['start'])),
                'name': phase['name']})
        rows.append({'host': rec['host'], 'platform': rec.get('platform') or '', 'bars': bars,
                     'duration': seconds(rec.get('duration'))})
    return {'outcomes': OUTCOMES, 'axis': axis, 'rows': rows}


def _evaluations_label(totals, hosts):
    """Processes, not hosts (one batch evaluates many): the hosts evaluated,
    as the summary's ``evaluated`` counts them, named beside them."""
    evaluated = len([r for r in hosts.values() if (r.get('eval') or {}).get('answered') == 'evaluated'])
    said = ['%d host%s evaluated' % (evaluated, '' if evaluated == 1 else 's')] if evaluated else []
    if totals.get('evaluations_from_cache'):
        said.append('%d hosts from cache' % totals['evaluations_from_cache'])
    if totals.get('evaluations_reused'):
        said.append('%d reused from an earlier commit' % totals['evaluations_reused'])
    return 'Nix evaluation processes' + (', ' + ', '.join(said) if said else '')


def _reused(rec):
    """Under a store path whose evaluation was reused: which content it was
    evaluated from, how many recorded paths were checked; or None."""
    origin = (rec.get('eval') or {}).get('reused_from')
    if not origin:
        return None
    content = (origin.get('revision') or '')[:12] or \
        (origin.get('nar_hash') or '')[7:19] or 'another content'
    return {'content': content, 'dirty': bool(origin.get('dirty')),
            'checked': _text(origin.get('checked'))}


# the words a failed host's summary starts with, which its badge says already
SAID_BY_BADGE = (u'FAILED: ', u'FAILED ', u'UNREACHABLE: ')


def outcome_words(summary, badge):
    """The host table's outcome beside its badge (``badge``: the badge's
    text): the summary's words without the ones the badge says (``FAILED
    at build: x`` beside "failed" reads ``at build: x``; ``FAILED: rolled
    back (why)`` beside "rolled back" reads ``why``)."""
    words = summary or u''
    for prefix in SAID_BY_BADGE:
        if words.startswith(prefix):
            words = words[len(prefix):]
            break
    if badge and words.startswith(badge + u' (') and words.endswith(u')'):
        words = words[len(badge) + 2:-1]
    return words


def _rows(hosts, check_mode):
    """The host table, one row a host."""
    rows = []
    for rec in hosts:
        gen = rec['generation']
        copied, key = rec.get('copy') or {}, 'missing' if check_mode else 'sent'
        diff = rec.get('closure_diff')
        change = u'-'
        if diff:
            change = u'+%d -%d ~%d, %s' % (len(diff['added']), len(diff['removed']),
                                           len(diff['changed']),
                                           human_bytes(diff.get('size_change_bytes'), signed=True))
        path = rec.get('store_path') or ''
        rows.append({
            'host': rec['host'], 'host_key_unchecked': bool(rec.get('host_key_unchecked')),
            'platform': rec.get('platform') or '-', 'cls': _status_class(rec),
            'status': _status_text(rec, check_mode),
            # the outcome words broken on spaces into short lines (never cut mid-word)
            'summary': wrap(outcome_words(rec.get('summary'), _status_text(rec, check_mode)),
                            SUMMARY_WIDTH),
            'before': generation(gen['before']), 'after': generation(gen['after']),
            'path': path, 'path_name': path.rpartition('/')[2][33:] or path or '-',
            'reused': _reused(rec),
            # check mode sent nothing: what a real run would send (what is missing)
            'copied': ('would copy ' if check_mode else '') + '%s in %s paths' % (
                human_bytes(copied.get('bytes_' + key)), copied.get('paths_' + key)) if copied else '-',
            'change': change, 'duration': seconds(rec.get('duration'))})
    return rows


def _diffs(hosts):
    """The closure differences of the hosts that have one."""
    out = []
    for rec in hosts:
        diff = rec.get('closure_diff')
        if not diff:
            continue
        lists = [{'cls': cls, 'sign': sign, 'key': key, 'names': ', '.join(diff[key])}
                 for key, cls, sign in (('added', 'add', '+'), ('removed', 'rem', '-'),
                                        ('changed', 'chg', '~'))
                 if diff.get(key)]
        out.append({'host': rec['host'],
                    'counts': '+%d -%d ~%d, %s' % (
                        len(diff['added']), len(diff['removed']), len(diff['changed']),
                        human_bytes(diff.get('size_change_bytes'), signed=True)),
                    'lists': lists,
                    'lines': '\n'.join(diff['lines']) if diff.get('lines') else None})
    return out


_TEMPLATE = []


def _template():
    """The page's template, compiled once: autoescape on, and a value the
    template names but this module did not give is an error."""
    if not _TEMPLATE:
        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True)
        _TEMPLATE.append(env.from_string(TEMPLATE_TEXT))
    return _TEMPLATE[0]


def render(report):
    """The report as one HTML page (text)."""
    hosts = ordered_hosts(report)
    check_mode = any(run.get('check_mode') for run in report['runs'])
    totals = report['totals']
    failed, unreachable = failed_counts(report)
    page = {
        'title': u'nixdeploy report: %d hosts, %d failed (%d rolled back), %d unreachable' % (
            totals['hosts'], failed, totals.get('rolled_back', 0), unreachable),
        'header': _header(report),
        'footer': {'schema': _text(report['schema']), 'version': _text(report['schema_version']),
                   'generated': when(report.get('generated'))},
        # a run that has no host to show says why instead of the sections
        'states': None}
    if not report['hosts'] and any(run.get('state') in STATES for run in report['runs']):
        page['states'] = [{'state': run['state'], 'when': when(run.get('started'))}
                          for run in report['runs'] if run.get('state') in STATES]
    else:
        bad = _attention(hosts, check_mode)
        page.update(cards=_cards(report, check_mode), attention=bad,
                    attention_title=attention_title(bad),
                    timeline=_timeline(report, hosts), rows=_rows(hosts, check_mode),
                    diffs=_diffs(hosts))
    return _template().render(page=page)
