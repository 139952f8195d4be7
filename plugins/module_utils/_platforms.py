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
    },
    'darwin': {
        'output': 'darwinConfigurations',
        'system_attr': ['system'],
        'profile': '/nix/var/nix/profiles/system',
        'needs_root': True,
        'goals': ['switch'],
        'check_goal': None,
        'version_file': 'darwin-version',
    },
    'nix-on-droid': {
        'output': 'nixOnDroidConfigurations',
        'system_attr': ['activationPackage'],
        'profile': '/nix/var/nix/profiles/nix-on-droid',
        'needs_root': False,
        'goals': ['switch'],
        'check_goal': None,
        'version_file': None,
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
    },
}

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
