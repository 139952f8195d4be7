#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: nix_activate
short_description: Activate a new Nix system on a host, rolled back when it breaks the host (the last phase of a deploy)
version_added: 1.0.0
description:
  - Makes a copied system the host's running one (V(switch), V(boot), V(test), V(dry-activate)) on
    NixOS, nix-darwin, nix-on-droid and home-manager, then confirms the host still answers over a
    new ssh login; a host that does not, or whose activation fails, is rolled back to its previous
    generation on its own (magic rollback). Also rolls a host back on request. You normally reach it
    through the role C(nixdeploy.fleet.deploy) (its last phase; C(nix_goal), C(nix_confirm_timeout))
    and the role C(nixdeploy.fleet.rollback).
  - It runs on the controller (an action plugin). Everything it does on the target is a short POSIX
    sh script sent over the task's connection, as M(ansible.builtin.raw) does, so the target
    needs only a shell and Nix, never Python. Become applies when the task has it. A host whose
    key ssh does not check is refused before anything runs on it (O(host_key_unchecked)).
  - "How each platform is activated: V(nixos) (C(nix-env -p
    /nix/var/nix/profiles/system --set) for V(switch) and V(boot), then
    C(bin/switch-to-configuration GOAL)); V(darwin) (set the system profile, then C(activate)
    as root); V(nix-on-droid) (run C(activate) only: it sets its own profile); V(home-manager)
    (profile under C(${XDG_STATE_HOME:-~/.local/state}/nix/profiles) when that folder exists,
    after C(nix-env -q) has let Nix create it, else C(/nix/var/nix/profiles/per-user/$USER)
    when that one exists, else an error; set it, then C(activate --driver-version 1)
    when the generation's C(gen-version) is at least 1)."
  - "What the platforms' own tools do is done the same way: NixOS gets
    C(NIXOS_INSTALL_BOOTLOADER) (0, or 1 with O(install_bootloader)) as nixos-rebuild passes it;
    a nix-darwin system built before 2025 has C(activate-user), which runs first, as the user who
    logged in (before become), unless it is marked C(# nix-darwin: deprecated); a nix-on-droid
    rollback runs the older generation's link C(nix-on-droid-N-link/activate), which switches the
    profile back (its store path's would make a new generation); home-manager's C(activate)
    finds C(nix-env) on E(PATH): where the task found Nix elsewhere, that folder is put first on
    E(PATH) for the activation."
  - "The activation runs detached on the target, from a file in the run's folder: as the systemd
    unit C(nixdeploy-activate-<run>) (C(systemctl status), C(journalctl -u)) when systemd runs
    and the task is root, else in its own session (C(setsid), else C(nohup)); its output goes to
    a log. A dropped ssh session, a restarted sshd or a switch that restarts the network does
    not stop it. Nothing of it passes through the unit's command line, where systemd would
    expand C($VAR); it sets its own E(PATH) (the session's and the folder of C(nix-env)), as a
    unit starts with systemd's. The task follows it through a status file, reconnecting when the
    connection is lost."
  - One activation at a time per target user and profile, by a lock folder on the target (with
    the owner's pid; a lock whose owner is gone is broken). A second activation waits up to
    O(lock_timeout) and then fails saying who holds the lock.
  - Idempotent. When the wanted system already is the profile's current generation and is
    active, nothing runs and the task reports no change, unless O(reactivate) asks for the
    activation to run again.
  - "NixOS's own switch lock (C(/run/nixos/switch-to-configuration.lock), held while another
    switch runs, for example C(system.autoUpgrade)): the run waits up to O(lock_timeout) for it
    before touching the profile, and when C(switch-to-configuration) still says C(Could not
    acquire lock) it waits and tries again. Once the wait is over the task fails saying so; nothing
    was activated, so nothing is rolled back (the profile goes back to its generation and only
    the generation this run made is dropped)."
  - "Magic rollback (O(magic_rollback), for V(switch) and V(test)): after a successful
    activation a watchdog on the target waits O(confirm_timeout) seconds for a confirmation.
    The task itself sends it, over a NEW connection (it drops the ssh master of the activation,
    so the confirmation is a fresh login), as soon as the activation is done: each host's
    confirmation window starts and ends with that host, whatever other hosts do. Without a
    confirmation (the new system refuses logins, or takes the network down) the target switches
    its profile back to the previous generation, re-activates it, deletes the failed generation
    and records why; the task reports that."
  - Auto rollback (O(auto_rollback)). A failed activation (any non-zero exit, including NixOS'
    exit code 4 for failed units, or running longer than O(activation_timeout)) is rolled back
    the same way.
  - "A rolled-back host is a failed host. The task fails with C(<host>: rolled back: <reason>)
    and the result keys RV(rolled_back), RV(phase) and RV(connection_lost) tell programs why."
  - "Health checks (O(health_checks)) run after the activation and before the confirmation:
    C(command) (POSIX sh on the target), C(http) (a request from the controller), C(tcp) (a
    connection from the controller) and C(unit) (a systemd unit that must be active). The first check that fails all its tries means the new
    system is not confirmed: the task rejects it and the watchdog rolls it back at once (without
    magic rollback, O(auto_rollback) rolls it back). The host fails with RV(phase=checks), the
    check's name and its last output. With magic rollback the watchdog's window is
    O(confirm_timeout) plus the longest the checks can take. Checks are skipped in check mode
    and say so."
  - "Reboots (O(reboot), NixOS): with V(always), or V(when-needed) when the kernel, initrd,
    kernel modules or systemd differ between C(/run/booted-system) and the new system, the task
    makes the new system the boot default (goal V(boot)), reboots the host with C(systemctl
    reboot), waits at most O(reboot_timeout) seconds for it to answer with a NEW
    C(/proc/sys/kernel/random/boot_id), checks that C(/run/booted-system) is the new system and
    runs the health checks. A host that comes back on another system or unhealthy gets its
    previous generation back as the boot default and fails; one that does not come back fails
    with what is known."
  - "Switch inhibitors (NixOS 25.11+): a switch refused by NixOS's pre-switch checks (C(Pre-switch
    check 'switchInhibitors' failed), exit code 1) changed nothing, so it is not rolled back: the
    profile is put back and the task fails naming the inhibitor and the two ways out, or, with
    O(reboot=when-needed), boots the new system instead (boot, reboot, verify, checks).
    O(pre_switch_checks=false) switches anyway (C(NIXOS_NO_CHECK=1)). The checks run for dry
    runs too (V(dry-activate), check mode), where O(pre_switch_checks=false) applies the same."
  - "Keys (O(keys), the secrets of M(nixdeploy.fleet.nix_keys), in the same task; O(state=activated)
    only): before the activation is launched, the keys with C(upload_at: pre-activation) are
    uploaded and, with O(keys_prune), the files of keys no longer in O(keys) removed, exactly as
    M(nixdeploy.fleet.nix_keys) with O(nixdeploy.fleet.nix_keys#module:upload_at=pre-activation)
    does; when that fails the host fails with RV(phase=keys), naming the key, and nothing is
    activated. After a successful activation (confirmed, with magic rollback) the keys with
    C(upload_at: post-activation) follow; a failed or rolled-back activation gets none, and
    neither does one left awaiting its confirmation (O(confirm=false), with a warning). When
    these fail the host fails with RV(phase=keys) and the activation stays (nothing is rolled
    back). Without keys and O(keys_prune) nothing is sent for them (no extra round trip)."
options:
  path:
    description:
      - The system to activate, a store path already in the target's store, usually
        RV(nixdeploy.fleet.nix_build#module:out_path) after M(nixdeploy.fleet.nix_copy_closure).
      - Required with O(state=activated).
    type: str
  platform:
    description:
      - The target's platform. Defaults to the host var C(nix_platform) that the
        P(nixdeploy.fleet.nix#inventory) inventory sets.
    type: str
    choices: [darwin, home-manager, nix-on-droid, nixos]
  goal:
    description:
      - V(switch) sets the profile and activates now (NixOS also makes it the boot default,
        with magic rollback only once it is confirmed; C(switch-to-configuration test) before
        the confirmation and C(boot) after it, so a host that restarts unconfirmed boots the
        previous system).
      - V(boot) (NixOS) sets the profile and the boot default only. No magic rollback.
      - V(test) (NixOS) activates without touching the profile; a reboot reverts it. Rolling it
        back (magic or auto rollback, or O(state=rolled_back) with O(goal=test)) activates the
        profile's current generation and leaves the profile and the boot entries alone.
      - "V(dry-activate) only reports what would change, like check mode, and never reports a
        change. It runs the platform's own dry run: NixOS C(switch-to-configuration
        dry-activate), nix-darwin C(checkActivation=1 activate) (C(darwin-rebuild check)),
        home-manager C(DRY_RUN=1 activate --driver-version 1), nix-on-droid C(DRY_RUN=1
        activate)."
      - darwin, nix-on-droid and home-manager have only V(switch).
    type: str
    choices: [switch, boot, test, dry-activate]
    default: switch
  state:
    description:
      - V(activated) activates O(path).
      - "V(confirmed) confirms, by hand, an activation that waits on the target (one started
        by another tool or an interrupted play). The task resets its connection itself, so the
        confirmation is a new login. Fails with C(rolled back: <reason>) when the watchdog
        already rolled back. V(activated) confirms by itself and needs no such task."
      - V(rolled_back) switches to the previous generation, or to O(generation), and activates
        it.
    type: str
    choices: [activated, confirmed, rolled_back]
    default: activated
  magic_rollback:
    description:
      - Guard a V(switch) or V(test) activation with the watchdog described above.
    type: bool
    default: true
  confirm:
    description:
      - With magic rollback, confirm the activation in this task, over a new connection, as soon
        as it is done.
      - V(false) leaves the confirmation to a later task with O(state=confirmed) (within
        O(confirm_timeout) seconds), for people who confirm by hand; the task then ends in state
        V(awaiting_confirmation).
    type: bool
    default: true
  target_hosts:
    description:
      - The host's addresses in order (C(nix_target_hosts), set by the inventory from C(targetHosts)). The
        task reaches the host where the login probe of M(nixdeploy.fleet.nix_eval) found it; when a
        confirmation login fails there (a new system that moved the host's address), it tries the other
        addresses in turn before its time runs out, so magic rollback does not undo a good system that
        answers at another address.
    type: list
    elements: str
  confirm_timeout:
    description:
      - Seconds the watchdog waits for the confirmation.
    type: int
    default: 30
  auto_rollback:
    description:
      - Roll back when the activation fails. With O(state=rolled_back), re-activate the
        generation that was current when the requested one fails.
    type: bool
    default: true
  activation_timeout:
    description:
      - Seconds an activation may run before it is stopped (and rolled back).
    type: int
    default: 240
  lock_timeout:
    description:
      - Seconds to wait for another activation of the same profile to finish, and then (NixOS)
        for another switch that holds C(/run/nixos/switch-to-configuration.lock) to end.
    type: int
    default: 60
  generation:
    description:
      - With O(state=rolled_back), the generation number to go to. Default is the newest
        generation older than the current one.
    type: int
  profile:
    description:
      - The profile to set, instead of the platform's (a path on the target).
    type: str
  closure_diff:
    description:
      - In diff mode, show the closure difference (C(nix store diff-closures), computed on the
        controller) between the profile's current system and the new one, and return it as
        RV(closure_diff). The controller's store must hold both (in check mode, build the new
        system there first).
    type: bool
    default: true
  health_checks:
    description:
      - Checks that decide whether the host is fine on its new system, run in order after the
        activation (and after a reboot), before the confirmation. See the description above.
      - Not run when nothing could be activated, for O(goal=boot) without a reboot, or in check
        mode (the result says so).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - The check's name, unique among the checks; failures name it.
        type: str
        required: true
      command:
        description:
          - A POSIX sh command run on the target over the task's connection (with its become);
            exit code 0 means healthy. Its output (stdout and stderr) is kept for the report.
          - Exactly one of O(health_checks[].command), O(health_checks[].http),
            O(health_checks[].tcp) and O(health_checks[].unit).
        type: str
      http:
        description:
          - A GET request made from the controller.
        type: dict
        suboptions:
          url:
            description:
              - An C(http://) or C(https://) URL. Proxies from the controller's environment apply.
            type: str
            required: true
          status:
            description:
              - The status code a healthy answer has.
            type: int
            default: 200
          body:
            description:
              - A Python regular expression the answer's body must contain a match of.
            type: str
          validate_certs:
            description:
              - Check the server's TLS certificate.
            type: bool
            default: true
          follow_redirects:
            description:
              - What a redirect (a 3xx with a C(Location)) does. A redirect is the target's
                answer, and the request is made from the controller's network. Following it
                anywhere would let a target make the controller fetch an address of its choice.
              - V(none) (default) follows none. The 3xx is the answer, compared with
                O(health_checks[].http.status) (a check that wants V(302) passes), and a failure
                says where it was redirected to.
              - V(same_host) follows redirects to the same scheme, host and port as
                O(health_checks[].http.url) only (at most 10). A redirect elsewhere fails the
                check, naming it.
            type: str
            choices: [none, same_host]
            default: none
      tcp:
        description:
          - A TCP connection made from the controller; healthy when the port accepts it within
            O(health_checks[].timeout) (it is closed at once, nothing is sent).
        type: dict
        suboptions:
          port:
            description:
              - The port that must accept connections.
            type: int
            required: true
          host:
            description:
              - The host name or address to connect to. Defaults to the address Ansible's
                connection reaches the host at (C(ansible_host), else the inventory name).
            type: str
      unit:
        description:
          - A systemd unit that must be active (C(systemctl is-active) on the target, NixOS).
        type: str
      retries:
        description:
          - How often a failed try is repeated, as Ansible's C(retries); a check is tried up to
            O(health_checks[].retries) + 1 times.
        type: int
        default: 3
      interval:
        description:
          - Seconds between tries.
        type: float
        default: 2
      timeout:
        description:
          - Seconds one try may take; a C(command) still running then is stopped with its whole
            process group.
        type: float
        default: 10
  reboot:
    description:
      - V(never) does not reboot.
      - V(always) reboots NixOS hosts after making the new system the boot default.
      - V(when-needed) reboots when the kernel, initrd, kernel modules or systemd differ between
        C(/run/booted-system) and the new system (as nixos-needsreboot and comin decide), or when
        the switch was refused by switch inhibitors; otherwise it switches as usual. A host
        without C(/run/booted-system) is not rebooted (the result says it cannot tell).
      - Needs O(goal=switch) or O(goal=boot). Other platforms never need a reboot;
        V(always) fails on them.
    type: str
    choices: [never, always, when-needed]
    default: never
  reboot_timeout:
    description:
      - Seconds a rebooting host has to come back with a new boot id. The task never waits
        longer.
    type: int
    default: 600
  pre_switch_checks:
    description:
      - Let NixOS's pre-switch checks refuse a switch whose switch inhibitors changed.
        V(false) sets C(NIXOS_NO_CHECK=1) for the activation, which switches anyway.
    type: bool
    default: true
  install_bootloader:
    description:
      - NixOS. Ask C(switch-to-configuration) to install the boot loader again
        (C(NIXOS_INSTALL_BOOTLOADER=1), C(nixos-rebuild --install-bootloader)). It is always
        passed, as V(0) by default.
    type: bool
    default: false
  backup_extension:
    description:
      - home-manager. A file in the way of one the configuration manages is moved aside with this
        extension instead of aborting the activation (C(HOME_MANAGER_BACKUP_EXT), the C(-b) of
        C(home-manager switch)). Other platforms ignore it.
    type: str
  reactivate:
    description:
      - Run the activation even when the wanted system already is the current and active
        generation (deploy-rs and colmena always do). On NixOS that restarts units that failed
        and (with O(install_bootloader)) reinstalls the boot loader, so a host left with a
        failed unit is repaired by deploying again with this set.
      - Such a run is reported as changed. It has no magic rollback (there is no other system to
        roll back to); when it fails the task fails and the host stays on that system.
      - The default keeps a second identical deploy free of changes.
    type: bool
    default: false
  keys_prune:
    description:
      - Before the activation, remove files M(nixdeploy.fleet.nix_keys) (or this module) uploaded
        earlier that are no longer a key of O(keys), by path, as
        O(nixdeploy.fleet.nix_keys#module:prune). Every key of O(keys) is kept, whatever its
        C(upload_at). Only files listed in the target's manifest of keys are ever removed.
      - With O(state=activated) only.
    type: bool
    default: false
  remote_nix_dir:
    description:
      - The folder holding C(nix-env) on the target. By default it is looked up on E(PATH), then in
        C(/nix/var/nix/profiles/default/bin), C(~/.nix-profile/bin),
        C(/run/current-system/sw/bin) and C(/nix/var/nix/profiles/per-user/$USER/profile/bin).
    type: str
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.flow
  - nixdeploy.fleet.nix
  - nixdeploy.fleet.role_vars
  - nixdeploy.fleet.keys
  - nixdeploy.fleet.record_stats
  - nixdeploy.fleet.host_keys
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  become:
    description: Runs the target scripts with the task's become (for example sudo).
    support: full
    details: NixOS and darwin need root. Connect as root or use become.
  check_mode:
    support: full
    details: Every platform runs its own dry activation (see O(goal=dry-activate)). The keys are
      handled as M(nixdeploy.fleet.nix_keys) does in check mode (their contents are read and
      compared by hash; nothing is written or pruned); so are they with O(goal=dry-activate),
      where what they would change counts in RV(would_change).
  diff_mode:
    support: partial
    details: Shows the profile's current store path against the wanted one and the closure
      difference (O(closure_diff)); with O(keys), each changed key's owner and mode before and
      after and whether its content changed (never the content, nor a hash of it), as
      M(nixdeploy.fleet.nix_keys) does.
  platform:
    platforms: posix
notes:
  - "The state folder keeps a 1 MiB reserve (C(reserve)): when it cannot be written (or the
    runner), the activation fails before anything changes (no lock, the profile untouched),
    with a message that starts C(no space left on /nix on <host> during the activation). A run
    whose file system fills while it runs gives the reserve back before writing its status,
    the lock, the canary or a rollback's profile switch."
  - Once the profile holds the new system, the run releases the GC root
    M(nixdeploy.fleet.nix_copy_closure) planted for it (C(<state>/gcroots/<inventory name>)
    points at C(/dev/null) then).
  - "After a rollback (O(state=rolled_back), or an activation the target rolled back before
    the task ended), the controller's GC root of the host that M(nixdeploy.fleet.nix_build)
    wrote (C(<gc_root_dir>/<fleet>/<host>), or an older C(<gc_root_dir>/<host>)) points at the
    system the host runs again, or is removed when the controller's store does not hold that
    system: it no longer keeps the system the host rolled back from. The folder is the variable
    C(nix_gc_root_dir) (default C(/nix/var/nix/gcroots/nixdeploy)), the fleet comes from the
    host's C(nix_flake), as the build reads them; a host with no controller root (built on
    itself) gets none. A root that cannot be moved is a warning; the rollback stands. A
    rollback the watchdog makes after the task ended (a confirmation lost later) leaves the
    root as it is."
  - The task follows the run through lost connections (a switch that restarts the network)
    until it ends, for at most 2 x O(lock_timeout) + O(activation_timeout) + 30 seconds, plus
    O(activation_timeout) + O(confirm_timeout) and the longest the health checks can take with
    magic rollback; a reboot adds at most O(reboot_timeout) and one more activation.
  - The confirmation is per target user and profile. It confirms whatever activation of that
    profile waits, which is always the one that holds the profile's lock.
  - The state on the target lives in C(/nix/var/nixdeploy/<profile>) for root and in
    C(${XDG_STATE_HOME:-~/.local/state}/nixdeploy/<profile>) for other users. Every run keeps
    its status and log there (the last 20).
  - When nothing says what is running (no C(/run/current-system)), "active" means what this
    module last activated on that profile.
  - O(keys) or O(keys_prune) with O(state=confirmed) or O(state=rolled_back) fail the task (those
    activate nothing to upload keys around); use M(nixdeploy.fleet.nix_keys) there.
  - Pre-activation keys in a tmpfs such as C(/run/keys) do not survive a reboot (O(reboot)); the
    next deploy uploads them again.
seealso:
  - module: nixdeploy.fleet.nix_copy_closure
  - module: nixdeploy.fleet.nix_build
  - module: nixdeploy.fleet.nix_keys
author:
  - nixdeploy.fleet contributors (@nixdeploy)
'''

EXAMPLES = r'''
- name: Activate each host's system, guarded by the watchdog, and confirm it over a new login
  nixdeploy.fleet.nix_activate:
    path: "{{ build.out_path }}"
    confirm_timeout: 30

- name: Upload the host's keys around the activation (pre-activation ones first), pruning old ones
  nixdeploy.fleet.nix_activate:
    path: "{{ build.out_path }}"
    keys: "{{ nix_keys }}"   # group_vars, the text values encrypted with ansible-vault
    keys_prune: true

- name: Activate, and keep the host's outcome as the custom stat nixdeploy (as the deploy role does)
  nixdeploy.fleet.nix_activate:
    path: "{{ deploy_eval.out_path }}"
    record_stats:
      registered:   # the names the earlier tasks registered their results as
        eval: deploy_eval
        build: deploy_build
        copy: deploy_copy

- name: Confirm by hand an activation another run left waiting
  nixdeploy.fleet.nix_activate:
    state: confirmed

- name: Make it the boot default only (NixOS)
  nixdeploy.fleet.nix_activate:
    path: "{{ build.out_path }}"
    goal: boot

- name: Activate, check the host's health, and roll back at once if a check fails
  nixdeploy.fleet.nix_activate:
    path: "{{ build.out_path }}"
    health_checks:
      - name: web
        http:
          url: "http://{{ ansible_host }}/healthz"
          body: '"status": *"ok"'
      - name: database
        unit: postgresql.service
      - name: disk
        command: test "$(df --output=pcent /var | tail -n 1 | tr -dc 0-9)" -lt 90
        retries: 0

- name: Reboot NixOS hosts whose kernel or systemd changed, and verify what booted
  nixdeploy.fleet.nix_activate:
    path: "{{ build.out_path }}"
    reboot: when-needed
    reboot_timeout: 300

- name: Go back to the previous generation
  nixdeploy.fleet.nix_activate:
    state: rolled_back

- name: Go back to generation 41 of a home-manager profile
  nixdeploy.fleet.nix_activate:
    state: rolled_back
    platform: home-manager
    generation: 41
'''

RETURN = r'''
details:
  description:
    - On a failed host, the activation's log tail (C(log_tail)) without the lines the message
      already says (a successful result has C(log_tail) itself); the whole log stays on the host.
  returned: failed, when the log says more than the message
  type: dict
platform:
  description: The platform whose steps were used.
  returned: always
  type: str
  sample: nixos
goal:
  description: The goal of the activation.
  returned: always
  type: str
  sample: switch
profile:
  description: The profile on the target.
  returned: success
  type: str
  sample: /nix/var/nix/profiles/system
previous:
  description: The profile's generation before the task.
  returned: success
  type: dict
  contains:
    generation:
      description: Its number, or null when the profile had none.
      type: int
      sample: 41
    path:
      description: Its store path.
      type: str
      sample: /nix/store/0kf5jqh4g5y5q95w07c8d45bw0zp0slv-nixos-system-web1-24.05
new:
  description: The generation the task made (or, for V(rolled_back), went to).
  returned: success
  type: dict
  contains:
    generation:
      description: Its number; null when no generation was made (V(test), or nothing changed).
      type: int
      sample: 42
    path:
      description: Its store path.
      type: str
      sample: /nix/store/ifnfp3jywbk1v5b4g6ggpkqv64ss47gr-nixos-system-web1-24.11
activated:
  description: Whether the system was activated.
  returned: always
  type: bool
gc_root:
  description:
    - After a rollback, the controller's GC root of the host, now pointing at the system it runs;
      V(null) when that root was removed (the controller's store does not hold that system).
  returned: after a rollback, when the controller held a root for the host
  type: str
  sample: /nix/var/nix/gcroots/nixdeploy/infra-d7c5dd751658/web1
rolled_back:
  description: Whether the target rolled back (a failed activation, a missing confirmation, or
    O(state=rolled_back)).
  returned: always
  type: bool
rollback_reason:
  description: Why it rolled back; V(requested) for O(state=rolled_back).
  returned: always
  type: str
  sample: no confirmation within 30s (is the host still reachable under the new system?)
confirmed:
  description: Whether the activation was confirmed.
  returned: always
  type: bool
state:
  description:
    - Where the run on the target ended. V(unchanged), V(done), V(awaiting_confirmation),
      V(failed), V(rolled_back), V(rollback_failed) or V(refused) (NixOS's pre-switch checks
      refused the switch, nothing changed).
  returned: when something ran on the target
  type: str
  sample: awaiting_confirmation
run:
  description: The run's id. Its log is in the state folder's C(runs/<id>/log) on the target.
  returned: when something ran on the target
  type: str
  sample: 1732140000-1a2b3c4d
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 3.2
log_tail:
  description:
    - The last lines of the activation's log.
    - >-
      A failed activation's own lines that tell why (such as C(warning: the following units
      failed: foo.service)) follow the cause in C(msg) instead, one a line, at most 8, control
      characters escaped; the result then has no C(log_tail) (the whole log is in the state
      folder's C(runs/<id>/log) on the target, RV(run)).
  returned: always, but with a failed activation whose own lines C(msg) holds
  type: list
  elements: str
dry_activate:
  description:
    - >-
      What the platform's dry activation printed (NixOS's C(would restart the following units:
      ...)), at most 60 lines, control characters escaped. The same lines follow the first line
      of C(msg), one a line.
  returned: >-
    in check mode and with O(goal=dry-activate), when the platform has a dry activation, the
    system is in the target's store and the dry activation did not fail (a failed one's lines
    that tell why follow C(msg) instead)
  type: list
  elements: str
  sample: ['would restart the following units: nginx.service']
