# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory sync as AWX runs it (issue 36), against real `nix eval`, real
`ansible-inventory --list --export` and a real `ansible-playbook`.

AWX's inventory update runs ``ansible-inventory --list --export -i <source>
--output <file> --playbook-dir <dir>`` in the EE (awx/main/tasks/jobs.py,
RunInventoryUpdate.build_args), stores the hosts, groups and variables it
prints (awx/main/management/commands/inventory_import.py: ``json.loads``, the
variables kept as they are) and hands every job an inventory script printing
them (jobs.py ``write_inventory_file``: ``print(%r) % json.dumps(
Inventory.get_script_data(hostvars=True, towervars=True))``). So:

- ordinary strings (addresses, platforms, tags, attributes, what ``compose``
  makes of them) must come out of the export as plain JSON strings: AWX's
  database, UI, API and smart-inventory filters read them;
- a string holding template syntax must come out as ``{"__ansible_unsafe":
  ...}``: ansible-core's script inventory plugin tags a script's output
  TrustedAsTemplate, so a plain string there is templated in the job, and the
  marker is what keeps it data. The control host below shows that.
"""

import json
import os
import subprocess

import pytest

from tests.collection import BIN, ansible_env, run_playbook
from tests.integration.plugins.inventory.test_nix_inventory import NIX, write_config, write_flake

pytestmark = pytest.mark.skipif(NIX is None, reason='needs nix on PATH')

# @F@ becomes the path prefix of the files a templated value would create.
FLAKE = r'''
{
  outputs = { self }: let
    evil = name: "{{ lookup('pipe', 'touch @F@-${name}') }}";
  in {
    inventory = {
      web1 = { targetHost = "10.0.0.1"; targetUser = "deploy"; port = 2222;
               tags = [ "batch-vps" "prod" ]; role = "web"; system = "x86_64-linux";
               rack = "r4"; site = { name = "fra"; rows = [ "a" "b" ]; }; };
      mac1 = { host = "mac1.lan"; platform = "darwin"; system = "aarch64-darwin";
               tags = [ "desk" ]; };
      evil = { targetHost = "127.0.0.1"; tags = [ "ok-tag" (evil "tag") ]; role = evil "role";
               note = evil "note"; site = { name = evil "nested"; };
               # Jinja's header sets other delimiters for the rest of the string
               header = "#jinja2:variable_start_string:'[[', variable_end_string:']]'\n[[ lookup('pipe', 'touch @F@-header') ]]";
               comment = "{# a comment #}"; };
    };
  };
}
'''
PLAIN = "{{ lookup('pipe', 'touch %s-%s') }}"


def export(config, workdir):
    """What AWX's inventory update runs and stores."""
    out = os.path.join(workdir, 'output.json')
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '--list', '--export',
                           '-i', config, '--output', out, '--playbook-dir', os.path.dirname(config)],
                          env=ansible_env({'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True',
                                           'ANSIBLE_INVENTORY_ENABLED': 'nixdeploy.fleet.nix'}),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    with open(out) as handle:
        return json.load(handle)


def awx_script(export_data, path, extra_hosts=None):
    """The inventory script AWX hands a job: what the sync stored, in the
    shape of Inventory.get_script_data(hostvars=True, towervars=True), printed
    by jobs.py's own line."""
    groups = dict((g, body) for g, body in export_data.items() if g not in ('_meta', 'all', 'ungrouped'))
    hostvars = dict((h, dict(v)) for h, v in export_data['_meta']['hostvars'].items())
    hostvars.update(extra_hosts or {})
    grouped = set(h for body in groups.values() for h in body.get('hosts', []))
    data = {'all': {'hosts': sorted(h for h in hostvars if h not in grouped),
                    'children': sorted(groups)}}
    for name, body in groups.items():
        data[name] = dict((k, body[k]) for k in ('hosts', 'children', 'vars') if body.get(k))
    for number, (host, hvars) in enumerate(sorted(hostvars.items()), 1):
        for prefix in ('host', 'tower'):
            hvars.update({'remote_%s_enabled' % prefix: 'true', 'remote_%s_id' % prefix: number})
    data['_meta'] = {'hostvars': hostvars}
    with open(path, 'w') as handle:
        handle.write('#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n' % json.dumps(data))
    os.chmod(path, 0o700)
    return path


def unsafe(value):
    return {'__ansible_unsafe': value}


