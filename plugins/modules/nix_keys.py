#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation and argument spec: the work is done by the action plugin of the same name."""

DOCUMENTATION = r'''
module: nix_keys
short_description: Put secret files (keys) on a host, outside the Nix store, around its activation
version_added: 1.0.0
description:
  - Uploads secrets (colmena's C(deployment.keys); often ansible-vault values) to files on the host
    with their owner and mode, never through the Nix store, a command line or a log. You normally
    reach it through the role C(nixdeploy.fleet.deploy), which uploads the host variable C(nix_keys)
    before and after the activation (docs/secrets.md).
  - It runs on the controller (an action plugin). Uploads secrets, colmena's C(deployment.keys) in
    Ansible's spelling, to the target over the host's own Ansible connection. The target needs
    only a POSIX shell; no Python.
  - The content is read on the controller (C(text), often an ansible-vault encrypted value;
    a C(src) file, decrypted when vault-encrypted; or the standard output of a
    C(command) argv run without a shell) and sent as the standard input of a short sh script.
    It never appears on a command line (C(ps)), in an environment variable, in a file on the
    controller, in a Nix store, in the task result, a diff or C(-vvv) output.
  - A host whose ssh key is not checked (C(host_key_checking) off, as ansible-runner sets it, or ssh
    options that turn it off) is refused before anything runs on it; the host variable
    C(nix_host_key_unchecked=true) opts out (docs/security.md).
  - "On the target, per key: the content is written in a private C(0700) folder made inside the
    key's own folder, checked against the digest computed on the controller, given its owner
    (C(chown -h)) and mode and renamed over the key (atomic: a reader sees the old or the new key,
    never half of one; nothing is opened by a name another account could swap for a link, and a
    key whose name is a link is refused). A missing folder is created (parents C(0755), the folder
    itself C(0711): others reach their own key by name but cannot list the folder); an existing
    folder is left as it is."
  - "A C(dest_dir) that an account other than root, the connecting one and the key's owner can write,
    or below a folder others can write (a world-writable one only if sticky), is refused, naming
    the folder and its writers."
  - Idempotent. The target hashes its file itself (C(sha256sum), C(shasum), C(openssl) or
    C(busybox)), so no content comes back; only a key whose content, owner, group or mode differs
    is written or fixed. The digest is sha256 of a nonce made afresh for each call (sent on
    standard input only) followed by the content, compared on the controller and never returned,
    so no result or log holds a hash from which a short secret could be guessed.
  - The target opens each key once and hashes the open file, after checking that it is the regular
    file at the key's name (not a link), so an account that swaps the name for a link meanwhile
    cannot make it hash another file.
  - The keys this module wrote are listed (paths only) in a manifest on the target,
    C(/nix/var/nixdeploy/keys) for root and C(${XDG_STATE_HOME:-~/.local/state}/nixdeploy/keys)
    for other users, so O(prune) removes only files it wrote itself.
options:
  upload_at:
    description:
      - Which keys of O(keys) this call uploads, V(pre-activation) or V(post-activation) ones, or
        V(all).
      - M(nixdeploy.fleet.nix_activate) uploads both around the activation itself, given
        O(nixdeploy.fleet.nix_activate#module:keys); this module uploads keys without an
        activation (the deploy role's C(--tags keys)) or for other tools' activations.
    type: str
    choices: [all, pre-activation, post-activation]
    default: all
  prune:
    description:
      - Remove files this module (or M(nixdeploy.fleet.nix_activate)) uploaded earlier that are
        no longer a key of O(keys), by path (a key that moved to another folder is removed from
        the old one). Every key of O(keys) is kept, whatever its C(upload_at) and O(upload_at).
      - Only files listed in the target's manifest are ever removed.
    type: bool
    default: false
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.flow
  - nixdeploy.fleet.keys
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  become:
    description: Runs the target scripts with the task's become, for example to write root-owned
      keys as a user with sudo.
    support: full
  check_mode:
    support: full
    details: Changes nothing; reports which keys would be written or fixed and which files pruned.
      The key contents are still read (a C(command) runs) to compare digests.
  diff_mode:
    support: full
    details: Shows, for each changed key, whether its content changes (C(old) or C(new)), its
      owner and mode before and after; never its content nor a hash of it.
  platform:
    platforms: posix
notes:
  - "Pre-activation keys whose C(user) or C(group) does not exist yet (the new system
    creates it) are written owned by the connecting user, with a warning, as colmena does; the
    next run sets the owner. A post-activation key fails instead."
  - A non-root connection can only write where it may and give keys to itself; set C(user),
    C(group) and C(dest_dir) of its keys accordingly (for example on nix-on-droid and home-manager
    hosts), or use become.
  - The result holds no hash of any key (earlier versions returned each key's sha256, from which a
    short secret can be guessed). It says whether the key changed and what differed.
  - A symbolic link, folder or other non-regular file where a key belongs fails the host before
    anything is written.
  - The connection must accept standard input (C(ssh), C(local)); see C(docs/secrets.md).
seealso:
  - module: nixdeploy.fleet.nix_activate
  - plugin: nixdeploy.fleet.nix
    plugin_type: inventory
author:
  - nixdeploy.fleet contributors (@nixdeploy)
'''