magic_rollback:
  description: Whether the watchdog guarded this activation.
  returned: with O(state=activated)
  type: bool
detached_with:
  description: How the activation was detached on the target, V(systemd-run), V(setsid) or V(nohup).
  returned: with O(state=activated)
  type: str
  sample: setsid
unit:
  description: The systemd unit the activation ran as (with V(systemd-run)), for C(systemctl
    status) and C(journalctl -u); null otherwise.
  returned: with O(state=activated)
  type: str
  sample: nixdeploy-activate-1732140000-1a2b3c4d
connection_lost:
  description: Whether a lost connection is part of why the task failed (the host was
    unreachable, or could not be reached for the confirmation).
  returned: always
  type: bool
  sample: false
lost_connections:
  description: How often the connection was lost while the task followed the run.
  returned: when something ran on the target
  type: int
  sample: 0
phase:
  description: On failure, the step that failed, V(keys) (uploading O(keys); before the
    activation nothing was activated, after it the activation stays), V(activate), V(checks) (a
    health check), V(reboot) (the host did not come back, or not on the new system), V(confirm) or
    V(rollback).
  returned: failure
  type: str
  sample: confirm
phases:
  description: The steps inside the task (V(keys), V(activate), V(checks), V(reboot), V(confirm),
    V(rollback)) with their start and end (epoch seconds) and outcome (V(changed), V(ok),
    V(failed), V(rolled_back) and the like).
  returned: when something ran on the target
  type: list
  elements: dict
  sample: [{name: activate, start: 1732140000.1, end: 1732140001.4, outcome: changed},
           {name: confirm, start: 1732140001.4, end: 1732140002.0, outcome: changed}]
