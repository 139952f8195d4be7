# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option specs the modules share with the option table (_role_vars.py):
the Nix options of every module that runs nix (``NIX_OPTIONS``, documented
by the doc fragment nixdeploy.fleet.nix), nix_activate's reboot modes,
nix_keys' upload times, nix_build's builder free space (nix_activate's
health checks: _health_kinds.py).

Surface only, constants and specs: the controller's code (plugin_utils)
imports them from here, module_utils imports nothing of the controller's."""

# The options of the nixdeploy.fleet.nix doc fragment as an argument spec:
# the one spec every module, action and the inventory plugin uses.
NIX_OPTIONS = {
    'nix_bin': {'type': 'str', 'default': 'nix'},
    'nix_args': {'type': 'list', 'elements': 'str', 'default': []},
    'nix_options': {'type': 'dict', 'default': {}},
    'impure': {'type': 'bool', 'default': False},
    'show_trace': {'type': 'bool', 'default': False},
    'override_inputs': {'type': 'dict', 'default': {}},
}

REBOOT_MODES = ('never', 'always', 'when-needed')

KEYS_UPLOAD_AT = ('pre-activation', 'post-activation')

BUILDER_MIN_FREE_MB = 1024
