# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option specs the modules share with the option table (_role_vars.py):
the Nix options of every module that runs nix (``NIX_OPTIONS``, documented
by the doc fragment nixdeploy.fleet.nix), nix_activate's health checks and
reboot modes, nix_keys' upload times, nix_build's builder free space.

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

HEALTH_KINDS = ('command', 'http', 'unit')

# what an http check's follow_redirects may say
HEALTH_REDIRECTS = ('none', 'same_host')

HEALTH_HTTP_SPEC = dict(
    url=dict(type='str', required=True),
    status=dict(type='int', default=200),
    body=dict(type='str'),
    validate_certs=dict(type='bool', default=True),
    # a redirect is the target's answer, not an address the controller goes
    # to: 'none' (default) or 'same_host' (same scheme, host and port only)
    follow_redirects=dict(type='str', default='none', choices=list(HEALTH_REDIRECTS)),
)

HEALTH_CHECK_SPEC = dict(
    name=dict(type='str', required=True),
    command=dict(type='str'),
    http=dict(type='dict', options=HEALTH_HTTP_SPEC),
    unit=dict(type='str'),
    retries=dict(type='int', default=3),
    interval=dict(type='float', default=2),
    timeout=dict(type='float', default=10),
)

# The option nix_activate takes (and the role passes nix_health_checks to).
HEALTH_CHECKS = dict(type='list', elements='dict', default=[], options=HEALTH_CHECK_SPEC,
                     mutually_exclusive=[HEALTH_KINDS], required_one_of=[HEALTH_KINDS])

REBOOT_MODES = ('never', 'always', 'when-needed')

KEYS_UPLOAD_AT = ('pre-activation', 'post-activation')

BUILDER_MIN_FREE_MB = 1024