closure_diff:
  description: In diff mode with O(closure_diff), the closure difference.
  returned: in diff mode, when the system changes
  type: dict
  contains:
    added:
      description: Packages only in the new closure.
      type: list
      elements: str
    removed:
      description: Packages only in the old closure.
      type: list
      elements: str
    changed:
      description: Packages whose version or size changed.
      type: list
      elements: str
    size_change_bytes:
      description: The closure's size change.
      type: int
    lines:
      description: C(nix store diff-closures) output, one line per package.
      type: list
      elements: str
would_change:
  description: With O(goal=dry-activate), whether a real activation would change the target.
  returned: with O(goal=dry-activate)
  type: bool
health_checks:
  description: What the health checks found.
  returned: when O(health_checks) are given
  type: dict
  contains:
    ok:
      description: Whether every check that ran passed (also true when none ran).
      type: bool
    skipped:
      description: Whether the checks were not run (check mode, nothing activated); RV(health_checks.msg) says why.
      type: bool
    msg:
      description: One line, naming the failed check, why and the end of its output.
      type: str
      sample: "health check 'web' failed after 4 tries: HTTP 500 (wanted 200) (last output: db down)"
    checks:
      description: One result per check that ran, in order.
      type: list
      elements: dict
      contains:
        name:
          description: The check's name.
          type: str
        kind:
          description: V(command), V(http), V(tcp) or V(unit).
          type: str
        ok:
          description: Whether it passed.
          type: bool
        tries:
          description: How often it was tried.
          type: int
        detail:
          description: Why its last try failed (an exit code, a status, a timeout), or null.
          type: str
        output:
          description: The end of its last try's output (20 lines at most).
          type: str
        duration:
          description: Seconds it took.
          type: float
    failed:
      description: The result of the check that failed, or null.
      type: dict
    not_run:
      description: Names of the checks after the failed one, or all when skipped.
      type: list
      elements: str
    duration:
      description: Seconds the checks took.
      type: float
