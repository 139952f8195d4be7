# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option ``from_role_vars`` of nix_eval, nix_build, nix_copy_closure and
nix_activate: each option a task leaves unset comes from the host's variable
the deploy role has for it (plugin_utils/_action.py reads them).

Why: every templated task argument costs the controller a Jinja compilation
in the task's worker, for every host and task (a forked worker compiles
afresh); a deploy role task that wrote ``goal: "{{ nix_goal }}"`` for each of
its options spent most of its worker's CPU there (docs/benchmarks.md,
"Overhead"). The role now passes each phase's own inputs and this flag.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

SPEC = {'from_role_vars': {'type': 'bool', 'default': False}}

# option -> the deploy role's variable (roles/deploy/meta/argument_specs.yml)
NIX = {'nix_bin': 'nix_bin', 'nix_args': 'nix_args', 'nix_options': 'nix_options',
       'impure': 'nix_impure', 'show_trace': 'nix_show_trace',
       'override_inputs': 'nix_override_inputs'}
EVAL = dict(NIX, flake='nix_flake', attr='nix_attr', chunk_size='nix_eval_chunk_size',
            max_fail_percentage='nix_max_fail_percentage')
BUILD = dict(NIX, build_on='nix_build_on', gc_root_dir='nix_gc_root_dir',
             closure_diff='nix_closure_diff')
COPY = dict(NIX, mode='nix_copy_mode', caches='nix_caches', compress='nix_compress',
            check_sigs='nix_check_sigs', signing_key='nix_signing_key',
            remote_nix_dir='nix_remote_nix_dir', free_space_margin='nix_free_space_margin')
ACTIVATE = dict(NIX, platform='nix_platform', goal='nix_goal',
                magic_rollback='nix_magic_rollback', confirm_timeout='nix_confirm_timeout',
                auto_rollback='nix_auto_rollback', activation_timeout='nix_activation_timeout',
                lock_timeout='nix_lock_timeout', profile='nix_profile',
                remote_nix_dir='nix_remote_nix_dir', closure_diff='nix_closure_diff',
                health_checks='nix_health_checks', reboot='nix_reboot',
                reboot_timeout='nix_reboot_timeout', pre_switch_checks='nix_pre_switch_checks',
                install_bootloader='nix_install_bootloader',
                backup_extension='nix_hm_backup_extension', reactivate='nix_reactivate')


def unset_from(variables, args, role_vars, render):
    """``args`` with each option of ``role_vars`` it leaves unset taken from
    ``variables`` (rendered by ``render``, as a task argument would be) when
    the variable is defined there."""
    merged = dict(args)
    for option, name in sorted(role_vars.items()):
        if option not in merged and name in variables:
            merged[option] = render(variables[name])
    return merged
