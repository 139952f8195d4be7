# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option record_stats of nix_build, nix_copy_closure and nix_activate (plugin_utils/_stats.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  record_stats:
    description:
      - The registered results of this host's deploy phases before this one, keys V(eval),
        V(build) and V(copy) as far as they come before this module's phase (each may be missing
        or skipped), and V(job_id) (the AWX job id; missing, the variable C(awx_job_id) AWX sets;
        empty or unset, an id of the run is used).
      - A result may be given as the name of the variable it was registered as (a string); the
        action reads this host's variable of that name then (an undefined one counts as missing).
        The deploy role does, since templating whole results costs the controller CPU for every
        host and task.
      - When given, a successful result also keeps the host's outcome so far as the custom stats
        C(nixdeploy) and C(nixdeploy_job_<job_id>), the records the filter
        P(nixdeploy.fleet.deploy_stats#filter) makes from the same results, as
        M(ansible.builtin.set_stats) with C(per_host=false) and C(aggregate=true) would keep them
        (returned as RV(ansible_stats)); a later phase's record replaces it. The deploy role uses
        this, so that a host runs no task of its own for its outcome.
      - Ansible reads custom stats from successful results only; keep a failed host's with
        M(ansible.builtin.set_stats) (the deploy role does in its C(rescue)).
    type: dict
'''
