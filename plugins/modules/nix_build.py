# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: nix_build
short_description: Build each host's Nix system, the build phase of a deploy
version_added: 1.0.0
author:
  - nixdeploy.fleet contributors (@nixdeploy)
description:
  - Builds the system each host of the play deploys (by default on the controller, or on the host
    itself or on builders), after M(nixdeploy.fleet.nix_eval), and keeps it from garbage collection
    until the next deploy. You normally reach it through the role C(nixdeploy.fleet.deploy) (its
    build phase; C(nix_build_on) chooses where) and the role C(nixdeploy.fleet.publish).
  - Builds each host's system derivation, by default on the controller.
  - "Each host built on the controller or on builders asks its play batch's build work, served by the run's one
    serving process (started by the first host of the run that asks), which takes the requests waiting into a wave,
    at most max(4, cores) waves at once. The first wave waits for the hosts of the play batch that have not asked yet
    while they keep coming (until none came for 1 s, at most 5 s in all; a host built on itself, or whose request is
    refused, says it will not ask); a later wave for the requests that arrive within 50 ms of each other, for at most
    5 s. A wave builds its
    controller-built systems in ONE C(nix build --keep-going) (Nix shares and parallelises common dependencies), and
    its builder-built systems with one probe of the builders they name and one build per builder."
  - "Each host's task ends as soon as its own system is built, so its copy starts while others still build: while a
    controller build of several systems runs, one C(nix-store --check-validity) a second tells which systems are in
    the store, and their hosts are answered at once (GC root and closure sizes); a builder's hosts are answered when
    its build is done. A slow system holds only its own host. A host whose request the serving process took but did
    not answer (the process died) fails with the tail of its log."
  - A build failure fails only the hosts that need the failed derivation, with the tail of its builder's log.
  - "A host whose system needs a platform the controller's Nix does not build fails at this task before
    anything is built or copied for it, with a message naming its system and the ways out (O(build_on=target),
    a builder, C(extra-platforms) with binfmt/qemu emulation, a binary cache that holds it prebuilt); the other
    hosts of the batch build. The dry run says what must be built; a derivation among it whose C(system) is
    neither the controller's C(system) nor one of its C(extra-platforms) and which no machine of Nix's
    C(builders) setting builds (C(nix config show) under O(nix_options) and O(nix_args), asked only when a
    derivation to build is for another system than this machine's) decides it. When Nix itself fails on a
    platform all the same, its message comes with the same ways out."
  - "Keeps one GC root per fleet and inventory host, C(<gc_root_dir>/<fleet>/<host>), replaced on every build, so
    a garbage collection on the controller cannot delete what is deployed. The fleet is the host's flake
    (O(flake), else the host var C(nix_flake)) without its commit, branch or C(narHash): its folder is named
    C(<last part of the flake's path>-<12 hex digits of its sha256>), so two flakes with a host C(web1) keep
    one root each, and every commit of one flake replaces the same root. Without a known flake (only
    O(drv_path) given) the root is C(<gc_root_dir>/<host>), as before."
  - "A root left directly in O(gc_root_dir) by an earlier release (C(<gc_root_dir>/<host>)) is removed when the
    host's root is written in its fleet's folder. After a rollback (M(nixdeploy.fleet.nix_activate)), the root
    points at the system the host runs again. A host that leaves the inventory keeps its root until it is
    removed by hand (C(rm <gc_root_dir>/<fleet>/<host>))."
  - "O(build_on=target) copies the derivation closure (C(.drv) files and sources, not outputs) to the host's own
    store over ssh-ng and realises it there; the output never passes through the controller (colmena's
    buildOnTarget, deploy-rs's remoteBuild). It needs no signatures: derivations are content-addressed."
  - "A remote builder (an inventory host name or an C(ssh-ng://) store URI) builds the same way, then the outputs
    are copied back to the controller (C(nix copy --from), trusted because we asked that builder to build them),
    so M(nixdeploy.fleet.nix_copy_closure) sends them on to the targets as usual and the controller's GC roots
    hold them."
  - "O(build_on) may name several builders. Before a wave uses them, each is probed once per wave, all at the same
    time: an ssh login with the host's own connection vars (host key checking stays on) that reads its Nix
    configuration (C(system), C(extra-platforms), C(system-features)) and the free space of C(/nix/store)
    (C(df -Pk)), then C(nix store info) (C(nix store ping) before Nix 2.19) against the store URI the build
    uses. A builder that fails any of them, or has less than O(builder_min_free_mb) free, is skipped; so is one
    that cannot build a host's closure (a derivation's C(system) is neither its system nor one of its
    extra-platforms, or its C(requiredSystemFeatures) are not all among its system-features). Skipped builders
    are named with their reason in RV(builders_skipped)."
  - "The systems are spread over the healthy builders: each system goes to the builder with the fewest
    derivations to handle once it is added (dependencies shared with the systems already there count once), and
    each builder runs ONE C(nix build) for all of the wave's systems placed on it, the builders at the same time. A host for which
    no builder is usable fails with each builder's reason. Systems whose outputs the controller already holds
    need no builder; none is probed for them."
extends_documentation_fragment:
  - nixdeploy.fleet.nix
  - nixdeploy.fleet.role_vars
  - nixdeploy.fleet.record_stats
  - action_common_attributes
  - action_common_attributes.flow
options:
  drv_path:
    description:
      - The derivation to build, as M(nixdeploy.fleet.nix_eval) returns it.
      - Defaults to the host fact C(nix_drv_path) that M(nixdeploy.fleet.nix_eval) sets; without it the system is
        evaluated from O(flake) and O(attr) first, as M(nixdeploy.fleet.nix_eval) evaluates with its default options
        (the evaluation cache, then evaluators side by side within the job's evaluator slots).
    type: str
  flake:
    description:
      - The flake to evaluate when there is no derivation yet (default the host var C(nix_flake)).
    type: str
  attr:
    description:
      - The system's attribute path when there is no derivation yet (default the host var C(nix_attr)).
    type: str
  build_on:
    description:
      - Where to build, V(controller), V(target) (the host itself), or one or more remote builders, each an
        inventory host name (its connection vars are used; nix is found on its ssh PATH or in the usual places)
        or an C(ssh-ng://) store URI (ssh options from the controller's C(NIX_SSHOPTS) and C(~/.ssh/config)).
      - Several builders are a list, or one string of names separated by commas (V(b1,b2)); give a store URI
        that holds a comma in a list. V(controller) and V(target) stand alone.
      - Defaults to the host var C(nix_build_on) (a string or a list), else V(controller).
      - With V(target), a host whose ssh key is not checked (C(host_key_checking) off, as ansible-runner
        sets it) is refused before anything runs on it; the host variable C(nix_host_key_unchecked=true)
        opts out.
    type: raw
    default: controller
  builder_min_free_mb:
    description:
      - A remote builder with less free space than this (MiB) in its C(/nix/store) is skipped as full.
      - V(0) does not check the free space.
    type: int
    default: 1024
  gc_root_dir:
    description:
      - Folder on the controller for the GC roots, one folder per fleet (flake) holding one symlink per
        inventory host named after it.
      - Outside C(/nix/var/nix/gcroots) the links are registered as indirect roots.
    type: path
    default: /nix/var/nix/gcroots/nixdeploy
  remote_nix_dir:
    description:
      - For O(build_on=target), the folder holding C(nix-daemon) on the target. Default, auto-detected from the
        usual places (the ssh PATH, C(/run/current-system/sw/bin), the default and user profiles).
    type: str
  timeout:
    description:
      - Seconds after which a Nix command is stopped. For the hosts it evaluates itself (no
        O(drv_path)), each host's evaluation, as M(nixdeploy.fleet.nix_eval)'s
        O(nixdeploy.fleet.nix_eval#module:eval_timeout). By default no limit on a Nix command, and
        1800 seconds on each host's evaluation.
    type: int
  closure_diff:
    description:
      - In check mode with diff mode, build controller-built systems for real (the controller's
        store only; no host changes) so that M(nixdeploy.fleet.nix_activate) can show the closure
        difference. Their GC roots go to O(gc_root_dir) with C(-check) appended (then the fleet
        and the host), so the roots of what is deployed stay as they are.
      - V(true) by default, as the deploy role's C(nix_closure_diff) and M(nixdeploy.fleet.nix_activate)'s
        O(nixdeploy.fleet.nix_activate#module:closure_diff) (one default per option).
    type: bool
    default: true
attributes:
  action:
    support: full
    details: Runs on the controller; only O(build_on=target) contacts the target.
  async:
    support: none
  bypass_host_loop:
    support: none
    details: Runs once per host; controller and builder builds run in the run's serving process (a detached
      process) in waves of the hosts asking together, each host answered when its own system is built.
  check_mode:
    support: full
    details: Builds and copies nothing, sets no GC root; reports RV(would_build) and RV(would_fetch).
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Outputs built on a target get no GC root on the controller; activating them (a profile) roots them there.
seealso:
  - module: nixdeploy.fleet.nix_eval
  - module: nixdeploy.fleet.nix_copy_closure
'''

EXAMPLES = r'''
- name: Evaluate, then build every selected system on the controller
  nixdeploy.fleet.nix_eval:

- name: Build (drv_path defaults to the nix_drv_path fact)
  nixdeploy.fleet.nix_build:
  register: built

- name: Build the small VPS on themselves
  nixdeploy.fleet.nix_build:
    build_on: target

- name: Build on a big builder of the inventory
  nixdeploy.fleet.nix_build:
    build_on: builder1
    gc_root_dir: /srv/nixdeploy/roots

- name: Spread the builds over two builders; skip one that is down, full or cannot build the system
  nixdeploy.fleet.nix_build:
    build_on: [builder1, "ssh-ng://nix@builder2.example.org"]
    builder_min_free_mb: 4096
  register: built

- name: Say which builder built each system and which were skipped, and why
  ansible.builtin.debug:
    msg: "{{ built.builder | default('-') }}; skipped: {{ built.builders_skipped | default([]) }}"
'''

RETURN = r'''
drv_path:
  description: The derivation built.
  returned: when known
  type: str
  sample: /nix/store/0im2pba7r3fdpdibj6ks2hakkl8n3rgp-nixos-system-web-1.drv
out_path:
  description: Its output, the system to deploy.
  returned: when known
  type: str
  sample: /nix/store/4i05gkk2f6acn8xzxyva9s3daf6wk46s-nixos-system-web-1
built:
  description: Whether the output was built now (it was not in the store before).
  returned: when known
  type: bool
built_for_diff:
  description: The system was built in check mode for the closure difference (O(closure_diff)).
  returned: in check and diff mode with O(closure_diff)
  type: bool
build_on:
  description:
    - Where it was built, V(controller), V(target) or the builder that built it.
    - When no builder built it (none usable, or the controller already held the output), the builders asked,
      comma-separated.
  returned: always
  type: str
  sample: controller
builder:
  description: The builder that built the system (its name as O(build_on) gives it).
  returned: when built on a builder
  type: str
  sample: builder2
builders_skipped:
  description: The builders O(build_on) names that were not used for this host, each with why.
  returned: when builders were probed for this host
  type: list
  elements: dict
  contains:
    name:
      description: The builder, as O(build_on) names it.
      type: str
      sample: builder1
    reason:
      description: Why it was skipped (login, store, free space, system or features).
      type: str
      sample: "login failed: ssh: connect to host 10.0.0.11 port 22: Connection refused"
closure_paths:
  description: Number of store paths in the output's closure.
  returned: success, not in check mode
  type: int
  sample: 12
closure_bytes:
  description: Size of the output's closure (NAR bytes).
  returned: success, not in check mode
  type: int
  sample: 1843200
gc_root:
  description: The GC root of this host on the controller.
  returned: success on the controller or a builder, not in check mode
  type: str
  sample: /nix/var/nix/gcroots/nixdeploy/infra-d7c5dd751658/web1
would_build:
  description: Derivations of this host's closure that had to be (or would be) built.
  returned: when known
  type: list
  elements: str
would_fetch:
  description: Paths the build had to (or would) fetch from substituters.
  returned: when known
  type: list
  elements: str
builder_store:
  description: Store URI of the remote builder.
  returned: when built on a builder
  type: str
  sample: ssh-ng://root@10.0.0.12
target_store:
  description: Store URI of the target it was built on.
  returned: when O(build_on=target)
  type: str
target_gc_root:
  description:
    - The link on the target that roots the system built there until its activation releases it
      (as M(nixdeploy.fleet.nix_copy_closure) roots a copied one), planted before the build.
    - V(null) when it could not be planted (a warning says why).
  returned: when O(build_on=target), not in check mode
  type: str
  sample: /nix/var/nixdeploy/gcroots/web1
ansible_stats:
  description:
    - With O(record_stats), the host's outcome so far (built (not activated)) as custom stats, in the shape
      RV(nixdeploy.fleet.nix_activate#module:ansible_stats) has; the activate task's replace them.
  returned: success, when O(record_stats) is given
  type: dict
  sample: {data: {nixdeploy: {web1: {phase: build, outcome: 'built (not activated)', failed: false}}},
           per_host: false, aggregate: true}
'''

from ansible_collections.nixdeploy.fleet.plugins.module_utils._module import controller_only
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import BUILD_SPEC


def main():
    controller_only('nix_build', BUILD_SPEC)


if __name__ == '__main__':
    main()
