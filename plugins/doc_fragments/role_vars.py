# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option from_role_vars of nix_eval, nix_build, nix_copy_closure and
nix_activate (module_utils/_role_vars.py). The lists of which options it fills
from which variables, between the markers, are written from the option table by
``python -m tests.docsite.role_spec_gen``; the rest is hand-written."""


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  from_role_vars:
    description:
      - Take each option this task leaves unset from the host's variable that the role
        C(nixdeploy.fleet.deploy) has for it, when that variable is defined; its value is
        templated as the argument's would be and checked like it; a bad value fails the host
        with a message naming the variable, not the option.
      - nix_eval, the deploy role's first phase, checks every role variable of the table this
        way before anything is evaluated (the later phases' too), and warns of C(nix_) variables
        no role knows (O(nixdeploy.fleet.nix_eval#module:unknown_vars)).
      # Generated from the option table by python -m tests.docsite.role_spec_gen: edit its rows.
      - An option's variable is always C(nix_) and the option's name (C(nix_flake) for C(flake));
        C(nix_bin), C(nix_args) and C(nix_options) are their own variables. The former name
        C(nix_hm_backup_extension) of C(nix_backup_extension) is still read, with a deprecation
        warning, until release 2.0.0.
      - The options that take part are the Nix options (C(nix_bin), C(nix_args), C(nix_options),
        C(impure), C(show_trace) and C(override_inputs)) and, for nix_eval, C(flake), C(attr),
        C(eval_chunk_size), C(eval_workers), C(eval_max_memory_mb), C(eval_timeout),
        C(eval_batch_timeout), C(eval_cache), C(eval_reuse), C(eval_reuse_check),
        C(max_fail_percentage), C(target_hosts), C(probe_timeout), C(unreachable) and
        C(unknown_vars); for nix_build, C(flake), C(attr), C(build_on), C(gc_root_dir),
        C(closure_diff) and C(remote_nix_dir); for nix_copy_closure, C(copy_mode), C(caches),
        C(compress), C(check_sigs), C(signing_key), C(free_space_margin), C(remote_nix_dir) and
        C(host_key_unchecked); for nix_activate, C(target_hosts), C(closure_diff),
        C(remote_nix_dir), C(platform), C(goal), C(magic_rollback), C(confirm_timeout),
        C(auto_rollback), C(activation_timeout), C(lock_timeout), C(profile), C(health_checks),
        C(reboot), C(reboot_timeout), C(pre_switch_checks), C(install_bootloader),
        C(backup_extension), C(reactivate) and C(host_key_unchecked).
      - Without it, C(flake), C(attr), C(target_hosts), C(build_on), C(remote_nix_dir), C(platform)
        and C(host_key_unchecked) still default to the host's own variables (set by the Nix
        inventory or in host_vars).
      - An option that differs per host (C(flake), C(attr), C(target_hosts), C(build_on),
        C(copy_mode), C(remote_nix_dir), C(platform) and C(host_key_unchecked)) and whose value is
        this host's own variable's is each host's own in a computation for the whole play batch,
        which reads the other hosts' variables for it.
      # End of the generated part.
      - The deploy role sets this instead of an argument per option, because every templated
        argument costs the controller a Jinja compilation for each host and task.
    type: bool
    default: false
'''
