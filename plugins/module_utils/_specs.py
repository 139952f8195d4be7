# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument spec of each module: what the module's ``main()`` hands to
``AnsibleModule`` (so ansible-test compares it with the documentation) and
what the action plugin of the same name validates its task arguments
against. Built from the option table (``_role_vars.spec``), ``_options`` and
``_record_stats`` only."""

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _options, _platforms, _role_vars
from ansible_collections.nixdeploy.fleet.plugins.module_utils._copy_modes import NEEDS_CACHES
from ansible_collections.nixdeploy.fleet.plugins.module_utils._options import (
    KEYS_UPLOAD_AT, NIX_OPTIONS)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._record_stats import (
    OPTION as RECORD_STATS)

KEYS_SPEC = dict(
    # name -> spec; holds secrets (text), never returned or displayed
    keys=dict(type='dict', default={}, no_log=True),
    upload_at=dict(type='str', default='all', choices=['all'] + list(KEYS_UPLOAD_AT)),
    prune=dict(type='bool', default=False),
)

# the table's options (module_utils/_role_vars_table.py) and nix_eval's own
EVAL_SPEC = dict(_role_vars.spec(_role_vars.EVAL), **{
    # false: the run activates nothing (the status role), so the user an
    # activation would run as is not judged
    'activates': {'type': 'bool', 'default': True},
})

# the table's options (module_utils/_role_vars_table.py) and nix_build's own
BUILD_SPEC = dict(_role_vars.spec(_role_vars.BUILD), **{
    'builder_min_free_mb': {'type': 'int', 'default': _options.BUILDER_MIN_FREE_MB},
    'timeout': {'type': 'int'},
    # the deploy role's eval result: a successful result keeps the outcome as custom stats
    'record_stats': RECORD_STATS,
})

# every option is one of the table's (module_utils/_role_vars_table.py), but record_stats
COPY_SPEC = dict(
    _role_vars.spec(_role_vars.COPY),
    # the deploy role's earlier results: a successful result keeps the outcome as custom stats
    record_stats=RECORD_STATS,
)

COPY_VALIDATION = {'required_if': [('copy_mode', name, ('caches',)) for name in NEEDS_CACHES]}

# the table's options (module_utils/_role_vars_table.py) and nix_activate's own
ACTIVATE_SPEC = dict(
    _role_vars.spec(_role_vars.ACTIVATE),
    path=dict(type='str'),
    state=dict(type='str', default='activated', choices=['activated', 'confirmed', 'rolled_back']),
    confirm=dict(type='bool', default=True),
    generation=dict(type='int'),
    # nix_keys' keys (no_log: they hold secrets) and prune, uploaded around the activation
    keys=dict(KEYS_SPEC['keys']),
    keys_prune=dict(KEYS_SPEC['prune']),
    # the deploy role's earlier results: a successful result keeps the outcome as custom stats
    record_stats=RECORD_STATS,
)

# nix_status's own: it reads, so it takes no option of the deploy's table
# (with from_role_vars and no desired, the nix_eval it runs reads them); the
# Nix options are those of the closure difference's store queries
STATUS_SPEC = dict(
    NIX_OPTIONS,
    from_role_vars=dict(_role_vars.FLAG_SPEC),
    desired=dict(type='str'),
    platform=dict(type='str', required=True, choices=list(_platforms.PLATFORMS)),
    profile=dict(type='str'),
    timeout=dict(type='int', default=30),
    closure_diff=dict(type='bool', default=True),
    fail_unless_in_sync=dict(type='bool', default=False),
)

PUBLISH_SPEC = dict(NIX_OPTIONS, **{
    'path': {'type': 'str'},
    'cache': {'type': 'str', 'required': True},
    'signing_key': {'type': 'path', 'required': True, 'no_log': True},
    'timeout': {'type': 'int'},
})

CHANNEL_SPEC = dict(NIX_OPTIONS, **{
    'repo': {'type': 'str', 'required': True},
    'ref': {'type': 'str'},
    'state': {'type': 'str', 'default': 'present', 'choices': ['present', 'query']},
    'flake': {'type': 'str'},
    'revision': {'type': 'str'},
    'path': {'type': 'str'},
    'require_published': {'type': 'bool', 'default': True},
    'git_dir': {'type': 'path'},
    'force': {'type': 'bool', 'default': False},
    'timeout': {'type': 'int'},
})
