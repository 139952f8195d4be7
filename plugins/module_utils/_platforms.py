# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ONE table: platform -> flake output, profile, activation, rollback, root;
and the activation goals and what each one means (``GOALS``).

Platform and goal differences live here as data; other files look them up
instead of testing ``platform == ...`` or ``goal == ...``. docs/concepts.md
describes the platforms for users.
"""

from collections import namedtuple


PLATFORMS = {
    'nixos': {
        'user_at_host': False,
        # flake output holding the configurations, and the attribute path
        # below one configuration that is the deployable system
        'output': 'nixosConfigurations',
        'system_attr': ['config', 'system', 'build', 'toplevel'],
        'profile': '/nix/var/nix/profiles/system',
        'needs_root': True,
        'goals': ['switch', 'boot', 'test', 'dry-activate'],
        # how nix_activate switches to a system (see the keys below the table)
        'activation': {
            'command': ['bin/switch-to-configuration', '{step}'],
            'sets_own_profile': False,
            # switch-to-configuration's own dry run; its pre-switch checks
            # run for it too (every goal but boot)
            'dry_run': {'command': ['bin/switch-to-configuration', 'dry-activate'], 'env': {}},
            'current_link': '/run/current-system',
            'driver': None,
            'profile_candidates': None,
            'profile_probe': None,
            'rollback_through_link': False,
            'pre_command': None,
            # always passed, 0 or 1 (nixos-rebuild does; option install_bootloader)
            'install_bootloader_env': 'NIXOS_INSTALL_BOOTLOADER',
            # set to 1 by pre_switch_checks=false (switch, test and dry runs)
            'no_check_env': 'NIXOS_NO_CHECK',
            'backup_env': None,
            # switch-to-configuration takes this lock without waiting and
            # exits with BUSY_MARK when another switch (an auto-upgrade)
            # holds it: nothing changed, so wait and retry, never roll back
            'switch_lock': {'path': '/run/nixos/switch-to-configuration.lock',
                            'busy_mark': 'Could not acquire lock'},
            # its boot loader is a step of its own (switch = test + boot): a
            # system awaiting its confirmation is not the boot default yet
            'boot_when_confirmed': True,
        },
    },
    'darwin': {
        'user_at_host': False,
        'output': 'darwinConfigurations',
        'system_attr': ['system'],
        'profile': '/nix/var/nix/profiles/system',
        'needs_root': True,
        'goals': ['switch'],
        'activation': {
            # activate aborts unless uid 0; become supplies root
            'command': ['activate'],
            'sets_own_profile': False,
            # darwin-rebuild check
            'dry_run': {'command': ['activate'], 'env': {'checkActivation': '1'}},
            'current_link': '/run/current-system',
            'driver': None,
            'profile_candidates': None,
            'profile_probe': None,
            'rollback_through_link': False,
            # configurations built before 2025 have activate-user, which
            # darwin-rebuild runs as the invoking user before activate, unless
            # nix-darwin marked it deprecated (a line of its own)
            'pre_command': {'file': 'activate-user', 'as': 'invoker',
                            'skip_mark': '# nix-darwin: deprecated'},
            'install_bootloader_env': None,
            'no_check_env': None,
            'backup_env': None,
            'switch_lock': None,
        },
    },
    'nix-on-droid': {
        'user_at_host': False,
        'output': 'nixOnDroidConfigurations',
        'system_attr': ['activationPackage'],
        'profile': '/nix/var/nix/profiles/nix-on-droid',
        'needs_root': False,
        'goals': ['switch'],
        'activation': {
            # activate's last step sets the profile itself: never nix-env --set
            # first, whatever the goal
            'command': ['activate'],
            'sets_own_profile': True,
            'dry_run': {'command': ['activate'], 'env': {'DRY_RUN': '1'}},
            'current_link': None,
            'driver': None,
            'profile_candidates': None,
            'profile_probe': None,
            # activate switches the profile back (--switch-generation N) only
            # when run through PROFILE-N-link; from the store path it makes a
            # NEW generation (--set): a rollback runs the generation link's
            'rollback_through_link': True,
            'pre_command': None,
            'install_bootloader_env': None,
            'no_check_env': None,
            'backup_env': None,
            'switch_lock': None,
        },
    },
    'home-manager': {
        # a configuration named user@host names its own target (the inventory's
        # user and address when its entry gives none)
        'user_at_host': True,
        'output': 'homeConfigurations',
        'system_attr': ['activationPackage'],
        # resolved on the target: XDG state dir when it exists, else per-user
        'profile': None,
        'needs_root': False,
        'goals': ['switch'],
        'activation': {
            'command': ['activate'],
            'sets_own_profile': False,
            # home-manager's own dry run (with the driver's args, as below)
            'dry_run': {'command': ['activate'], 'env': {'DRY_RUN': '1'}},
            'current_link': None,
            # home-manager's driver protocol: with it, activate leaves the
            # profile to the caller (we set it first)
            'driver': {'file': 'gen-version', 'min': 1, 'args': ['--driver-version', '1']},
            # (folder, profile name): the first folder that exists wins; none:
            # an error (activate itself looks in the same folders, in this
            # order). Constant sh words, expanded on the target.
            'profile_candidates': [
                ('${XDG_STATE_HOME:-$HOME/.local/state}/nix/profiles', 'home-manager'),
                ('/nix/var/nix/profiles/per-user/$USER', 'home-manager'),
            ],
            # nix-env arguments run (as the home-manager CLI does) before
            # looking for the folders, when the first is missing: Nix 2.14+
            # creates its XDG profiles folder
            'profile_probe': ['-q'],
            'rollback_through_link': False,
            'pre_command': None,
            'install_bootloader_env': None,
            'no_check_env': None,
            # the CLI's -b: move a file in the way aside with this extension
            'backup_env': 'HOME_MANAGER_BACKUP_EXT',
            'switch_lock': None,
        },
    },
}

# What each row's ``activation`` holds (nix_activate, plugin_utils/activation/_programs.py):
#   command           argv below the system's store path; '{step}' is the step
#                     the goal's row names (one run of the command a step)
#   sets_own_profile  the activation sets the profile itself (nix-on-droid):
#                     no goal moves it first
#   dry_run           {'command', 'env'} of a dry activation, or None (report only)
#   current_link      link naming the running system when it exists, else None
#   driver            {'file', 'min', 'args'}: extra args when FILE in the system
#                     holds a number >= min (home-manager's driver protocol)
#   profile_candidates  [(folder, name)] when 'profile' is None (see above)
#   profile_probe     nix-env args run before looking for the candidates'
#                     folders (so Nix creates its own), or None
#   rollback_through_link  a rollback runs PROFILE-N-link's activation, not
#                     the store path's (nix-on-droid)
#   pre_command       {'file', 'as', 'skip_mark'}: a program below the system
#                     run before the command, as 'invoker' (the user who
#                     logged in, before become), unless it holds the line
#                     skip_mark; or None
#   install_bootloader_env  variable always set to 0 or 1 (install_bootloader)
#   no_check_env      variable set to 1 by pre_switch_checks=false
#   backup_env        variable carrying backup_extension, or None
#   switch_lock       {'path', 'busy_mark'}: the activation's own lock, taken
#                     without waiting; busy_mark in its output = another
#                     switch held it and nothing changed; or None
#   boot_when_confirmed  under magic rollback a goal runs its window_steps
#                     before the confirmation and its confirmed_steps after
#                     (NixOS: test, then boot): a host that restarts before
#                     its confirmation (a power cut, a hang reset by hand)
#                     boots the previous system. Only where the command takes
#                     '{step}' (a platform that runs it once a step would
#                     activate twice)


# The goals of an activation (as colmena's Goal). A platform offers the goals
# its row's 'goals' lists, and every dry goal (each platform has a dry run or
# reports only). What each goal's row says:
#   name            the goal's word for the user (the task's option goal, the
#                   results' goal, messages); never a word the target gets
#   steps           the target's words, in order: each runs the platform's
#                   activation command once, with '{step}' as the word
#                   (switch-to-configuration's verbs; a platform whose
#                   command holds no '{step}' runs it once a step as it is).
#                   A step that fails ends the goal there. A dry goal has
#                   none: its report is the platform's dry_run
#   window_steps, confirmed_steps  the same goal in two parts, on a platform
#                   whose row says boot_when_confirmed, under magic rollback:
#                   the steps before the confirmation (the system runs, the
#                   boot default stays) and those after it (it boots); both
#                   empty for a goal that is never split
#   dry             activates nothing: a report of what an activation would
#                   do, which never reports a change (as check mode)
#   moves_profile   the profile is set to the new system before activating
#   records_active  the activated system is what runs now (kept in the state
#                   folder where no current_link says it)
#   magic_rollback  the watchdog waits for a confirmation (else: nothing runs
#                   the new system that a lost connection could reveal)
#   before_reboot   the goal a reboot's activation takes: the new system
#                   becomes the boot default and nothing runs it before the
#                   reboot; a platform that offers it can reboot (NixOS)
#   current         what must already be the new system for "unchanged":
#                   the profile, the active system or both
#   rollback_goal   the goal a rollback of this goal re-activates with
#   done            the summary's word for a done activation
class Goal(namedtuple('Goal', ['name', 'steps', 'window_steps', 'confirmed_steps', 'dry',
                               'moves_profile', 'records_active', 'magic_rollback',
                               'before_reboot', 'current', 'rollback_goal', 'done'])):
    """One row of GOALS. nix_activate parses its option goal into its row
    once (``goal_row``) and passes the row along; the row's ``name`` goes
    where the user reads a word (results, messages), its ``steps`` to the
    target programs."""

    __slots__ = ()

    def rollback(self):
        """The row of the goal a rollback of this goal re-activates with."""
        return GOALS[self.rollback_goal]

    def steps_on(self, platform, magic_rollback):
        """(steps before the confirmation, steps after it) of this goal on
        ``platform``: the window and confirmed steps where the platform's row
        says boot_when_confirmed and the run waits for a confirmation, else
        (steps, ())."""
        activation = platform_spec(platform)['activation']
        if self.confirmed_steps and magic_rollback and self.magic_rollback \
                and activation.get('boot_when_confirmed') and '{step}' in activation['command']:
            return self.window_steps, self.confirmed_steps
        return self.steps, ()


GOALS = dict((goal.name, goal) for goal in (
    Goal('switch', steps=('switch',), window_steps=('test',), confirmed_steps=('boot',),
         dry=False, moves_profile=True, records_active=True,
         magic_rollback=True, before_reboot=False,
         current='both', rollback_goal='switch', done='switched'),
    Goal('boot', steps=('boot',), window_steps=(), confirmed_steps=(),
         dry=False, moves_profile=True, records_active=False,
         magic_rollback=False, before_reboot=True,
         current='profile', rollback_goal='boot', done='boot default set'),
    Goal('test', steps=('test',), window_steps=(), confirmed_steps=(),
         dry=False, moves_profile=False, records_active=True,
         magic_rollback=True, before_reboot=False,
         current='active', rollback_goal='test', done='activated (test)'),
    Goal('dry-activate', steps=(), window_steps=(), confirmed_steps=(),
         dry=True, moves_profile=False, records_active=False,
         magic_rollback=False, before_reboot=False,
         current='both', rollback_goal='switch', done='dry-activated'),
))


def goal_row(goal):
    """The GOALS row (a ``Goal``) of the goal named ``goal``; ValueError
    names the known ones. The one lookup by name: nix_activate's, once."""
    try:
        return GOALS[goal]
    except KeyError:
        raise ValueError('unknown goal %r (known: %s)' % (goal, ', '.join(sorted(GOALS))))


