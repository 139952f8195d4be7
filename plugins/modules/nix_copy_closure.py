#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation and argument spec: the work is done by the action plugin of the same name."""

DOCUMENTATION = r'''
module: nix_copy_closure
short_description: Copy a Nix system to its host, only what the host lacks (the copy phase of a deploy)
version_added: 1.0.0
description:
  - Copies a built system with everything it needs (its closure) into the host's Nix store over ssh,
    sending only the paths the host does not have yet. You normally reach it through the role
    C(nixdeploy.fleet.deploy) (its copy phase, between the build and the activation;
    C(nix_copy_mode), C(nix_signing_key)).
  - It runs on the controller (an action plugin). Makes a store path's whole closure valid in the
    target's Nix store over C(ssh-ng://), deriving the store URI and the ssh options from the
    host's own connection variables (C(ansible_host), C(ansible_port), C(ansible_user),
    C(ansible_ssh_private_key_file), C(ansible_ssh_common_args), C(ansible_ssh_extra_args)),
    as M(ansible.posix.synchronize) does for rsync. Host key checking is never turned off, and a
    host whose key ssh does not check is refused before anything runs (O(host_key_unchecked)).
  - One short POSIX sh probe over the Ansible connection finds nix on the target (also where a
    non-login shell has no nix on E(PATH), as on macOS and nix-on-droid), learns whether the
    ssh user may skip signature checks, and asks the target's store which closure paths it
    lacks (one validity query). Nothing is sent when nothing is missing.
  - "How signatures are handled (O(check_sigs=auto)): when the ssh user is root, owns the
    store (single-user installs such as nix-on-droid) or is in the target's C(trusted-users),
    paths are copied with C(--no-check-sigs). Otherwise, when O(signing_key) is given the
    closure is signed on the controller and the target checks the signatures against its
    C(trusted-public-keys). Otherwise, with become through passwordless C(sudo), the target's
    store side runs as C(sudo -n nix-daemon --stdio), which is trusted. Otherwise the copy
    is tried as is and, when the target refuses unsigned paths, fails saying so."
  - The target needs only a POSIX shell and Nix; no Python.
  - "O(copy_mode=cascade): the controller sends each system's closure to ONE host of the play batch;
    from then on every host that holds it runs C(nix copy --to ssh-ng://) itself to the next host,
    so the holders double each round and the controller's uplink carries about one closure
    however many hosts there are (about (log2 N + 1) x S / U instead of N x S / U). The first host
    of the batch to reach the task plans and drives the whole cascade for the batch (the other
    hosts wait for it, then each answers for itself: only a host whose delivery failed fails).
    Hosts deploying the same store path share a cascade; hosts already holding it send it on;
    only missing paths move. The hops are driven from the controller with the controller's own
    ssh and each host's connection variables."
  - "Trust in cascade mode: host key checking on every hop, against the key the controller's own
    known_hosts holds for the receiver (handed to the sender in a temp file, removed after the
    hop). The sender logs in to the receiver with an C(ssh-agent) the controller starts for that
    one hop, forwarded to the sender, holding the receiver's deploy key under destination
    constraints (C(ssh-add -h), OpenSSH 8.9 or later on the controller and the hosts): the sender
    can use it for that receiver only, while the hop runs. The receiver checks signatures as a
    push would (O(check_sigs), O(signing_key)). Nothing is left on the hosts. See
    C(docs/copy-cascade.md) for the risks of this choice."
  - "Cascade host variables: C(nix_site) (default the host's first C(nix_tags) tag, else its
    first group): a site without a holder is entered once, from any holder, then served by its
    own hosts. C(nix_peer_host): the address the other hosts reach the host at (default
    C(ansible_host)). C(nix_out_path), C(nix_copy_mode), C(nix_remote_nix_dir) and C(nix_build_on)
    tell the planning host what the other hosts' tasks will ask for (when this task's O(path),
    O(copy_mode) and O(remote_nix_dir) equal its own host's variables)."
  - "Cascade faults: a sender the controller loses mid-hop is not used again and its receiver
    gets the closure from another holder (or the controller); a receiver the other hosts cannot
    reach (twice), whose host key does not match on the peer path, whose hop failed in Nix, or
    that peers cannot be given (no known host key, no key file, reached through a jump host)
    gets a direct push from the controller. Every failed hop is named in RV(hop_errors) and a
    warning."
options:
  path:
    description:
      - The store path whose closure to copy, usually RV(nixdeploy.fleet.nix_build#module:out_path).
      - A path inside a store path stands for that whole store path.
    type: str
    required: true
  copy_mode:
    description:
      - V(push) sends the missing paths from the controller (C(nix copy --to ssh-ng://)).
      - V(substitute) is V(push), but the target first fetches what it can from its own
        substituters (C(--substitute-on-destination)), sparing the controller's link.
      - V(cache) makes the target fetch the closure itself from O(caches) (C(nix copy --from))
        over its own link; the controller sends no closure bytes. The target checks the
        caches' signatures against its own C(trusted-public-keys).
      - V(cascade) sends the closure once from the controller and lets the hosts of the play
        batch copy it on to each other, as described above. In check mode it reports what a
        push would send.
      - Its former name O(mode) is a deprecated alias (until release 2.0.0).
    type: str
    aliases: [mode]
    choices: [push, substitute, cache, cascade]
    default: push
  caches:
    description:
      - Binary cache URLs for O(copy_mode=cache), tried in order until one holds the closure.
      - The controller also reads the closure's size from them when it does not hold the path.
      - "An http(s) cache that asks for a login takes it in the URL, C(https://USER:PASSWORD@host/...)
        (percent-encoded; a bare C(https://TOKEN@host) is a user name without a password). Nix gets
        the URL without it, and the login in a private netrc file (its C(netrc-file) setting, in
        its environment): on the controller a file of a C(mkdtemp) folder, on the target one that
        the program writes from its stdin; both removed afterwards. The login is in no command
        line, result or message."
      - "Refused, failing the host before anything runs: a secret-named query parameter
        (C(?access_token=), C(?token=), ...: Nix reads a cache URL's parameters as store settings
        and sends none to the cache), a login on a store Nix takes none from (C(s3://), C(file://),
        a password on C(ssh://)), a login holding a space, a quote, a backslash or a leading C(#)
        (a netrc cannot carry it: put it in the netrc file of the machine instead), and two caches
        on one host with different logins."
    type: list
    elements: str
    default: []
  compress:
    description:
      - Compress the ssh stream (C(?compress=true), ssh C(-C)). Worth it on slow links.
    type: bool
    default: false
  signing_key:
    description:
      - A Nix secret key file on the controller (C(nix-store --generate-binary-cache-key)).
        The closure is signed with it (C(nix store sign -r)) before the copy, so a target
        whose C(trusted-public-keys) holds the public half accepts it from a non-trusted user.
      - Preferred over running the store side through sudo when both are possible.
      - Signing writes the signatures into the controller's store, which needs a local store
        or a trusted controller user.
    type: path
  check_sigs:
    description:
      - V(auto) decides as described above.
      - V(true) never passes C(--no-check-sigs); the paths must be signed (O(signing_key) or
        already signed by a trusted key).
      - V(false) always passes C(--no-check-sigs); a non-trusted target user is still refused.
    type: str
    choices: [auto, 'true', 'false']
    default: auto
  remote_nix_dir:
    description:
      - The folder on the target holding C(nix-store), C(nix) and C(nix-daemon).
      - By default the probe looks on E(PATH), then in C(/run/current-system/sw/bin),
        C(/nix/var/nix/profiles/default/bin), C(~/.nix-profile/bin),
        C(/nix/var/nix/profiles/per-user/$USER/profile/bin) and
        C(${XDG_STATE_HOME:-~/.local/state}/nix/profile/bin).
    type: str
  free_space_margin:
    description:
      - "Before anything is sent, the probe reads the free space of the file system holding the
        target's C(/nix/store) (C(df -Pk)); when it is less than the NAR size of the missing
        paths times this margin, plus 4 KiB per missing path (a file system stores each path
        in whole blocks) and a fixed 8 MiB (the growth of Nix's database and its write-ahead
        log during the import, and room for the activation), the host fails at once, naming
        both figures (C(no space left on /nix on web3: 12 MB free, the closure needs 210 MB))."
      - The margin covers what the archive size does not count (directories, block
        rounding); raise it for file systems with large blocks or compression off.
      - V(0) turns the check off. In check mode a host without room fails the same way.
    type: float
    default: 1.1
extends_documentation_fragment:
  - nixdeploy.fleet.nix
  - nixdeploy.fleet.role_vars
  - nixdeploy.fleet.record_stats
  - nixdeploy.fleet.host_keys
  - action_common_attributes
  - action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Copies nothing; RV(paths_sent) and RV(bytes_sent) say what a real run would send.
      - In O(copy_mode=cascade) each host reports what a push to it would send; no cascade is planned.
  diff_mode:
    support: full
    details: Lists the store paths the target lacks.
  platform:
    platforms: posix
notes:
  - The ssh options reach Nix through E(NIX_SSHOPTS), which Nix 2.8 splits on whitespace; an
    ssh argument holding a space (for example C(ProxyCommand="ssh -W ...")) is refused with a
    clear error. Put such settings in C(~/.ssh/config) or use a form without spaces
    (C(-o ProxyJump=user@bastion)). A private key path with spaces is passed in the store
    URI's C(ssh-key) parameter instead.
  - Become is not used to run the probe. With become through C(sudo), the copy's store side
    runs as C(sudo -n <nix_dir>/nix-daemon --stdio), so sudo must not ask for a password for
    it; with a sudo password, use O(signing_key) instead.
  - "The copied system is rooted on the target from before the copy until its activation: the
    probe points the link C(<state>/gcroots/<inventory name>) at it (C(<state>) is
    C(/nix/var/nixdeploy) for root, else C(${XDG_STATE_HOME:-~/.local/state}/nixdeploy) of the
    ssh user; the inventory name is %-escaped), a root Nix registers once as an indirect GC
    root. A garbage collection between the copy and the activation, or after a push-only run
    (C(--skip-tags activate)), keeps it. The next copy to the host re-points the root; the
    activation points it at C(/dev/null) once the profile holds the system. Check mode plants
    nothing. When the root cannot be planted the copy goes on with a warning."
  - A copy cut off mid-way leaves no half-copied path valid on the target (Nix registers a path
    only after its whole archive arrived); run the task again to send the rest.
  - In O(copy_mode=cascade) the controller reads the other hosts' connection variables from their
    host variables; a setting only in C(ansible.cfg) or play keywords (C(remote_user),
    C(private_key_file)) is taken from this task's own connection, as Ansible would use it for
    them. A host using a connection other than ssh, or building on itself
    (C(nix_build_on=target)), is left out of the cascade.
  - In O(copy_mode=cascade) a receiver that logs in with C(--no-check-sigs) trust (root, a trusted
    user) accepts whatever its sender sends it; give O(signing_key) and O(check_sigs=true) so
    every receiver checks the controller's signature instead.
seealso:
  - module: nixdeploy.fleet.nix_build
  - module: nixdeploy.fleet.nix_activate
author:
  - nixdeploy.fleet contributors (@nixdeploy)
'''