reboot:
  description: What O(reboot) decided and did.
  returned: when O(reboot) is not V(never) on a platform that reboots
  type: dict
  contains:
    mode:
      description: O(reboot).
      type: str
    needed:
      description: Whether the boot parts differ (null when the host cannot tell).
      type: bool
    reasons:
      description: "What differs, for example C(kernel: linux-6.6.1/bzImage -> linux-6.12.9/bzImage)."
      type: list
      elements: str
    rebooted:
      description: Whether the host rebooted and came back.
      type: bool
    would_reboot:
      description: In check mode, whether the task would reboot.
      type: bool
    boot_id_before:
      description: The boot id before the reboot.
      type: str
    boot_id_after:
      description: The new boot id.
      type: str
    booted:
      description: What C(/run/booted-system) points at after the reboot.
      type: str
    waited:
      description: Seconds between the reboot and the new boot id.
      type: float
switch_refused:
  description: When NixOS's pre-switch checks refused the switch (or its dry run), what refused it.
  returned: when the switch or its dry run was refused
  type: dict
  contains:
    checks:
      description: The failed pre-switch checks, for example V(switchInhibitors).
      type: list
      elements: str
    inhibitors:
      description: The inhibitors that changed, each with C(name), C(old) and C(new).
      type: list
      elements: dict
    lines:
      description: The lines of the activation's log that say so.
      type: list
      elements: str