def offers_goal(platform, goal):
    """Whether ``platform`` can activate with ``goal`` (a ``Goal``): its
    row's goals, and the dry ones everywhere."""
    return goal.name in platform_spec(platform)['goals'] or goal.dry


def goal_problem(platform, goal):
    """Why ``platform`` cannot activate with ``goal`` (a ``Goal``), naming
    the goals it has, or None when it can."""
    if offers_goal(platform, goal):
        return None
    return '%s supports the goals %s, not %s' % (
        platform, ', '.join(platform_spec(platform)['goals']), goal.name)


# the fix when an activation that needs root would run as another user
ROOT_FIX = 'connect as root or set become'


def root_refusal(platform, user):
    """Why ``platform``'s activation cannot run as ``user`` (the user it
    runs as: the login user, or root with become), or None when it can:
    nix-darwin's and NixOS's activation need root."""
    if not platform_spec(platform)['needs_root'] or user == 'root':
        return None
    return 'activating a %s system needs root, but this runs as %s: %s' % (platform, user, ROOT_FIX)


def reboot_goal():
    """The goal (a ``Goal``) a reboot's activation takes (the boot default,
    nothing run)."""
    return next(goal for goal in GOALS.values() if goal.before_reboot)


def reboots(platform):
    """Whether nix_activate can reboot hosts of ``platform``: those that
    offer the reboot's goal (NixOS)."""
    return reboot_goal().name in platform_spec(platform)['goals']