EXAMPLES = r'''
- name: Copy the built system to each host (only what it lacks)
  nixdeploy.fleet.nix_copy_closure:
    path: "{{ build.out_path }}"

- name: Copy as a non-root user whose target trusts our signing key
  nixdeploy.fleet.nix_copy_closure:
    path: "{{ build.out_path }}"
    signing_key: /etc/nixdeploy/signing-key.sec

- name: Let the hosts fetch the closure from a binary cache near them
  nixdeploy.fleet.nix_copy_closure:
    path: "{{ build.out_path }}"
    copy_mode: cache
    caches:
      - https://cache.example.org

- name: Cascade - the controller sends the closure once, the hosts carry it on
  nixdeploy.fleet.nix_copy_closure:
    path: "{{ build.out_path }}"
    copy_mode: cascade
    signing_key: /etc/nixdeploy/signing-key.sec
    check_sigs: "true"   # every receiver checks the controller's signature

- name: nix-on-droid keeps nix in the app user's profile
  nixdeploy.fleet.nix_copy_closure:
    path: "{{ build.out_path }}"
    remote_nix_dir: /data/data/com.termux.nix/files/home/.nix-profile/bin
'''

RETURN = r'''
details:
  description:
    - On a failed host, what the target's Nix said (C(stderr)) beyond the lines the message already
      quotes, credentials masked; kept out of the way of the message, which says the cause.
  returned: failed, when Nix said more than the message
  type: dict
path:
  description: The store path whose closure was copied.
  returned: always
  type: str
  sample: /nix/store/yp65nwcm3qq6n5j1ccmpgvgxhlxbn14m-nixos-system-web1-1
mode:
  description: The copy mode used.
  returned: always
  type: str
  sample: push
paths_sent:
  description:
    - Store paths the controller sent, as C(nix copy) reported them (in check mode, the paths
      it would send). V(0) in O(copy_mode=cache); in O(copy_mode=substitute) without the paths the target
      substituted itself. In O(copy_mode=cascade), the paths this host received, from whichever
      sender RV(copied_from) names.
  returned: always
  type: int
  sample: 5
bytes_sent:
  description: Uncompressed archive (NAR) bytes of those paths.
  returned: always
  type: int
  sample: 2340960
copied_from:
  description:
    - Who sent this host its closure in O(copy_mode=cascade) - another host's inventory name, or
      V(controller) - or V(null) when the host lacked nothing.
  returned: when mode is cascade
  type: str
  sample: web3
sent_to:
  description: The hosts this host sent the closure to in O(copy_mode=cascade).
  returned: when mode is cascade
  type: list
  elements: str
  sample: [web5, web7]
hop_errors:
  description:
    - Failed attempts to deliver to this host in O(copy_mode=cascade), each naming its hop
      (C(sender -> receiver)) and the reason in ssh's or Nix's words, whether or not a later
      attempt delivered it.
  returned: when mode is cascade
  type: list
  elements: str
  sample: ["web1 -> web7: host key verification failed: the receiver did not present the host key the controller knows for it (Host key verification failed.)"]
cascade:
  description: The cascade of this host's system (O(copy_mode=cascade), when the batch's cascade covered the host).
  returned: when mode is cascade
  type: dict
  contains:
    system:
      description: The store path cascaded.
      type: str
    hosts:
      description: Hosts deploying it in this play batch.
      type: int
    receivers:
      description: Those that lacked part of it.
      type: int
    seconds:
      description: Wall-clock seconds from the first hop to the last (the copy phase).
      type: float
    controller_paths:
      description: Store paths the controller itself sent, for all hosts together.
      type: int
    controller_bytes:
      description: Their NAR bytes (about one closure when nothing failed).
      type: int
    hops:
      description: Successful transfers, the controller's included.
      type: int
    rounds:
      description: The longest chain of transfers from the controller to a host.
      type: int
    depth:
      description: This host's place in that chain (1 for the host the controller served).
      type: int
    site:
      description: This host's site (C(nix_site), else first tag, else first group).
      type: str
phase:
  description: V(copy), on failure (for the deploy summary).
  returned: failure
  type: str
  sample: copy
connection_lost:
  description: On failure, whether the controller could not reach the host over ssh (not a host key or sudo refusal).
  returned: failure
  type: bool
  sample: false
paths_missing:
  description: Closure paths the target lacked before the task.
  returned: success
  type: int
  sample: 5
bytes_missing:
  description: Their NAR bytes.
  returned: success
  type: int
  sample: 2340960
closure_paths:
  description: Paths in the whole closure.
  returned: success
  type: int
  sample: 5
closure_bytes:
  description: NAR bytes of the whole closure.
  returned: success
  type: int
  sample: 2340960
paths_fetched:
  description: Paths the target fetched from O(caches) (O(copy_mode=cache) only).
  returned: when mode is cache and something was missing
  type: int
  sample: 5
seconds:
  description: Wall-clock seconds the task took.
  returned: always
  type: float
  sample: 1.43
store_uri:
  description: The Nix store URI of the target.
  returned: success
  type: str
  sample: ssh-ng://deploy@192.0.2.10?remote-program=sudo%20-n%20--%20/nix/var/nix/profiles/default/bin/nix-daemon
free_bytes:
  description:
    - Free bytes of the file system holding the target's store, before the copy.
    - V(null) when C(df) said nothing readable.
  returned: success
  type: int
  sample: 12582912
gc_root:
  description:
    - The link on the target that roots the copied system until its activation.
    - V(null) in check mode, or when it could not be planted (a warning says why).
  returned: success
  type: str
  sample: /nix/var/nixdeploy/gcroots/web1
remote_nix_dir:
  description: Where nix was found on the target.
  returned: success
  type: str
  sample: /nix/var/nix/profiles/default/bin
trust:
  description:
    - How the copy passes the target's signature check. V(trusted) (root, store owner or
      C(trusted-users)), V(sudo) (store side run through sudo), V(signed) (O(signing_key)),
      V(unsigned) (no way found; works only for paths already signed by a trusted key), or
      V(cache) in O(copy_mode=cache).
  returned: success
  type: str
  sample: trusted
host_key_unchecked:
  description:
    - V(true) when ssh does not check the host's key and O(host_key_unchecked) let the task go on
      (a warning says why the key is not checked).
  returned: when the host key is not checked
  type: bool
  sample: true
ansible_stats:
  description:
    - With O(record_stats), the host's outcome so far (copied (not activated)) as custom stats, in the shape
      RV(nixdeploy.fleet.nix_activate#module:ansible_stats) has; the activate task's replace them.
  returned: success, when O(record_stats) is given
  type: dict
  sample: {data: {nixdeploy: {web1: {phase: copy, outcome: 'copied (not activated)', failed: false}}},
           per_host: false, aggregate: true}
'''

from ansible_collections.nixdeploy.fleet.plugins.module_utils._module import controller_only
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import (
    COPY_SPEC, COPY_VALIDATION)


def main():
    controller_only('nix_copy_closure', COPY_SPEC, **COPY_VALIDATION)


if __name__ == '__main__':
    main()
