# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whose ansible_ssh_common_args a host gets: the operator's files win over
the flake's ssh options (issue 78). Real ``ansible-inventory`` and
``ansible`` with this checkout as the collection, real Nix.

The trap: Ansible ranks an inventory plugin's HOST variables above the
operator's ``group_vars/`` files (only ``host_vars/`` files, ``-e`` and
play/task vars rank higher). A flake port, set as the host var
``ansible_port``, beats ``group_vars/all.yml``'s; were the ssh options a host
var too, they would replace the ``group_vars/all.yml`` line that says which
known_hosts file ssh checks. So the plugin sets them as the variable of a
GROUP (``ssh_options_<digest>``), which ranks below ``group_vars/`` files, and
gives them as the host var ``nix_ssh_common_args`` for a ``group_vars/``
line that wants both.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.collection import BIN, ansible_env, unsafe_free

pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')

FLAKE = '''{
  outputs = { self }: {
    inventory = {
      web = { targetHost = "10.0.0.5"; port = 2222; sshOptions = [ "-J" "admin@bastion.example" ]; };
      db = { targetHosts = [ "[fd00::6]" "10.0.0.6" ]; sshOptions = [ "-J" "admin@bastion.example" ]; };
      mine = { targetHost = "10.0.0.7"; sshOptions = [ "-o" "ProxyJump=bastion.example" ]; };
    };
  };
}
'''
JUMP = '-o ProxyJump=admin@bastion.example'


def fleet(tmp_path, group_vars=None, host_vars=None):
    """A flake and an inventory folder beside it, with the operator's files."""
    (tmp_path / 'flake').mkdir(exist_ok=True)
    (tmp_path / 'flake' / 'flake.nix').write_text(FLAKE)
    inventory = tmp_path / 'inventory'
    for folder, files in (('group_vars', group_vars), ('host_vars', host_vars)):
        (inventory / folder).mkdir(parents=True, exist_ok=True)
        for name, text in (files or {}).items():
            (inventory / folder / ('%s.yml' % name)).write_text(text)
    config = inventory / 'fleet.nix.yml'
    config.write_text(json.dumps({'plugin': 'nixdeploy.fleet.nix', 'flake': 'path:%s' % (tmp_path / 'flake'),
                                  'nix_options': {'substituters': ''}}))
    return str(config)


def run(tmp_path, *argv):
    proc = subprocess.run([os.path.join(BIN, argv[0])] + list(argv[1:]), cwd=str(tmp_path),
                          env=ansible_env({'ANSIBLE_INVENTORY_ENABLED': 'nixdeploy.fleet.nix',
                                           'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True'}),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def host_vars(tmp_path, config, host):
    """The host's variables as Ansible ranks them (inventory, group_vars/, host_vars/)."""
    return unsafe_free(json.loads(run(tmp_path, 'ansible-inventory', '-i', config, '--host', host)))


def test_without_files_of_the_operator_the_flakes_options_apply(tmp_path):
    config = fleet(tmp_path)
    web, db = host_vars(tmp_path, config, 'web'), host_vars(tmp_path, config, 'db')
    assert (web['ansible_host'], web['ansible_port'], web['ansible_ssh_common_args']) == \
        ('10.0.0.5', 2222, JUMP)
    assert (db['ansible_host'], db['nix_target_hosts'], db['ansible_ssh_common_args']) == \
        ('fd00::6', ['fd00::6', '10.0.0.6'], JUMP)
    # as AWX's inventory sync stores it: each variable where it was set
    listing = unsafe_free(json.loads(run(tmp_path, 'ansible-inventory', '-i', config, '--list',
                                         '--export')))
    groups = [g for g in listing if g.startswith('ssh_options_')]
    # web and db share their options and their group; mine has its own
    assert len(groups) == 2
    shared = [g for g in groups if sorted(listing[g]['hosts']) == ['db', 'web']]
    assert len(shared) == 1
    assert listing[shared[0]]['vars'] == {'ansible_ssh_common_args': JUMP}
    # the options are the group's variable, no host's
    assert 'ansible_ssh_common_args' not in listing['_meta']['hostvars']['web']
    assert listing['_meta']['hostvars']['web']['nix_ssh_common_args'] == JUMP


def test_the_operators_group_vars_and_host_vars_win(tmp_path):
    known = '-o UserKnownHostsFile=/srv/fleet/known_hosts -o StrictHostKeyChecking=yes'
    config = fleet(tmp_path, group_vars={'all': 'ansible_ssh_common_args: %s\nansible_port: 2200\n' % known},
                   host_vars={'mine': 'ansible_ssh_common_args: -o ProxyJump=my-own-bastion\n'})
    web, db, mine = (host_vars(tmp_path, config, h) for h in ('web', 'db', 'mine'))
    # group_vars/all.yml's ssh args win over the flake's (a group variable)
    assert web['ansible_ssh_common_args'] == known
    assert db['ansible_ssh_common_args'] == known
    # host_vars/ win over both
    assert mine['ansible_ssh_common_args'] == '-o ProxyJump=my-own-bastion'
    # the trap, for a host variable of the plugin: the flake's port (web's
    # ansible_port, a host var) beats group_vars/all.yml's; a host without
    # one gets group_vars/all.yml's
    assert (web['ansible_port'], db['ansible_port']) == (2222, 2200)
    # the flake's options stay there for a line that wants both
    assert web['nix_ssh_common_args'] == JUMP


def test_a_group_vars_line_that_wants_both(tmp_path):
    """group_vars/all.yml names the known_hosts file and keeps each host's jump."""
    line = ('ansible_ssh_common_args: "-o UserKnownHostsFile=/srv/known_hosts '
            '{{ nix_ssh_common_args | default(\'\') }}"\n')
    config = fleet(tmp_path, group_vars={'all': line})
    out = run(tmp_path, 'ansible', '-i', config, 'all', '-m', 'ansible.builtin.debug',
              '-a', 'var=ansible_ssh_common_args')
    got = dict((host, json.loads(body)['ansible_ssh_common_args'])
               for host, body in re.findall(r'^(\w+) \| SUCCESS => (\{.*?^\})', out, re.M | re.S))
    assert got == {'web': '-o UserKnownHostsFile=/srv/known_hosts ' + JUMP,
                   'db': '-o UserKnownHostsFile=/srv/known_hosts ' + JUMP,
                   'mine': '-o UserKnownHostsFile=/srv/known_hosts -o ProxyJump=bastion.example'}, out


def test_a_composed_ipv6_ansible_host_loses_its_brackets(tmp_path):
    """compose is checked as the flake's own fields are, brackets taken off too."""
    config = fleet(tmp_path)
    with open(config) as handle:
        options = json.load(handle)
    options['compose'] = {'ansible_host': "'[2001:db8::9]' if inventory_hostname == 'mine' else ansible_host"}
    with open(config, 'w') as handle:
        json.dump(options, handle)
    assert host_vars(tmp_path, config, 'mine')['ansible_host'] == '2001:db8::9'
    assert host_vars(tmp_path, config, 'web')['ansible_host'] == '10.0.0.5'
