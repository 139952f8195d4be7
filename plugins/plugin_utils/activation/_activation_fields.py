# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each of nix_activate's target programs reports, and the words of a run.

``FIELDS`` names, for each program file of ``activation/target/``, each key
it emits and its kind; ``_script.render`` is given this table by the code
that renders those programs (``_programs``, ``_reboot_rules``,
``_health_checks``), and the generic rule of reading a target's values
(the kinds, what happens to a value that is not of its kind) is
plugin_utils/host/_program_fields.py's. The states a run goes through and
the causes of its end are here too: they are the words the runner writes
in its status file (target/activate-runner.sh, activate-lock.sh,
activate-modes.sh), and the
poll reports them.
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidValue
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    BOOT_ID, FLAG, INT, PATH, STORE_FILE, STORE_PATH, TEXT, ValueKind, list_of, matching, one_of)

# The states a run ends in (the runner's exit trap and the poll read them
# as the value TERMINAL).
TERMINAL_STATES = ('unchanged', 'done', 'failed', 'rolled_back', 'rollback_failed', 'refused')
# A switch NixOS's pre-switch checks refused (switch inhibitors): nothing was
# activated, the profile is back where it was, there is nothing to roll back.
REFUSED = 'refused'
# A run that waits for its confirmation: the task may stop following it.
AWAITING = 'awaiting_confirmation'
# the states of a run on its way (its status file, before a terminal one)
_UNDER_WAY = ('starting', 'running', 'waiting_lock', AWAITING, 'rolling_back')

# what a run that waits for a lock waits for (its status's waiting_for)
WAITING_FOR = ('activation', 'confirmation', 'rollback', 'switch')

# a run of nix_activate: '<epoch>-<8 hex>' (_detached_run.DetachedRun)
RUN = matching(r'\A[0-9]{1,20}-[0-9a-f]{1,32}\Z', 'a run id')
# the systemd unit of a run (_programs.UNIT_PREFIX and its run)
UNIT = matching(r'\Anixdeploy-activate-[0-9]{1,20}-[0-9a-f]{1,32}\Z', 'a unit of a run')
STATES = one_of(*(_UNDER_WAY + TERMINAL_STATES))
# A run that ended in its confirmation window without its runner's verdict
# (stopped, or found dead by a look) where its system would have become the
# boot default only once confirmed (NixOS): its profile is back on the
# previous generation, but the new system may still run (a runner killed
# without a reboot). The task rolls back to make sure.
ENDED_UNCONFIRMED = 'ended_unconfirmed'
# why a run ended as it did (the runner's CAUSE)
CAUSES = one_of('switch_locked', 'refused', 'unconfirmed', 'activation_failed', 'checks',
                ENDED_UNCONFIRMED)

# the keys every program that starts with activate-session.sh reports
_SESSION = {'dir': PATH, 'profile': PATH}
# the runner's status file, as activate-poll.sh reports it
_STATUS = {
    'state': STATES, 'reason': TEXT, 'run': RUN, 'mode': one_of('activate', 'rollback'),
    'profile': PATH, 'prev_gen': INT, 'prev_path': STORE_PATH, 'new_gen': INT,
    'new_path': STORE_PATH, 'activated': FLAG, 'rolled_back': FLAG, 'confirmed': FLAG,
    'rc': INT, 'cause': CAUSES, 'started': INT, 'updated': INT,
    # the goal's RECORDS_ACTIVE: what a look that ends the run dead records
    'records_active': FLAG,
    # 1: the new system becomes the boot default once confirmed (NixOS under
    # magic rollback): a look that ends the run dead awaiting its
    # confirmation puts the profile back to what boots
    'boot_when_confirmed': FLAG,
    # while waiting_lock: what holds it (activate-lock.sh), the run that
    # holds the profile's lock at its activation, its confirmation or its
    # rollback, or another switch (the platform's own lock)
    'waiting_for': one_of(*WAITING_FOR),
}

# A run's line as status-read.sh reports it: the words of its status file
# (above), in this order, '-' for an empty one
_MODE = one_of('activate', 'rollback')
_FLAG_WORD = one_of('0', '1')
RUN_WORDS = (('state', STATES), ('mode', _MODE), ('new', STORE_PATH), ('prev', STORE_PATH),
             ('rolled_back', _FLAG_WORD), ('activated', _FLAG_WORD), ('started', INT),
             ('updated', INT))


def _run_line(text):
    """A run's line as a dict; one word that is not of its kind drops the run."""
    words = text.split()
    if len(words) != len(RUN_WORDS):
        raise InvalidValue('%d words' % len(RUN_WORDS))
    parsed = {}
    for (name, kind), word in zip(RUN_WORDS, words):
        parsed[name] = None if word == '-' else kind.parse(word)
    for flag in ('rolled_back', 'activated'):
        parsed[flag] = parsed[flag] == '1'
    return parsed


RUN_LINE = ValueKind('a run: %s' % ' '.join(name for name, _kind in RUN_WORDS), _run_line)

# program file -> {key: kind}; a key ending in '_*' stands for its named
# family (booted_kernel, new_initrd)
FIELDS = {
    'activate-launch.sh': dict(_SESSION, nix_env=PATH, unit=UNIT,
                               detach=one_of('systemd-run', 'setsid', 'nohup')),
    'activate-poll.sh': dict(_STATUS, alive=FLAG),
    'activate-confirm.sh': dict(_SESSION, pending=RUN, claimed=RUN, last=RUN),
    'activate-reject.sh': dict(_SESSION, rejected=FLAG),
    'activate-inspect.sh': dict(_SESSION, active=STORE_PATH, dry_rc=INT, gens=list_of(INT),
                                prev_gen=INT, prev_path=STORE_PATH, gen_path=STORE_PATH,
                                present=FLAG),
    'health-check.sh': {'rc': INT, 'timed_out': FLAG},
    'reboot-boot-id.sh': {'boot_id': BOOT_ID},
    'reboot-probe.sh': {'boot_id': BOOT_ID, 'booted': STORE_PATH, 'current': STORE_PATH,
                        'booted_*': STORE_FILE, 'new_*': STORE_FILE},
    'reboot-request.sh': {'reboot_rc': INT},
    'status-read.sh': {'profile': PATH, 'generation': INT, 'generation_path': STORE_PATH,
                       'current': STORE_PATH, 'booted': STORE_PATH, 'booted_*': STORE_FILE,
                       'current_*': STORE_FILE, 'dir': PATH, 'last': RUN, 'run_*': RUN_LINE},
}
