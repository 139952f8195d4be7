# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The third deployer of table 10 (issue 45): benchmarks/handwritten/deploy.yml,
the playbook an Ansible user writes by hand for the script's Nix commands.

``inventory`` is the static inventory such a user keeps (no inventory plugin:
hosts, their addresses and flake attributes, the ssh key and options);
``profile_target`` and ``state_mismatches`` read what a host holds, to check
that every deployer leaves the hosts as the script does."""

import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANDWRITTEN = os.path.join(REPO, 'benchmarks', 'handwritten')
PLAYBOOK = os.path.join(HANDWRITTEN, 'deploy.yml')
# benchmark 14's floor: the status read by hand
STATUS_PLAYBOOK = os.path.join(HANDWRITTEN, 'status.yml')
CONFIG = os.path.join(HANDWRITTEN, 'ansible.cfg')
GROUP = 'fleet'
PROFILE = os.path.join('nix', 'var', 'nix', 'profiles', 'system')


def inventory(hosts, flake_ref, key, known_hosts, python='/usr/bin/python3'):
    """A YAML (JSON) inventory: ``hosts`` is a list of (name, address, ssh
    user, flake attribute), in play order; host key checking stays on (the
    lab's known_hosts, strict), as the script's ssh options."""
    return {GROUP: {
        'hosts': dict((name, {'ansible_host': address, 'ansible_user': user, 'nix_attr': attr})
                      for name, address, user, attr in hosts),
        'vars': {
            'nix_flake': flake_ref,
            'ansible_ssh_private_key_file': key,
            'ansible_ssh_common_args': '-o IdentitiesOnly=yes -o UserKnownHostsFile=%s '
                                       '-o StrictHostKeyChecking=yes' % known_hosts,
            'ansible_host_key_checking': True,
            # NixOS has no /usr/bin/python3: users point this at the Python
            # their systems carry; the lab's hosts see the machine's
            'ansible_python_interpreter': python,
        }}}


def write_inventory(path, hosts, flake_ref, key, known_hosts, python='/usr/bin/python3'):
    with open(path, 'w') as handle:
        json.dump(inventory(hosts, flake_ref, key, known_hosts, python), handle, indent=1)
    return path


def profile_target(host_dir, profile=PROFILE):
    """The store path a host's system profile points to, read in its folder
    (``host_dir`` holds the host's /nix as ``nix/``): the profile's links are
    followed inside the folder (relative, or absolute under /nix); None when
    there is no profile."""
    path = os.path.join(host_dir, profile)
    for _hop in range(40):
        if not os.path.islink(path):
            return _store_path(host_dir, path) if os.path.exists(path) else None
        target = os.readlink(path)
        path = (host_dir + target if os.path.isabs(target)
                else os.path.normpath(os.path.join(os.path.dirname(path), target)))
    return None


def _store_path(host_dir, path):
    """/nix/store/NAME of a path inside the host's folder, or None."""
    store = os.path.join(host_dir, 'nix', 'store', '')
    if not path.startswith(store):
        return None
    name = path[len(store):].split('/')[0]
    return '/nix/store/' + name if name else None


def state_mismatches(expected, active, profiles):
    """Hosts whose active system or system profile is not ``expected``
    ({host: store path}): [(host, what, found)], empty when all match."""
    out = []
    for name in sorted(expected, key=lambda n: (len(n), n)):
        if active.get(name) != expected[name]:
            out.append((name, 'active', active.get(name)))
        if profiles.get(name) != expected[name]:
            out.append((name, 'profile', profiles.get(name)))
    return out
