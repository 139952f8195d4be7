# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role's variables, checked in the batch's process before each
host's request is formed.

Where the deploy role's first phase checks its variables, a host whose own
task would refuse them (``_role_vars.variable_problems``, or an unknown
``nix_*`` variable while ``nix_unknown_vars`` is ``error``) fails with that
task's message, and none of its evaluation is done (``refused_vars``); the
batch's unknown variables are said once each, naming their hosts
(``unknown_notes``, added to each entry by ``noting``). Used by
``_stage.batch_entry``.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars


def refused_vars(name, hostvars, unknown):
    """Why host ``name``'s own task refuses its role variables (the
    message its task gives), or None; its unknown ``nix_*`` variables are
    added to ``unknown`` ({variable: [nearest, hosts]}) unless they are its
    error (nix_unknown_vars).
    A value that is still a template is left to its own task."""
    try:
        problems = _role_vars.variable_problems(hostvars)
        found = _role_vars.unknown_variables(hostvars)
        mode = hostvars.get(_role_vars.BY_OPTION['unknown_vars'].variable) or 'warn'
    except Exception:  # pylint: disable=broad-except
        # a variable that cannot be templated: its own task says so
        return None
    if found and mode == 'error':
        problems.extend('%s (nix_unknown_vars is error)' % _role_vars.unknown_message(
            var, near) for var, near in sorted(found.items()))
    else:
        for var, near in found.items():
            unknown.setdefault(var, [near, []])[1].append(name)
    return '; '.join(problems) or None


def unknown_notes(unknown):
    """{variable: warning} of the batch's unknown ``nix_*`` variables
    ({variable: [nearest, hosts]}): one warning each, naming its hosts."""
    notes = {}
    for var, (near, names) in unknown.items():
        names = sorted(names)
        shown = ', '.join(names[:5]) + (' and %d more' % (len(names) - 5) if len(names) > 5 else '')
        notes[var] = u'%s (set for %d host%s: %s)' % (
            _role_vars.unknown_message(var, near), len(names), '' if len(names) == 1 else 's',
            shown)
    return notes


def noting(put, notes):
    """``put`` that adds the batch's unknown-variable warnings to each
    entry (the action says each once a run)."""
    def put_noted(name, host_entry):
        put(name, dict(host_entry, unknown_vars=notes))
    return put_noted
