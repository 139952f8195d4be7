#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation only: the work is done by the action plugin of the same name."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: nix_copy_closure
short_description: Copy a Nix closure to a target, sending only what it lacks
version_added: 0.1.0
description:
  - Runs on the controller (an action plugin). Makes a store path's whole closure valid in the
    target's Nix store over C(ssh-ng://), deriving the store URI and the ssh options from the
    host's own connection variables (C(ansible_host), C(ansible_port), C(ansible_user),
    C(ansible_ssh_private_key_file), C(ansible_ssh_common_args), C(ansible_ssh_extra_args)),
    as M(ansible.posix.synchronize) does for rsync. Host key checking is never turned off.
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
options:
  path:
    description:
      - The store path whose closure to copy, usually RV(nixdeploy.fleet.nix_build#module:out_path).
      - A path inside a store path stands for that whole store path.
    type: str
    required: true
  mode:
    description:
      - V(push) sends the missing paths from the controller (C(nix copy --to ssh-ng://)).
      - V(substitute) is V(push), but the target first fetches what it can from its own
        substituters (C(--substitute-on-destination)), sparing the controller's link.
      - V(cache) makes the target fetch the closure itself from O(caches) (C(nix copy --from))
        over its own link; the controller sends no closure bytes. The target checks the
        caches' signatures against its own C(trusted-public-keys).
    type: str
    choices: [push, substitute, cache]
    default: push
  caches:
    description:
      - Binary cache URLs for O(mode=cache), tried in order until one holds the closure.
      - The controller also reads the closure's size from them when it does not hold the path.
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
  check_mode:
    support: full
    details: Copies nothing; RV(paths_sent) and RV(bytes_sent) say what a real run would send.
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
  - A copy cut off mid-way leaves no half-copied path valid on the target (Nix registers a path
    only after its whole archive arrived); run the task again to send the rest.
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
    mode: cache
    caches:
      - https://cache.example.org

- name: nix-on-droid keeps nix in the app user's profile
  nixdeploy.fleet.nix_copy_closure:
    path: "{{ build.out_path }}"
    remote_nix_dir: /data/data/com.termux.nix/files/home/.nix-profile/bin
'''

RETURN = r'''
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
      it would send). V(0) in O(mode=cache); in O(mode=substitute) without the paths the target
      substituted itself.
  returned: always
  type: int
  sample: 5
bytes_sent:
  description: Uncompressed archive (NAR) bytes of those paths.
  returned: always
  type: int
  sample: 2340960
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
  description: Paths the target fetched from O(caches) (O(mode=cache) only).
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
      V(cache) in O(mode=cache).
  returned: success
  type: str
  sample: trusted
'''
