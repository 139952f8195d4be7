# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option record_stats of nix_build, nix_copy_closure and nix_activate (plugin_utils/task/_stats.py)."""


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  record_stats:
    description:
      - When given, a successful result also keeps the host's outcome so far as the custom stats
        C(nixdeploy) and C(nixdeploy_job_<job_id>), the records the filter
        P(nixdeploy.fleet.deploy_stats#filter) makes from the same results, as
        M(ansible.builtin.set_stats) with C(per_host=false) and C(aggregate=true) would keep them
        (returned as RV(ansible_stats)); a later phase's record replaces it. The deploy role uses
        this, so that a host runs no task of its own for its outcome.
      - The outcome is made of the results of this host's deploy phases before this module's
        (V(eval), V(build) and V(copy), as far as they come before it; each may be missing or
        skipped), given either by the names they were registered as (O(record_stats.registered))
        or as they are (O(record_stats.results)), not both.
      - Checked with the other arguments, before anything runs on the host; a phase that does not
        come before this module's, a name that is no variable name, or a variable that holds no
        result fails the host there, naming the key.
      - Ansible reads custom stats from successful results only; keep a failed host's with
        M(ansible.builtin.set_stats) (the deploy role does in its C(rescue)).
    type: dict
    suboptions:
      registered:
        description:
          - The names of the variables the earlier phases' results were registered as (their
            tasks' C(register)); the action reads this host's variable of each name (an undefined
            one counts as missing). The deploy role does, since templating whole results costs the
            controller CPU for every host and task.
        type: dict
        suboptions:
          eval:
            description: The variable of the M(nixdeploy.fleet.nix_eval) result.
            type: str
          build:
            description: The variable of the M(nixdeploy.fleet.nix_build) result (not for nix_build).
            type: str
          copy:
            description: The variable of the M(nixdeploy.fleet.nix_copy_closure) result (nix_activate only).
            type: str
      results:
        description:
          - The earlier phases' results themselves (for example C("{{ deploy_eval }}")).
        type: dict
        suboptions:
          eval:
            description: The M(nixdeploy.fleet.nix_eval) result.
            type: dict
          build:
            description: The M(nixdeploy.fleet.nix_build) result (not for nix_build).
            type: dict
          copy:
            description: The M(nixdeploy.fleet.nix_copy_closure) result (nix_activate only).
            type: dict
      job_id:
        description:
          - The AWX job id, for the stat C(nixdeploy_job_<job_id>). Unset, the variable
            C(awx_job_id) AWX sets; empty or neither, an id of the run.
        type: str
'''