keys_pre:
  description:
    - What uploading the pre-activation keys (and the prune) did, the result
      M(nixdeploy.fleet.nix_keys) returns (RV(nixdeploy.fleet.nix_keys#module:key_files),
      RV(nixdeploy.fleet.nix_keys#module:removed), C(changed); on failure also C(failed), C(msg),
      C(phase), C(rolled_back) and C(connection_lost)). Never key contents.
  returned: when O(keys) has pre-activation keys or O(keys_prune) is set, and the specs are valid
    or their check failed
  type: dict
  sample:
    changed: true
    key_files:
      db-password: {path: /run/keys/db-password, changed: true, action: update, differs: [content],
                    user: postgres, group: postgres, mode: '0400', upload_at: pre-activation}
    removed: [/run/keys/old-token]
keys_post:
  description:
    - What uploading the post-activation keys did, in the same shape as RV(keys_pre) (never a
      prune).
  returned: when O(keys) has post-activation keys and the activation succeeded (and was
    confirmed)
  type: dict
  sample:
    changed: false
    key_files:
      api-token: {path: /run/keys/api-token, changed: false, action: none, differs: [],
                  user: root, group: root, mode: '0600', upload_at: post-activation}
    removed: []
host_key_unchecked:
  description:
    - V(true) when ssh does not check the host's key and O(host_key_unchecked) let the task go on
      (a warning says why the key is not checked).
  returned: when the host key is not checked
  type: bool
  sample: true
ansible_stats:
  description:
    - With O(record_stats), the host's outcome as custom stats for Ansible to keep (the shape
      M(ansible.builtin.set_stats) returns); AWX and ansible-runner keep them as the job's
      artifacts.
  returned: success, when O(record_stats) is given
  type: dict
  sample:
    data:
      nixdeploy:
        web1: {host: web1, platform: nixos, failed: false, rolled_back: false, phase: activate,
               connection_lost: false, before: 41, after: 42, outcome: switched, msg: ''}
    per_host: false
    aggregate: true
'''

from ansible_collections.nixdeploy.fleet.plugins.module_utils._module import controller_only
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import ACTIVATE_SPEC


def main():
    controller_only('nix_activate', ACTIVATE_SPEC)


if __name__ == '__main__':
    main()