def test_export_is_plain_json_and_a_job_reading_it_back_templates_nothing(tmp_path):
    prefix = str(tmp_path / 'TEMPLATED')
    flake = write_flake(str(tmp_path / 'flake'), FLAKE.replace('@F@', prefix))
    config = write_config(flake, compose={'deploy_target': "nix_flake ~ '#' ~ nix_attr",
                                          'note_copy': 'nix_node.note | default("")'})
    data = export(config, str(tmp_path))
    hv = data['_meta']['hostvars']

    # ordinary strings: plain JSON, whatever their depth
    web1 = hv['web1']
    assert 'ansible_unsafe' not in json.dumps(web1), web1
    assert web1['ansible_host'] == '10.0.0.1' and web1['ansible_user'] == 'deploy'
    assert web1['ansible_port'] == 2222
    assert web1['nix_platform'] == 'nixos' and web1['nix_system'] == 'x86_64-linux'
    assert web1['nix_tags'] == ['batch-vps', 'prod'] and web1['nix_role'] == 'web'
    assert web1['nix_node']['rack'] == 'r4'
    assert web1['nix_node']['site'] == {'name': 'fra', 'rows': ['a', 'b']}
    assert web1['nix_attr'] == 'nixosConfigurations.web1.config.system.build.toplevel'
    assert web1['nix_flake'] == 'path:' + flake and web1['nix_source'] == 'inventory'
    assert web1['deploy_target'] == 'path:%s#%s' % (flake, web1['nix_attr'])   # compose
    assert hv['mac1']['ansible_host'] == 'mac1.lan' and hv['mac1']['nix_platform'] == 'darwin'
    assert 'ansible_unsafe' not in json.dumps(hv['mac1'])
    assert sorted(data['prod']['hosts']) == ['web1'] and data['batch_vps']['hosts'] == ['web1']
    assert data['aarch64_darwin']['hosts'] == ['mac1']

    # template syntax stays untrusted: the marker, even when compose copies it
    evil = hv['evil']
    assert evil['ansible_host'] == '127.0.0.1' and evil['nix_platform'] == 'nixos'
    assert evil['nix_tags'] == ['ok-tag', unsafe(PLAIN % (prefix, 'tag'))]
    assert evil['nix_role'] == unsafe(PLAIN % (prefix, 'role'))
    assert evil['nix_node']['note'] == unsafe(PLAIN % (prefix, 'note'))
    assert evil['nix_node']['site']['name'] == unsafe(PLAIN % (prefix, 'nested'))
    assert evil['nix_node']['header']['__ansible_unsafe'].startswith('#jinja2:')
    assert evil['nix_node']['comment'] == unsafe('{# a comment #}')
    assert evil['note_copy'] == unsafe(PLAIN % (prefix, 'note'))

    # a job reads AWX's stored copy back through an inventory script; the
    # control host holds what the export would be without the marker
    script = awx_script(data, str(tmp_path / 'hosts'),
                        extra_hosts={'control': {'note': PLAIN % (prefix, 'control')}})
    run = run_playbook('''
- hosts: all
  gather_facts: false
  connection: local
  tasks:
    - name: show
      ansible.builtin.debug:
        msg: "{{ shown | join('|') }}"
      vars:
        shown:
          - "{{ inventory_hostname }}"
          - "{{ ansible_host | default('') }}"
          - "{{ nix_tags | default([]) | join(',') }}"
          - "{{ nix_role | default('') }}"
          - "{{ nix_node.note | default(note | default('')) }}"
          - "{{ nix_node.site.name | default('') }}"
          - "{{ nix_node.header | default('') }}"
    - name: ordinary values drive the play
      ansible.builtin.debug:
        msg: "prod {{ inventory_hostname }} on {{ nix_platform }} at {{ ansible_host }}:{{ ansible_port }} in {{ nix_node.site.rows | join('') }}"
      when: "'prod' in group_names and 'batch-vps' in nix_tags"
''', script, str(tmp_path / 'play'))
    assert run.rc == 0, run
    shown = dict((r['host'], r['result']['msg']) for r in run.results('show'))
    assert shown['web1'] == 'web1|10.0.0.1|batch-vps,prod|web||fra|', shown
    # the control's plain string was templated (touch prints nothing)
    assert shown['control'] == 'control|control|||||', shown
    header = "#jinja2:variable_start_string:'[[', variable_end_string:']]'\n[[ lookup('pipe', 'touch %s-header') ]]" % prefix
    assert shown['evil'] == 'evil|127.0.0.1|ok-tag,%s|%s|%s|%s|%s' % (
        PLAIN % (prefix, 'tag'), PLAIN % (prefix, 'role'), PLAIN % (prefix, 'note'),
        PLAIN % (prefix, 'nested'), header), shown['evil']
    assert [r['result']['msg'] for r in run.results('ordinary values drive the play')
            if r['status'] == 'ok'] == ['prod web1 on nixos at 10.0.0.1:2222 in ab']
    made = sorted(os.path.basename(p) for p in os.listdir(str(tmp_path)) if p.startswith('TEMPLATED'))
    # the control's plain string was templated: the marker is what keeps data data
    assert made == ['TEMPLATED-control'], made
