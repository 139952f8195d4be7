# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ONE table: platform -> flake output, profile, activation, rollback, root;
and the activation goals and what each one means (``GOALS``).

Platform and goal differences live here as data; other files look them up
instead of testing ``platform == ...`` or ``goal == ...``. docs/concepts.md
describes the platforms for users.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


PLATFORMS = {
    'nixos': {
        # flake output holding the configurations, and the attribute path
        # below one configuration that is the deployable system
        'output': 'nixosConfigurations',
        'system_attr': ['config', 'system', 'build', 'toplevel'],
        'profile': '/nix/var/nix/profiles/system',
        'needs_root': True,
        'goals': ['switch', 'boot', 'test', 'dry-activate'],
        # how nix_activate switches to a system (see the keys below the table)
        'activation': {
            'command': ['bin/switch-to-configuration', '{goal}'],
            'sets_own_profile': False,
            'dry_run': {'command': ['bin/switch-to-configuration', 'dry-activate'], 'env': {}},
            'current_link': '/run/current-system',
            'driver': None,
            'profile_candidates': None,
        },
    },
    'darwin': {
        'output': 'darwinConfigurations',
        'system_attr': ['system'],
        'profile': '/nix/var/nix/profiles/system',
        'needs_root': True,
        'goals': ['switch'],
        'activation': {
            # activate aborts unless uid 0; become supplies root
            'command': ['activate'],
            'sets_own_profile': False,
            'dry_run': None,
            'current_link': '/run/current-system',
            'driver': None,
            'profile_candidates': None,
        },
    },
    'nix-on-droid': {
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
        },
    },
    'home-manager': {
        'output': 'homeConfigurations',
        'system_attr': ['activationPackage'],
        # resolved on the target: XDG state dir when it exists, else per-user
        'profile': None,
        'needs_root': False,
        'goals': ['switch'],
        'activation': {
            'command': ['activate'],
            'sets_own_profile': False,
            'dry_run': None,
            'current_link': None,
            # home-manager's driver protocol: with it, activate leaves the
            # profile to the caller (we set it first)
            'driver': {'file': 'gen-version', 'min': 1, 'args': ['--driver-version', '1']},
            # (folder, profile name): the first folder that exists wins, the
            # last is the fallback. Constant sh words, expanded on the target.
            'profile_candidates': [
                ('${XDG_STATE_HOME:-$HOME/.local/state}/nix/profiles', 'home-manager'),
                ('/nix/var/nix/profiles/per-user/$USER', 'home-manager'),
            ],
        },
    },
}

# What each row's ``activation`` holds (nix_activate, module_utils/_target.py):
#   command           argv below the system's store path; '{goal}' is the goal
#   sets_own_profile  the activation sets the profile itself (nix-on-droid):
#                     no goal moves it first
#   dry_run           {'command', 'env'} of a dry activation, or None (report only)
#   current_link      link naming the running system when it exists, else None
#   driver            {'file', 'min', 'args'}: extra args when FILE in the system
#                     holds a number >= min (home-manager's driver protocol)
#   profile_candidates  [(folder, name)] when 'profile' is None (see above)

# The goals of an activation (as colmena's Goal), for every platform that
# lists the goal in its row's 'goals' (dry-activate: all of them):
#   moves_profile   the profile is set to the new system before activating
#   records_active  the activated system is what runs now (kept in the state
#                   folder where no current_link says it)
#   magic_rollback  the watchdog waits for a confirmation (else: nothing runs
#                   the new system that a lost connection could reveal)
#   current         what must already be the new system for "unchanged":
#                   the profile, the active system or both
#   rollback_goal   the goal a rollback of this goal re-activates with
#   done            the summary's word for a done activation
GOALS = {
    'switch': {'moves_profile': True, 'records_active': True, 'magic_rollback': True,
               'current': 'both', 'rollback_goal': 'switch', 'done': 'switched'},
    'boot': {'moves_profile': True, 'records_active': False, 'magic_rollback': False,
             'current': 'profile', 'rollback_goal': 'boot', 'done': 'boot default set'},
    'test': {'moves_profile': False, 'records_active': True, 'magic_rollback': True,
             'current': 'active', 'rollback_goal': 'test', 'done': 'activated (test)'},
    'dry-activate': {'moves_profile': False, 'records_active': False, 'magic_rollback': False,
                     'current': 'both', 'rollback_goal': 'switch', 'done': 'dry-activated'},
}


def goal_spec(goal):
    """The GOALS row of ``goal``; ValueError names the known ones."""
    try:
        return GOALS[goal]
    except KeyError:
        raise ValueError('unknown goal %r (known: %s)' % (goal, ', '.join(sorted(GOALS))))


def moves_profile(platform, goal):
    """Whether activating ``goal`` sets ``platform``'s profile first."""
    return (goal_spec(goal)['moves_profile']
            and not platform_spec(platform)['activation'].get('sets_own_profile'))


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
