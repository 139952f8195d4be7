# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option host_key_unchecked of nix_copy_closure and nix_activate (plugin_utils/host/_host_key_judge.py)."""


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  host_key_unchecked:
    description:
      - "Before it touches the host, the task asks the host's connection whether ssh checks the
        host's key: Ansible's C(host_key_checking) (C(ansible.cfg), E(ANSIBLE_HOST_KEY_CHECKING),
        the host variable C(ansible_host_key_checking)), and what C(ssh -G) says the ssh
        arguments and config files give (C(StrictHostKeyChecking) V(yes), V(ask) or V(accept-new)
        check it; V(no) does not, nor C(known_hosts) files that are all C(/dev/null)). A host
        whose key is not checked fails, naming the fix, and nothing is done on it."
      - "The paramiko connection counts as unchecked with its C(host_key_checking) off or its
        C(host_key_auto_add) on (it takes the key of any host its known_hosts files do not hold).
        Any connection but ansible-core's C(ssh), C(paramiko_ssh) and C(local) (the controller
        itself: no host key) is unknown, and unknown counts as unchecked: the message names it."
      - "Once judged, the task's ssh connection rides only an ssh master of its own judgement in
        this run (its ControlPath comes first in its ssh arguments), never one that an earlier
        play, an earlier run or the user's ssh config opened, maybe with checking off: ssh checks
        the host key when a master logs in, not when a command rides it."
      - "ansible-runner, and so AWX and ansible-navigator, puts
        E(ANSIBLE_HOST_KEY_CHECKING=False) into every job's environment, which beats
        C(ansible.cfg): set C(ansible_host_key_checking: true) in the inventory's group_vars, which
        beats the environment."
      - V(true) deploys such a host all the same, with a warning, and the result says
        RV(host_key_unchecked). Without O(from_role_vars) too, the host variable
        C(nix_host_key_unchecked) sets it.
    type: bool
    default: false
'''
