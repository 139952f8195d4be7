# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ONE table: platform -> flake output, profile, activation, rollback, root.

Platform differences live here as data; other files look them up instead of
testing ``platform == ...``. See ../shared/PLATFORMS.md for the sources.
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
        'check_goal': 'dry-activate',
        'version_file': 'nixos-version',
        # how nix_activate switches to a system (see ACTIVATION_KEYS below)
        'activation': {
            'command': ['bin/switch-to-configuration', '{goal}'],
            'profile_goals': ['switch', 'boot'],
            'sets_own_profile': False,
            'magic_goals': ['switch', 'test'],
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
        'check_goal': None,
        'version_file': 'darwin-version',
        'activation': {
            # activate aborts unless uid 0; become supplies root
            'command': ['activate'],
            'profile_goals': ['switch'],
            'sets_own_profile': False,
            'magic_goals': ['switch'],
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
        'check_goal': None,
        'version_file': None,
        'activation': {
            # activate's last step sets the profile itself: never nix-env --set first
            'command': ['activate'],
            'profile_goals': [],
            'sets_own_profile': True,
            'magic_goals': ['switch'],
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
        'check_goal': None,
        'version_file': None,
        'activation': {
            'command': ['activate'],
            'profile_goals': ['switch'],
            'sets_own_profile': False,
            'magic_goals': ['switch'],
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
#   profile_goals     goals that move the profile (nix-env --set) before activating
#   sets_own_profile  the activation sets the profile itself (nix-on-droid)
#   magic_goals       goals the magic-rollback watchdog applies to
#   dry_run           {'command', 'env'} of a dry activation, or None (report only)
#   current_link      link naming the running system when it exists, else None
#   driver            {'file', 'min', 'args'}: extra args when FILE in the system
#                     holds a number >= min (home-manager's driver protocol)
#   profile_candidates  [(folder, name)] when 'profile' is None (see above)
ACTIVATION_KEYS = ('command', 'profile_goals', 'sets_own_profile', 'magic_goals', 'dry_run',
                   'current_link', 'driver', 'profile_candidates')

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


def known_nix_dirs_sh():
    """KNOWN_NIX_DIRS as double-quoted sh words (expanded on the target)."""
    return ' '.join('"%s"' % d for d in KNOWN_NIX_DIRS)


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
