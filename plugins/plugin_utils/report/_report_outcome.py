# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's outcome as the summary line and the report's host table say it
(``outcome_record``), and the mark of a result whose task rolled the host
back (``mark_rollback``): both callbacks read them, the report's records
(``_report_record``) too.
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._cause import join, parts
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable

# the key a callback adds to a nix_activate result of ``state: rolled_back``
# (the rollback role's task): its host was rolled back, not switched
ROLLBACK_MARK = '_nixdeploy_rollback'


def rolls_back(task):
    """Whether the task rolls a host back (nix_activate with ``state:
    rolled_back``): its arguments say so, its result does not. Before the
    task runs, a ``state`` given as a template is not read yet: False then."""
    try:
        return (getattr(task, 'args', None) or {}).get('state') == 'rolled_back'
    except (AttributeError, TypeError):
        return False


def mark_rollback(task, data):
    """``data`` (a copy of a result) marked when its task rolled a host back."""
    if rolls_back(task):
        data[ROLLBACK_MARK] = True
    return data


def host_status(outcome, rec, activate):
    """The host's status as the report's ``status`` says it, with Ansible's
    unreachable apart (the PLAY RECAP's columns)."""
    if rec.get('failed'):
        if outcome.unreachable:
            return 'unreachable'
        return 'rolled_back' if rec.get('rolled_back') else 'failed'
    if not activate:
        return 'incomplete'
    return 'changed' if activate.get('changed') else 'unchanged'


def outcome_record(outcome, check_mode=False):
    """``outcome.record()`` (a ``HostOutcome``) as the summary line and the
    report's host table say it:

    - a failed host's ``msg`` is the cause of its phase's message
      (``common/_cause``: what failed and Nix's last meaningful line, never
      cut), and its ``outcome`` words carry it;
    - a host rolled back by the rollback role says ``rolled back`` (or
      ``would roll back``), not the goal's word;
    - a host built but not activated (``--tags build``, ``--skip-tags
      activate``) names the store path it built.
    """
    rec = outcome.record(check_mode)
    activate = outcome.results.get('activate') or {}
    rec['status'] = host_status(outcome, rec, activate)
    if rec.get('failed') and outcome.failure:
        _phase, result = outcome.failure
        host = outcome.host
        first, last = parts(result.get('msg'), (u'%s: ' % host, u'%s: ' % printable(host)))
        short = rec.get('msg') or u''
        head = rec['outcome']
        if first and short and short != first and short in head:
            head = head.replace(short, first, 1)
        # the summary prints the head on the host's line, the cause below it
        rec['summary_head'], rec['summary_tail'] = head, last
        full = join(first, last)
        if full and full != short:
            if short and short in rec['outcome']:
                rec['outcome'] = rec['outcome'].replace(short, full, 1)
            rec['msg'] = full
        return rec
    if activate.get(ROLLBACK_MARK):
        words = rec['outcome']
        notes = words[len(words.split(' (')[0]):] if ' (' in words else ''
        if activate.get('changed'):
            new = (activate.get('new') or {}).get('generation')
            rec['after'] = new if new is not None else rec['after']
            rec['outcome'] = ('would roll back' if check_mode else 'rolled back') + notes
        else:
            # why nothing moved (already there, or another run moved the
            # host while this rollback waited for it): the target's words
            said = activate.get('msg') if not check_mode else None
            rec['outcome'] = 'unchanged' + notes + (' (%s)' % said if said else '')
        return rec
    built = outcome.results.get('build') or {}
    path = built.get('out_path') or rec.get('path')
    if not activate and outcome.last_phase in ('build', 'copy') and path \
            and u' (not activated)' in rec['outcome']:
        rec['outcome'] = rec['outcome'].replace(u' (not activated)',
                                                u' (not activated): %s' % path, 1)
    return rec