def moves_profile(platform, goal):
    """Whether activating ``goal`` (a ``Goal``) sets ``platform``'s profile first."""
    return goal.moves_profile and not platform_spec(platform)['activation'].get('sets_own_profile')


# Where nix lives on a target whose non-login ssh PATH lacks it, searched in
# this order after PATH: the NixOS system, the multi-user default profile
# (macOS), the user's profiles (nix-on-droid, single-user installs; old and
# new locations). Constant sh words: $HOME, $USER and XDG_STATE_HOME expand
# on the target. One list for every script that looks for nix.
KNOWN_NIX_DIRS = (
    '/run/current-system/sw/bin',
    '/nix/var/nix/profiles/default/bin',
    '$HOME/.nix-profile/bin',
    '/nix/var/nix/profiles/per-user/$USER/profile/bin',
    '${XDG_STATE_HOME:-$HOME/.local/state}/nix/profile/bin',
)


# The order the inventory looks through a flake's outputs for a host's
# configuration (a name in two outputs: the first wins): the table's own.
PLATFORM_ORDER = tuple(PLATFORMS)
# The platform of a host whose inventory entry names none, and of colmena's
# nodes (NixOS systems): the table's first.
DEFAULT_PLATFORM = PLATFORM_ORDER[0]


def user_at_host(platform):
    """Whether a configuration of ``platform`` named user@host names its target."""
    return PLATFORMS[platform]['user_at_host']


# Ansible group names for each platform (group names cannot hold '-').
GROUP_NAMES = {name: name.replace('-', '_') for name in PLATFORMS}

# Which platform a flake output belongs to, for inventories built from outputs.
OUTPUT_PLATFORM = {spec['output']: name for name, spec in PLATFORMS.items()}


def platform_spec(platform):
    """The table row for ``platform``; ValueError names the known ones."""
    try:
        return PLATFORMS[platform]
    except KeyError:
        raise ValueError('unknown platform %r (known: %s)'
                         % (platform, ', '.join(sorted(PLATFORMS))))


def system_attr_path(platform, configuration):
    """Attribute path (list) of ``configuration``'s deployable system."""
    spec = platform_spec(platform)
    return [spec['output'], configuration] + list(spec['system_attr'])


def attr_string(path):
    """Render an attribute path for a flake ref fragment, quoting as Nix does."""
    parts = []
    for part in path:
        text = str(part)
        if text and all(c.isalnum() or c in '_-\'' for c in text) and not text[0].isdigit():
            parts.append(text)
        else:
            parts.append('"%s"' % text.replace('\\', '\\\\').replace('"', '\\"'))
    return '.'.join(parts)
