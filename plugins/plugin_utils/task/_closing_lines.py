# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lines of the callback nixdeploy.fleet.summary: each host's summary
lines (its cause and dry activation under it), the line that counts the
run's hosts as the PLAY RECAP does, and the line that says how each host's
evaluation was answered."""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._cause import wrap
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import natural_key
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._outcome import summary_line


def hosts_word(count):
    """'1 host', '2 hosts'."""
    return '%d host%s' % (count, '' if count == 1 else 's')


# the most host names a closing line lists; the rest are counted
NAMED = 10


def named(hosts, total=None):
    """': web3, web4' (printable, in name order with digit runs read as
    numbers, at most NAMED), then 'and N more' for the rest of ``total``
    (default: as many as ``hosts``); '' without hosts. A batch that never
    ran (the play ended before it) named nobody: its hosts are only counted."""
    names = sorted((printable(u'%s' % host) for host in hosts), key=natural_key)
    if not names:
        return ''
    more = max(total or 0, len(names)) - min(len(names), NAMED)
    return ': ' + ', '.join(names[:NAMED]) + (' and %d more' % more if more else '')


# keys of totals_line's counts that count hosts already counted by their status
NOT_STATUSES = ('connection_lost', 'changed_before', 'channels')
# the actions whose results say what a publish run did with each host's
# channel ref (its status: moved, new, current, would move, ahead, refused)
CHANNEL_ACTIONS = ('nix_channel', 'nixdeploy.fleet.nix_channel')


def count_channel(counts, action, status, data):
    """Count in ``counts['channels']`` ({status: hosts}) what a task of
    nix_channel (``state=present``: its result has a ``status``) did with
    a host's channel ref, so that a publish run's closing line says it."""
    if str(action) in CHANNEL_ACTIONS and status == 'ok' and data.get('status'):
        channels = counts.setdefault('channels', {})
        word = u'%s' % data['status']
        channels[word] = channels.get(word, 0) + 1


def totals_line(counts, check_mode=False):
    """The run's closing line, counted as the PLAY RECAP and the exit code
    count hosts (``counts``: status -> hosts, ``would_change``: the unchanged
    hosts whose dry activation would change them, and ``connection_lost``:
    the failed hosts that lost their connection, ``changed_before``: the
    unchanged hosts whose build or copy changed): a rolled-back host is a failed
    one, and so is one whose connection a phase lost (the recap's failed);
    only a host Ansible itself could not reach is unreachable. None without
    hosts."""
    hosts = sum(n for status, n in counts.items() if status not in NOT_STATUSES)
    if not hosts:
        return None
    failed = counts.get('failed', 0) + counts.get('rolled_back', 0)
    within = []
    if counts.get('rolled_back'):
        within.append('%d rolled back' % counts['rolled_back'])
    if counts.get('connection_lost'):
        within.append('%d unreachable' % counts['connection_lost'])
    parts = ['%d failed' % failed + (' (%s)' % ', '.join(within) if within else '')]
    if counts.get('unreachable'):
        parts.append('%d unreachable' % counts['unreachable'])
    # a dry activation (nix_goal=dry-activate) changes nothing but says
    # whether a real one would: counted apart, as check mode's changes are
    would = counts.get('would_change', 0)
    if check_mode:
        parts.append('%d would change' % (counts.get('changed', 0) + would))
    else:
        parts.append('%d changed' % counts.get('changed', 0))
        if would:
            parts.append('%d would change' % would)
    parts.append('%d unchanged' % counts.get('unchanged', 0) + (
        ' (%d built or copied in this run: the recap\'s changed)' % counts['changed_before']
        if counts.get('changed_before') else ''))
    if counts.get('incomplete'):
        parts.append('%d not activated' % counts['incomplete'])
    if counts.get('channels'):
        # a publish run activates nothing: what it did is move the refs
        parts.append('channel refs: %s' % ', '.join(
            '%d %s' % (n, printable(word)) for word, n in sorted(counts['channels'].items())))
    return 'nixdeploy: %s: %s' % (hosts_word(hosts), ', '.join(parts))


def evaluation_line(answered, origins):
    """What evaluation did over the run: ``answered`` counts hosts by how
    their answer was found (evaluated, reused, cached), ``origins`` the
    short revisions reused answers came from. None when no host was
    evaluated here."""
    if not any(answered.values()):
        return None
    reused = '%d reused' % answered.get('reused', 0)
    if answered.get('reused') and origins:
        shown = sorted(origins)
        reused += ' (from %s%s)' % (', '.join(printable(o) for o in shown[:3]),
                                    ', ...' if len(shown) > 3 else '')
    return 'nixdeploy: evaluation: %d evaluated, %s, %d cached' % (
        answered.get('evaluated', 0), reused, answered.get('cached', 0))


class EvaluationTally(object):
    """How each host's evaluation was answered over the run (evaluated,
    reused, cached), from the eval results the summary sees, and the line
    that says it at the end."""

    def __init__(self):
        self.answered = {}      # evaluated / reused / cached -> hosts
        self.origins = set()    # short revisions reused answers came from
        self.dirty = 0          # hosts evaluated from a tree with uncommitted changes

    def take(self, data):
        """Count one host's eval result (``data``), if it was answered."""
        how = data.get('answered')
        if how not in ('evaluated', 'reused', 'cached'):
            return
        self.answered[how] = self.answered.get(how, 0) + 1
        if how == 'evaluated' and (data.get('source') or {}).get('dirty') is True:
            self.dirty += 1
        origin = short_revision(data.get('reused')) if how == 'reused' else None
        if origin:
            self.origins.add(origin)

    def line(self):
        """The closing line, or None when no host was evaluated here."""
        line = evaluation_line(self.answered, self.origins)
        if line and self.dirty and not self.answered.get('reused'):
            # "0 reused" after a one-host edit reads as a fault: say why
            line += (' (0 reused: the flake has uncommitted changes, and nothing is reused '
                     'between a dirty tree and a commit; commit them to reuse)')
        return line


