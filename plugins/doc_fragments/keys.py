# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option keys (nix_keys' key specs) of nix_keys and nix_activate (plugin_utils/keys/_keys.py)."""


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  keys:
    description:
      - The keys, key name to spec, as the host var C(nix_keys) of the deploy role. A colmena
        hive's C(deployment.keys) is mapped to this by the P(nixdeploy.fleet.nix#inventory) inventory
        plugin. They are never shown (the option is C(no_log)), and results, diffs, messages and
        C(-vvv) output carry names, paths, owners and modes only, never a hash of a key (the
        target compares salted digests with a nonce that is never shown).
      - "Content, exactly one of: C(text) (the content; keep it in ansible-vault, a C(!vault)
        value or an encrypted vars file); C(src) (a file on the controller; a relative name is
        searched as M(ansible.builtin.copy) searches its C(src), the role's and the playbook's
        C(files/); a vault-encrypted file is decrypted in memory); C(command) (an argv list run
        on the controller without a shell, whose standard output is the content, as colmena's
        C(keyCommand), for example C([pass, show, db]); it runs in the playbook's folder with no
        standard input, and a non-zero exit fails the host)."
      - "C(name): the file name on the target, default the key's name."
      - "C(dest_dir): the folder on the target, default C(/run/keys) (a tmpfs on NixOS: keys
        vanish on reboot and the next deploy uploads them again). macOS has no C(/run): use for
        example C(/var/run/keys). Never a path in C(/nix/store)."
      - "C(user), C(group): owner and group (names or ids), default C(root)."
      - "C(mode): octal digits as a string, default C(\"0600\"). An integer is the mode itself,
        as Ansible's file modules take it (YAML reads an unquoted C(0600) as 384)."
      - "C(upload_at): C(pre-activation) (default) keys are uploaded before the new system is
        activated, so its services can read them when they start; C(post-activation) keys only
        after a confirmed activation (a host that rolled back does not get them): use it for keys
        whose user or group the new system creates."
      - Every key of this dict counts for the prune (its file is kept), whatever its
        C(upload_at).
      - An unknown field, a missing or doubled content source, or two keys writing one file fail
        the host before anything is uploaded, naming the key.
    type: dict
    default: {}
'''
