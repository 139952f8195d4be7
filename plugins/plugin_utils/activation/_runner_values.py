# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The values of nix_activate's detached run, as one object.

The runner (target/activate-runner.sh, with activate-lib.sh before it and
activate-lock.sh and activate-modes.sh after it) gets every value it knows from the controller
as a field of ``RunnerValues``; each field is described once, in
``RUNNER_FIELDS`` below. ``_programs.runner_values`` builds the object (the
one place each value is worked out from the task, the platform's row and
the goal's row) and ``_programs.runner_program`` renders it: ``shell()``
gives one shell variable a field, its name in capitals, which
``_script.render`` writes as one block of quoted assignments at the top of
the program. POSIX sh has no objects, so the three files read those
variables; nothing else sets them.

What the runner learns on the target is not here: its arguments, from the
session that launched it (activate-launch.sh: the state folder D, PROFILE,
NIX_ENV, HOME, USER, the session's PATH and the user who logged in), and
what it reads as it goes (the profile's generations, the lock, the canary).
"""

from collections import namedtuple

# (field, what it holds); the runner's variable is the field in capitals
RUNNER_FIELDS = (
    ('run', "the run, '<epoch>-<8 hex>': its folder D/runs/RUN, its status, its unit"),
    ('mode', "'activate' (the lock, the profile, the activation, the watchdog) or "
             "'rollback' (back to a generation on request)"),
    ('new', 'the system to activate (a store path), empty for a rollback'),
    ('steps', "the goal's steps, blank-separated words: each runs ACTIVATE_PROGRAM once "
              "(the goal's row, module_utils/_platforms.py GOALS)"),
    ('confirmed_steps', "the steps run once the system is confirmed (empty: none); then STEPS "
                        "are the goal's window steps (_platforms.Goal.steps_on: NixOS under "
                        "magic rollback runs test, then boot once confirmed)"),
    ('rollback_steps', 'the steps a rollback runs: those of the goal the goal rolls back with'),
    ('rollback_moves', '1: a rollback moves the profile back (its goal moves the profile)'),
    ('current_when', "what must already be NEW for 'unchanged': 'profile', 'active' or "
                     "'both' (the goal's row's current)"),
    ('records_active', "1: the goal's system is what runs now (written to D/active)"),
    ('rollback_records_active', '1: the same for the system a rollback re-activates'),
    ('magic', '1: magic rollback: the watchdog waits CONFIRM_TIMEOUT for a confirmation'),
    ('auto', '1: a failed activation rolls back at once'),
    ('confirm_timeout', 'seconds the watchdog waits for the confirmation'),
    ('activation_timeout', 'seconds a step of the activation may run before it is stopped'),
    ('lock_timeout', "seconds to wait for the profile's lock, then for the platform's own "
                     'switch lock'),
    ('generation', "the profile's generation a rollback goes to, empty: the one before"),
    ('set_profile', '1: the profile is set to NEW before activating (nix-env --set)'),
    ('sets_own_profile', '1: the activation sets the profile itself (nix-on-droid)'),
    ('through_link', "1: a rollback runs the generation link's activation, not the store "
                     "path's (nix-on-droid)"),
    ('current_link', 'the link naming the running system, empty where there is none'),
    ('activate_program', "the platform's activation (activate-command.sh rendered), run as "
                         '`sh -c PROGRAM activate SYSTEM STEP INVOKER`'),
    ('switch_lock', "the platform's own switch lock (a file), empty: none"),
    ('busy_mark', "what the activation says when another switch holds SWITCH_LOCK"),
    ('backup_env', "the variable carrying BACKUP_EXT to the activation (home-manager's -b), "
                   'empty: none'),
    ('backup_ext', 'the extension a file in the way is moved aside with, empty: none'),
    ('reactivate', '1: a system already current is activated again'),
    ('refusal_mark', "what NixOS's pre-switch checks say when they refuse a switch"),
    ('drop_gen', 'a generation a successful rollback deletes (a boot default that failed), '
                 'empty: none'),
    ('why', 'the reason a rollback records, empty: "rolled back ... on request"'),
    ('terminal', 'the states a run ends in, blank-separated'),
    ('root_key', "the file name of the copy's GC root of NEW, released once the profile "
                 'holds NEW; empty: none'),
    ('root_state', "root's state folder (another user's is under XDG_STATE_HOME)"),
    ('reserve_kb', 'KB of room the run keeps in D/reserve for writing when the disk is full'),
)


class RunnerValues(namedtuple('RunnerValues', [name for name, _what in RUNNER_FIELDS])):
    """Every value the runner gets from the controller (``RUNNER_FIELDS``
    says what each holds); made by ``_programs.runner_values``."""

    __slots__ = ()

    def shell(self):
        """{VARIABLE: value}: the runner's shell variables, one a field."""
        return dict((name.upper(), value) for name, value in self._asdict().items())