def short_revision(reused):
    """The short revision a reused answer came from ('dirty tree' for a
    tree with uncommitted changes), or None."""
    source = (reused or {}).get('from') if isinstance(reused, dict) else None
    if not isinstance(source, dict):
        return None
    revision = source.get('revision')
    if isinstance(revision, str) and revision:
        return revision[:7]
    return 'a dirty tree' if source.get('dirty') else None


# a failed host's cause goes on lines of its own under its summary line,
# broken on spaces at this width and indented under the outcome (so no line
# of a cause reads as a host's); the host's own line stays one line, as
# every reader of the summary takes it
SUMMARY_WIDTH = 100
# the most a later line is indented (a long host name moves the outcome right)
SUMMARY_INDENT = 46


def wrapped_summary(rec, same_as=None):
    """The host's summary lines: ``summary_line`` (every field printable),
    what failed never cut, and, for a failed host, the cause of its failure
    (Nix's last meaningful line) on the lines below, broken on spaces, never
    cut mid-word; where ``same_as`` (a host above with the same cause), only
    its name, so a cause the batch shares is printed once."""
    head = rec.get('summary_head') or rec['outcome']
    tail = rec.get('summary_tail')
    if same_as is not None:
        # 'FAILED at eval: <cause>' -> 'FAILED at eval: the same as web1'
        head, tail = '%s: the same as %s' % (head.split(': ', 1)[0], same_as), None
    line = summary_line(dict(rec, outcome=head))
    column = len(line) - len(printable(head))
    indent = ' ' * max(4, min(column, SUMMARY_INDENT))
    lines = [line]
    if tail:
        lines += wrap(indent + printable(tail), SUMMARY_WIDTH, indent)
    return lines


# the most lines of a dry activation shown under a host (the result keeps more)
DRY_SHOWN = 20


def dry_lines(lines):
    """What a host's dry activation would do (check mode, nix_goal=dry-activate:
    the result's ``dry_activate``, the target's own words), indented under
    its summary line, each printable; at most DRY_SHOWN lines."""
    lines = [printable(u'%s' % line) for line in lines or () if u'%s' % line]
    shown = ['    | ' + line for line in lines[:DRY_SHOWN]]
    if len(lines) > DRY_SHOWN:
        shown.append('    | ... %d more lines (-v shows the task result)' % (len(lines) - DRY_SHOWN))
    return shown