EXAMPLES = r'''
# group_vars/web.yml; the text is encrypted with `ansible-vault encrypt_string`
# nix_keys:
#   db-password:
#     text: !vault |
#       $ANSIBLE_VAULT;1.1;AES256
#       6231...
#     user: postgres
#     group: postgres
#     mode: "0400"
#   tls-key:
#     src: web/tls.key            # files/web/tls.key, may itself be vault-encrypted
#   api-token:
#     command: [pass, show, web/api-token]
#     upload_at: post-activation

- name: Upload every key and prune old ones, without an activation (the deploy role's --tags keys)
  nixdeploy.fleet.nix_keys:
    keys: "{{ nix_keys }}"
    upload_at: all
    prune: true

# Around an activation, nixdeploy.fleet.nix_activate's keys option does both in
# one task; by hand, for an activation by another tool:
- name: Upload the keys needed before activation (and prune old ones)
  nixdeploy.fleet.nix_keys:
    keys: "{{ nix_keys }}"
    upload_at: pre-activation
    prune: true

- name: Upload the keys needed after activation
  nixdeploy.fleet.nix_keys:
    keys: "{{ nix_keys }}"
    upload_at: post-activation

- name: A key for a user without root (home-manager host)
  nixdeploy.fleet.nix_keys:
    keys:
      token:
        src: token
        dest_dir: /home/alice/.keys
        user: alice
        group: users
'''

RETURN = r'''
key_files:
  description:
    - The keys this call handled, by key name, each with the file it is on the target. Never their
      content, nor a hash of it (earlier versions returned C(sha256)).
    - Earlier versions returned this as C(keys), a name Jinja cannot read with dot notation (it
      is a method of every dict).
  returned: always
  type: dict
  sample:
    db-password:
      path: /run/keys/db-password
      changed: true
      action: update
      differs: [content]
      user: postgres
      group: postgres
      mode: '0400'
      upload_at: pre-activation
  contains:
    path:
      description: The file on the target.
      type: str
    changed:
      description: Whether the file was (or, in check mode, would be) written or fixed.
      type: bool
    action:
      description: V(create), V(update) (content), V(fix) (owner, group or mode only) or V(none).
      type: str
    differs:
      description: What differed, from V(absent), V(content), V(user), V(group), V(mode).
      type: list
      elements: str
    user:
      description: The owner asked for.
      type: str
    group:
      description: The group asked for.
      type: str
    mode:
      description: The mode, four octal digits.
      type: str
    upload_at:
      description: When the key is uploaded.
      type: str
    dir_created:
      description: The key's folder, when this call created it.
      type: str
      returned: when the folder was created
    owner_unset:
      description: The owner could not be set yet (pre-activation key of a user that does not
        exist yet).
      type: bool
      returned: when so
removed:
  description: Files removed by O(prune) (in check mode, those that would be).
  returned: always
  type: list
  elements: str
  sample: [/run/keys/old-token]
msg:
  description: On failure, the host, the key and the reason.
  returned: failure
  type: str
  sample: "web1: key 'db' (/run/keys/db): cannot give postgres:postgres to /run/keys/db: chown: invalid user"
phase:
  description: V(keys) on failure, for the deploy pipeline's summary.
  returned: failure
  type: str
rolled_back:
  description: Always V(false) (a key upload never rolls a host back); there for the pipeline.
  returned: failure
  type: bool
connection_lost:
  description: Whether the connection to the host failed.
  returned: failure
  type: bool
'''

from ansible_collections.nixdeploy.fleet.plugins.module_utils._module import controller_only
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import KEYS_SPEC


def main():
    controller_only('nix_keys', KEYS_SPEC)


if __name__ == '__main__':
    main()
