#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation and argument spec: the work is done by the action plugin of the same name."""

DOCUMENTATION = r'''
module: nix_status
short_description: Read what a host runs against what its flake gives, and class it (builds and writes nothing)
version_added: 1.0.0
description:
  - Reads, over the host's own Ansible connection, what the host runs now, what it booted, its
    profile's current generation and the records M(nixdeploy.fleet.nix_activate) keeps of its
    runs on the host; then gives the host one class, the first of these that applies
    (docs/status.md says what to do about each).
  - V(never_deployed), the host holds no record of a deploy by this collection, whatever it runs;
    V(changed_elsewhere), it runs a system this collection never put there;
    V(rolled_back), it runs a system older than the last one this collection deployed there
    (a magic rollback included); V(reboot_pending), NixOS only, the booted system differs from
    the running one in its kernel, initrd or kernel modules (what NixOS's own reboot check
    compares), or the boot default is neither of them; V(pending), the flake gives another
    system than the one it runs; V(in_sync).
  - With O(from_role_vars=true) and no O(desired), evaluates the host's system first, as
    M(nixdeploy.fleet.nix_eval) does with its O(nixdeploy.fleet.nix_eval#module:from_role_vars)
    (the deploy role's variables, one evaluation for the play batch, the same evaluation cache
    and reuse across commits); nothing is built or substituted. A failed evaluation fails the host
    with Nix's message, as M(nixdeploy.fleet.nix_eval) says it. The read is then the host's
    first login; no login probe runs beside the evaluation.
  - A host that gives no answer is Ansible's C(unreachable) (the class V(unreachable) of the
    playbook's totals and textfile). With O(from_role_vars=true) such a host is first probed as
    M(nixdeploy.fleet.nix_eval) probes it, at each of its addresses (C(nix_target_hosts)), and read
    again at the one that answers; the probe's words say an off host, and C(nix_unreachable=fail)
    makes it a failed host, as in a deploy.
  - Read-only. One POSIX sh program runs on the host; it writes no file, makes no folder, takes
    no lock, makes no GC root and runs no Nix command, so a login that may only read the
    profiles and the state folder is enough. Nothing is built or copied.
  - You normally reach it through the playbook C(nixdeploy.fleet.status), which runs it with
    O(from_role_vars=true), one task a host.
  - A host whose ssh key is not checked is refused before anything runs on it; the host variable
    C(nix_host_key_unchecked=true) opts out (docs/security.md).
options:
  desired:
    description:
      - The store path of the system the flake gives the host (M(nixdeploy.fleet.nix_eval)'s
        RV(nixdeploy.fleet.nix_eval#module:out_path)), for a desired system evaluated elsewhere.
        Nothing is built; it is only compared.
      - Required unless O(from_role_vars=true).
    type: str
  from_role_vars:
    description:
      - Without O(desired), evaluate the host's system from the deploy role's variables
        (C(nix_flake), C(nix_attr), C(nix_options) ...), as M(nixdeploy.fleet.nix_eval) with its
        O(nixdeploy.fleet.nix_eval#module:from_role_vars) does, in this same task. Its result is
        RV(eval).
      - The options of this module are never taken from variables.
    type: bool
    default: false
  platform:
    description:
      - What kind of system the host runs; where it keeps its running system and profile comes
        from the collection's platform table.
    type: str
    required: true
    choices: [nixos, darwin, nix-on-droid, home-manager]
  profile:
    description:
      - The profile to read, when not the platform's own (as M(nixdeploy.fleet.nix_activate)'s
        O(nixdeploy.fleet.nix_activate#module:profile)).
    type: str
  timeout:
    description:
      - Seconds the read may take before the host counts as unreachable.
    type: int
    default: 30
  closure_diff:
    description:
      - Whether to tell how far the host's closure is from the flake's (RV(status.closure_diff)),
        where the controller's store already holds both the system the host runs and the desired
        one. A path the store lacks is never built, fetched or substituted; its difference is then
        null.
      - Asked once for the play batch, not per host; the hosts that drifted and read at about the
        same time share one C(nix-store --check-validity) of their systems and one
        C(nix path-info -r) of those the store holds. A host that runs what the flake gives costs
        no Nix command.
    type: bool
    default: true
  fail_unless_in_sync:
    description:
      - Fail the host when it was read and is not V(in_sync), so that a CI job can gate on drift
        (the run's exit code is then 2). Its C(msg) is one line with the host, its class, why,
        and the way out (what brings it in sync, or the role variable
        C(nix_status_fail_unless_in_sync) that turns this off).
      - The failed result still holds RV(status). Ansible keeps no fact of a failed task, so the
        role C(nixdeploy.fleet.status) keeps the fact C(nixdeploy_status) of such a host from it.
    type: bool
    default: false
extends_documentation_fragment:
  - nixdeploy.fleet.nix
  - action_common_attributes
  - action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  become:
    description: Runs the read with the task's become; it needs none where the login may read
      the profile and the state folder.
    support: full
  check_mode:
    support: full
    details: The same read; it never changes anything.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: nixdeploy.fleet.nix_eval
  - module: nixdeploy.fleet.nix_activate
author:
  - nixdeploy.fleet contributors (@nixdeploy)
'''

