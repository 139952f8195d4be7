# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A deploy-rs node as an Ansible host: its ssh options and its profiles.

Its Nix mapper (``source-deploy-rs.nix``) reads ``deploy.nodes`` without
any profile's ``path`` (forcing it would evaluate a system); here a node
becomes the host's fields, its ``sshOpts`` (through the allow-list of
``_inventory_checks``) the port, a user when it has no ``sshUser`` and the
ssh args (``ansible_ssh_common_args``, as every source's), and its
profiles ``nix_profiles`` in deploy order, each with the attribute of its
path for nix_eval.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_checks import (
    check_user, node_label)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_fields import (
    merge_fields, ssh_options, str_list)


def _profiles(attr_base, name, node, generic):
    """deploy-rs profiles in deploy order: profilesOrder, then by name."""
    profiles = node.get('profiles') or {}
    order = [p for p in str_list(node.get('profilesOrder')) if p in profiles]
    order += sorted(p for p in profiles if p not in order)
    result = []
    for pname in order:
        prof = profiles[pname] or {}
        ssh_user = prof.get('sshUser') or node.get('sshUser') or generic.get('sshUser')
        if ssh_user:
            # for playbooks that connect as a profile's ssh user
            check_user(ssh_user, 'profiles.%s.sshUser' % node_label(pname))
        result.append({
            'name': pname,
            'attr': attr_string(attr_base + ['nodes', name, 'profiles', pname, 'path']),
            'user': prof.get('user') or node.get('user') or generic.get('user') or 'root',
            'ssh_user': ssh_user,
            'profile_path': prof.get('profilePath'),
        })
    return result


def deploy_rs_fields(raw, name, node, inv_fields, configured):
    """(fields, extra host vars) of one deploy-rs node; ``inv_fields``: the
    inventory entry of the same name, ``configured``: the platform whose
    configurations hold a system of the node's name, if any."""
    extra = {}
    generic = raw.get('deploy') or {}
    # sshOpts through the allow-list (_inventory_checks.SSH_OPTIONS): -p and
    # -o Port give the port, -l and -o User a user when sshUser does not
    opts_from = 'sshOpts' if node.get('sshOpts') else 'deploy.sshOpts'
    port, opts_user, ssh_args = ssh_options(
        str_list(node.get('sshOpts') or generic.get('sshOpts')), opts_from)
    user, user_from = node.get('sshUser'), 'sshUser'
    if not user:
        user, user_from = generic.get('sshUser'), 'deploy.sshUser'
    if not user:
        user, user_from = opts_user, opts_from
    node_fields = {
        'address': node.get('hostname'),
        'user': user,
        'port': port,
        'tags': [],
        'ssh_args': ssh_args,
        'origin': {'address': 'hostname', 'user': user_from, 'port': opts_from,
                   'ssh_args': opts_from},
    }
    fields = merge_fields(node_fields, inv_fields)
    profiles = _profiles(list(raw['attribute']), name, node, generic)
    extra['nix_profiles'] = profiles
    if inv_fields.get('configuration') or inv_fields.get('platform'):
        pass  # the inventory entry says which system the node deploys
    elif configured:
        fields['platform'] = configured
        fields['configuration'] = name
    else:
        system = [p for p in profiles if p['name'] == 'system']
        fields['nix_attr'] = system[0]['attr'] if system else None
        fields['configuration'] = None
    return fields, extra
