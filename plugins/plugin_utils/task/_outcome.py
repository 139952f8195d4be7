# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a deploy did on each host, from the results of the collection's actions.

The results of a host's nixdeploy tasks go in here and one record (and one
summary line) per host comes out, the same for every reader: the callbacks
``nixdeploy.fleet.summary`` and ``nixdeploy.fleet.report`` as results arrive,
and plugin_utils/task/_stats.py for the custom stat ``nixdeploy`` that AWX keeps,
made from the role's registered results by the phase actions themselves
(their option ``record_stats``) or, for a failed host, by the filter
``nixdeploy.fleet.deploy_stats`` in the role's rescue.
The outcome is read from result keys (``failed``, ``phase``, ``rolled_back``,
``connection_lost``, ``host_key_unchecked``), never from message text.

The record is data (the report's JSON, the custom stat keep it as it came);
``summary_line`` is text for a terminal, so every field of it is shown
``printable`` (plugin_utils/common/_printable.py): a host name from the flake or a
target's words in a message cannot move the cursor, erase the lines above,
write the clipboard or start a line that reads as another host's.
"""

try:
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _phases
    from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import GOALS
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
        result_dict)
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
except ImportError:
    # run as a plain script (_report.py's merge command): the tables' files
    import os
    import sys
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [os.path.join(_HERE, '..', '..', 'module_utils'),
                    os.path.join(_HERE, '..', 'common')]
    import _phases  # pylint: disable=import-error
    from _ansible_core import result_dict  # pylint: disable=import-error
    from _platforms import GOALS  # pylint: disable=import-error
    from _printable import printable  # pylint: disable=import-error

# action name -> the deploy phase its task is
PHASES = _phases.BY_ACTION

# what a deploy that stopped before activating got to, by its last phase
_STOPPED = _phases.STOPPED

LINE_FORMAT = '%-14s %-13s gen %3s -> %-3s %s'
# how much of a skipped builder's reason the summary line keeps
SKIP_REASON_CHARS = 80

# the order of a deploy's phases (the keys tasks run around activate)
PHASE_ORDER = _phases.NAMES


# The key under which a failed result may keep its internals (how its batch
# went: play_hosts, nix_processes, evaluation, ...): ansible-core prints a
# failed result whole, to people; what readers need stays readable through
# ``result_data``.
DETAILS = 'details'


def result_data(task_result):
    """The result dict a callback's task result holds (ansible-core 2.19 to
    2.22 name it differently: common/_ansible_core.py reads it), with the
    keys of its ``details`` (a failed result's internals, DETAILS) where
    readers look for them: at the top level, under any key the result has
    there itself."""
    data = result_dict(task_result)
    if not isinstance(data, dict):
        return {}
    return with_details(data)


def with_details(result):
    """``result`` (a result dict) with the keys of its ``details`` at the
    top level too (a key of its own wins); the same dict when it has none."""
    details = result.get(DETAILS)
    if not isinstance(details, dict) or not details:
        return result
    merged = dict(details)
    merged.update(result)
    return merged


def details_apart(result, keys):
    """``result`` (a failed result) with those of ``keys`` it has moved
    under ``details``, out of the way of people who read it; readers get
    them back through ``result_data`` / ``with_details``."""
    moved = dict((key, result.pop(key)) for key in keys if key in result)
    if moved:
        details = result.get(DETAILS) if isinstance(result.get(DETAILS), dict) else {}
        details.update(moved)
        result[DETAILS] = details
    return result


def task_action(task):
    """The action of a task, FQCN when Ansible resolved it."""
    return getattr(task, 'resolved_action', None) or getattr(task, 'action', None)


def action_phase(action):
    """The deploy phase of a task action (short or FQCN), or None."""
    if not action:
        return None
    text = str(action)
    if '.' in text:
        namespace, _dot, short = text.rpartition('.')
        if namespace not in ('nixdeploy.fleet',):
            return None
        text = short
    return PHASES.get(text)


def _first_line(msg, host):
    """The first line of a message that says something, without the host
    prefix every action puts in front (ssh opens a changed host key with a
    banner of @ signs). A newline is the only line end: any other character
    that ends a line somewhere stays in the line, where ``summary_line``
    shows it escaped. The prefix is the name as ``host_message`` writes it
    (``printable``) or as it is."""
    prefixes = (u'%s: ' % host, u'%s: ' % printable(host))
    for line in str(msg or '').split('\n'):
        line = line.strip()
        for prefix in prefixes:
            if line.startswith(prefix):
                line = line[len(prefix):]
                break
        if line and not line.startswith('@') and any(c.isalpha() for c in line):
            return line[:200]
    return ''


class HostOutcome:
    """The results of one host's deploy phases, as they arrive."""

    def __init__(self, host):
        self.host = host
        self.results = {}      # phase -> the latest result dict
        self.failure = None    # (phase, result) of the first failure
        self.last_phase = None
        self.unreachable = False

    def add(self, phase, result, status):
        """``status``: ok, changed, failed, unreachable or skipped."""
        if status == 'skipped':
            return
        self.results[phase] = result
        self.last_phase = phase
        if status in ('failed', 'unreachable') and self.failure is None:
            self.failure = (result.get('phase') or phase, result)
            self.unreachable = status == 'unreachable'

    def record(self, check_mode=False, platform=None):
        """One host's outcome as plain data (the summary line is made from it)."""
        activate = self.results.get('activate') or {}
        evaluated = self.results.get('eval') or {}
        platform = activate.get('platform') or evaluated.get('platform') or platform or '-'
        before = known_before(activate, evaluated)
        rec = {'host': self.host, 'platform': platform, 'failed': False, 'rolled_back': False,
               'phase': self.last_phase, 'connection_lost': False,
               'path': evaluated.get('out_path') or (activate.get('new') or {}).get('path'),
               'before': before, 'after': before, 'msg': '',
               # a cascade: the host this one got its closure from
               'copied_from': (self.results.get('copy') or {}).get('copied_from')}
        rec.update(_builders_of(self.results.get('build') or {}))
        # a phase went on although ssh did not check the host's key (its opt-out)
        rec['host_key_unchecked'] = any(bool(r.get('host_key_unchecked'))
                                        for r in self.results.values() if isinstance(r, dict))
        if self.failure:
            phase, result = self.failure
            rolled_back = bool(result.get('rolled_back'))
            line = _first_line(result.get('msg'), self.host)
            # a host the login probe never reached (unreachable_at) lost no connection
            rec.update(failed=True, phase=phase, rolled_back=rolled_back, msg=line,
                       connection_lost=bool(result.get('connection_lost')) or (
                           self.unreachable and not result.get('unreachable_at')))
            if rolled_back:
                reason = result.get('rollback_reason') or line
                rec['outcome'] = 'FAILED: rolled back (%s)' % reason
            elif result.get('unreachable_at'):
                # the login probe reached it at no address: nothing was
                # built or copied for it (nix_unreachable: fail makes it a
                # failed host)
                rec['outcome'] = ('UNREACHABLE: %s' if self.unreachable
                                  else 'FAILED: unreachable: %s') % line
            elif rec['connection_lost']:
                # an unreachable host, or an action's failed result that says
                # it lost the connection (actions report it so, not as unreachable)
                rec['outcome'] = 'FAILED at %s: unreachable: %s' % (phase, line)
            else:
                rec['outcome'] = 'FAILED at %s: %s' % (phase, line)
            rec['outcome'] += _build_note(rec) + _host_key_note(rec)
            return rec
        rec['outcome'] = self._outcome(rec, activate, check_mode)
        if (activate.get('reboot') or {}).get('rebooted'):
            rec['outcome'] += ' (rebooted)'
        if rec['copied_from'] not in (None, 'controller'):
            rec['outcome'] += ' (closure from %s)' % rec['copied_from']
        rec['outcome'] += _build_note(rec) + _host_key_note(rec)
        return rec

    def _outcome(self, rec, activate, check_mode):
        """What the deploy did on a host that did not fail (sets rec's after)."""
        if not activate:
            done = _STOPPED.get(self.last_phase or '', 'nothing done')
            return '%s (not activated)' % done
        goal = activate.get('goal') or 'switch'
        # the goal's row, once (None: a goal this collection does not know)
        row = GOALS.get(goal)
        changed = bool(activate.get('changed'))
        before = rec['before']
        new = (activate.get('new') or {}).get('generation')
        if row is not None and row.dry:
            return '%s: %s' % (row.done,
                               'would change' if activate.get('would_change') else 'no change')
        if check_mode:
            rec['after'] = 'new' if changed else before
            return 'would %s' % goal if changed else 'unchanged'
        if changed:
            rec['after'] = new if new is not None else before
            return row.done if row is not None else 'activated'
        # the outcome stays the word programs filter on (the custom stat,
        # AWX): a build or copy of this run is counted on the closing line
        return 'unchanged'

    def changed_before(self):
        """Whether the host's build or copy changed something though its
        activation did not (another run activated the same system, or an
        execution environment built it again): the PLAY RECAP counts it
        changed, the summary unchanged, and its closing line says why."""
        return any((self.results.get(phase) or {}).get('changed') for phase in ('build', 'copy'))


def known_before(activate, evaluated):
    """The generation a host was on before this run: its activation's word
    where it ran, else what the login probe read (a host that failed or
    stopped before its activation); None where neither says (a host never
    reached: unreachable, or refused)."""
    before = (activate.get('previous') or {}).get('generation')
    if before is not None:
        return before
    probe = evaluated.get('probe')
    probed = probe.get('generation') if isinstance(probe, dict) else None
    return probed if isinstance(probed, int) and not isinstance(probed, bool) else None


def _builders_of(build):
    """The record's builder keys from the build result: ``built_on`` (the
    builder that built the system, or None) and ``builders_skipped``
    ([{name, reason}] of the builders it named but did not use)."""
    skipped = [{'name': u'%s' % s.get('name'), 'reason': u'%s' % (s.get('reason') or '')}
               for s in build.get('builders_skipped') or [] if isinstance(s, dict)]
    return {'built_on': build.get('builder'), 'builders_skipped': skipped}


def _build_note(rec):
    """' (built on b2; b1 skipped: why)' for a host built on a builder
    while others were skipped. A host no builder could build has them named
    in its failure already."""
    if not rec.get('built_on') or not rec.get('builders_skipped'):
        return ''
    return ' (built on %s; %s)' % (rec['built_on'], '; '.join(
        '%s skipped: %s' % (s['name'], s['reason'][:SKIP_REASON_CHARS])
        for s in rec['builders_skipped']))


def _host_key_note(rec):
    """' (host key unchecked)' for a host deployed by its opt-out although
    ssh did not check its key."""
    return ' (host key unchecked)' if rec.get('host_key_unchecked') else ''


def summary_line(rec):
    """The summary's line of a record, each field ``printable``: the line
    goes to a terminal (the callback, the rollback role's filter), the
    record stays data."""
    def gen(value):
        return '-' if value in (None, '') else printable(value)
    return LINE_FORMAT % (printable(rec['host']), printable(rec['platform']), gen(rec['before']),
                          gen(rec['after']), printable(rec['outcome']))


def status_of(result):
    """ok, failed, unreachable or skipped, read from a registered result."""
    if result.get('unreachable'):
        return 'unreachable'
    if result.get('failed'):
        return 'failed'
    if result.get('skipped'):
        return 'skipped'
    return 'ok'


def outcome_of(host, results):
    """A HostOutcome from ``results``: [(phase, registered result)] in the
    order the tasks ran; empty or missing results (tasks never reached) are
    passed over."""
    outcome = HostOutcome(host)
    for phase, result in results:
        if isinstance(result, dict) and result:
            outcome.add(phase, with_details(result), status_of(result))
    return outcome