EXAMPLES = r'''
- name: Evaluate each host as the deploy does, read it and class it
  nixdeploy.fleet.nix_status:
    from_role_vars: true
    platform: "{{ nix_platform }}"
  register: host_status

- name: Fail each host that drifted, one line each (a CI gate)
  nixdeploy.fleet.nix_status:
    from_role_vars: true
    platform: "{{ nix_platform }}"
    fail_unless_in_sync: true

- name: Against a system evaluated elsewhere
  nixdeploy.fleet.nix_status:
    desired: "{{ nix_out_path }}"
    platform: "{{ nix_platform }}"

- name: The hosts a deploy would change
  ansible.builtin.debug:
    msg: "{{ ansible_play_hosts | map('extract', hostvars, ['nixdeploy_status', 'class']) | list }}"
  run_once: true
'''

RETURN = r'''
msg:
  description: One line for people, the host's class, generation and short paths; for a host
    O(fail_unless_in_sync) fails, its class, why and the way out.
  returned: always
  type: str
  sample: "web1: pending (deploy pending), generation 41, runs nixos-system-web1-v1, flake gives nixos-system-web1-v2,
    +12 paths, -3 paths, +34.5 MiB"
status:
  description: The host's status, also kept as the fact C(nixdeploy_status) (cacheable) when the
    host ends ok.
  returned: when the host was read (also when O(fail_unless_in_sync) fails it)
  type: dict
  contains:
    class:
      description: One of V(never_deployed), V(changed_elsewhere), V(rolled_back),
        V(reboot_pending), V(pending), V(in_sync).
      type: str
      sample: pending
    words:
      description: The class in words.
      type: str
      sample: deploy pending
    reasons:
      description: Why the host is in its class (empty for V(in_sync)).
      type: list
      elements: str
    platform:
      description: The host's platform.
      type: str
    desired:
      description: The system the flake gives the host.
      type: str
    current:
      description: The system the host runs (C(/run/current-system) on NixOS and nix-darwin, the
        profile's current generation on nix-on-droid and home-manager); null when none.
      type: str
    booted:
      description: The system the host booted (NixOS, C(/run/booted-system)); null elsewhere.
      type: str
    boot_default:
      description: The system the profile's current generation names (on NixOS, what the host
        boots next).
      type: str
    generation:
      description: The profile's current generation number; null when the profile has none.
      type: int
    profile:
      description: The profile read.
      type: str
    last_deploy:
      description: This collection's last activation run on the host (null when none is kept),
        with C(run), C(when) (Unix time of its last state), C(state) (its end, e.g. V(done),
        V(rolled_back), V(failed)), C(system) (what it deployed), C(previous) (what ran before it)
        and C(rolled_back).
      type: dict
    closure_diff:
      description: From the system the host runs to the desired one, C(paths_added),
        C(paths_removed) (store paths of the closures) and C(size_change_bytes) (of the closure's
        size); all 0 when the host runs the desired system; null when the controller's store
        lacks either system, when Nix could not say, or with O(closure_diff=false).
      type: dict
      sample: {paths_added: 12, paths_removed: 3, size_change_bytes: 36175872}
ansible_facts:
  description: C(nixdeploy_status), the same as RV(status); with O(from_role_vars=true), also
    M(nixdeploy.fleet.nix_eval)'s facts C(nix_drv_path) and C(nix_out_path).
  returned: success
  type: dict
eval:
  description: M(nixdeploy.fleet.nix_eval)'s result for the host (its RV(nixdeploy.fleet.nix_eval#module:out_path),
    how its answer was found, its failure); the summary and report callbacks read it as that
    module's. When the evaluation failed, or the host was reached at none of its addresses, this
    module's result is that one's, with its C(msg) and its C(phase) V(eval).
  returned: with O(from_role_vars=true) and no O(desired), once the host was evaluated
  type: dict
phase:
  description: V(status) on failure (the gate's included); V(eval) for a failed evaluation or
    an off host (see RV(eval)).
  returned: failure
  type: str
connection_lost:
  description: Whether the connection to the host failed.
  returned: failure
  type: bool
'''

from ansible_collections.nixdeploy.fleet.plugins.module_utils._module import controller_only
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import STATUS_SPEC


def main():
    controller_only('nix_status', STATUS_SPEC)


if __name__ == '__main__':
    main()
