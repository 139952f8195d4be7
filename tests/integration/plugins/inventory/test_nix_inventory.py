# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nixdeploy.fleet.nix against real `nix eval` and real ansible-inventory.

The flakes here are pure data (no nixpkgs, no derivations); every system and
deploy-rs profile path is a `throw`, so a test fails if the plugin ever
forces one.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import textwrap

import pytest

from tests.collection import BIN, ansible_env, run_playbook, unsafe_free

NIX = shutil.which('nix')
pytestmark = pytest.mark.skipif(NIX is None, reason='needs nix on PATH')

# Same hosts in four shapes. web1 and db1 are NixOS, mac1 darwin.
FLAKE = r'''
{
  outputs = { self }: removeAttrs {
    inventory = {
      web1 = { targetHost = "10.0.0.1"; targetUser = "deploy"; port = 2222;
               tags = [ "batch-vps" "prod" ]; role = "web"; system = "x86_64-linux"; };
      db1 = { ips = [ "10.0.0.2" "10.0.0.3" ]; user = "root"; tags = [ "prod" ];
              role = "db"; system = "x86_64-linux"; };
      mac1 = { host = "10.0.0.4"; sshUser = "admin"; platform = "darwin";
               system = "aarch64-darwin"; tags = [ "desk" ]; };
    };
    colmena = {
      meta = { nixpkgs = throw "nixpkgs forced"; };
      defaults = { name, ... }: { deployment.tags = [ "prod" ]; };
      web1 = { name, nodes, pkgs, lib, ... }: {
        deployment = { targetHost = "10.0.0.1"; targetUser = "deploy"; targetPort = 2222;
                       tags = [ "batch-vps" ]; keys.secret.text = "never read"; };
        boot.kernelPackages = pkgs.linuxPackages;
      };
      db1 = [ { deployment.targetHost = "10.0.0.2"; } { deployment.targetUser = "root"; } ];
    };
    deploy = {
      sshUser = "root";
      nodes = {
        web1 = { hostname = "10.0.0.1"; sshUser = "deploy"; sshOpts = [ "-p" "2222" ];
                 profiles.system = { user = "root"; path = throw "profile path forced"; }; };
        db1 = { hostname = "10.0.0.2";
                profiles.system = { user = "root"; path = throw "profile path forced"; }; };
        mac1 = { hostname = "10.0.0.4"; sshUser = "admin";
                 profilesOrder = [ "system" "home" ];
                 profiles.system = { path = throw "profile path forced"; };
                 profiles.home = { user = "admin"; path = throw "profile path forced"; }; };
      };
    };
    nixosConfigurations = { web1 = throw "system forced"; db1 = throw "system forced"; };
    darwinConfigurations.mac1 = throw "system forced";
    packages.x86_64-linux.default = throw "package forced";
  } [ @DROP@ ];
}
'''


def said(text, output):
    """``text`` is in ``output`` however Ansible wrapped its lines."""
    return re.sub(r'\s+', '', text) in re.sub(r'\s+', '', output)


def write_flake(path, text=FLAKE, drop=()):
    os.makedirs(path, exist_ok=True)
    text = text.replace('@DROP@', ' '.join('"%s"' % name for name in drop))
    with open(os.path.join(path, 'flake.nix'), 'w') as handle:
        handle.write(textwrap.dedent(text))
    return path


def write_config(path, name='fleet.nix.yml', **options):
    config = {'plugin': 'nixdeploy.fleet.nix', 'nix_options': {'substituters': ''}}
    config.update(options)
    target = os.path.join(path, name)
    with open(target, 'w') as handle:
        json.dump(config, handle)  # JSON is YAML
    return target


def inventory(config, *args, env=None, check=True):
    extra = {'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True',
             'ANSIBLE_INVENTORY_ENABLED': 'nixdeploy.fleet.nix'}
    extra.update(env or {})
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', config] + list(args or ['--list']),
                          env=ansible_env(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def listing(config, **kwargs):
    proc = inventory(config, '--list', **kwargs)
    return unsafe_free(json.loads(proc.stdout)), proc.stderr


def groups_of(data):
    """{group: sorted hosts} without all/ungrouped."""
    result = {}
    for group, body in data.items():
        if group in ('_meta', 'all', 'ungrouped'):
            continue
        result[group] = sorted(body.get('hosts', []))
    return result


CONNECTION = ('ansible_host', 'ansible_user', 'ansible_port')


def connection(data):
    return dict((host, dict((k, hv.get(k)) for k in CONNECTION + ('nix_attr', 'nix_platform')))
                for host, hv in data['_meta']['hostvars'].items())


@pytest.fixture(scope='module')
def flake(tmp_path_factory):
    return write_flake(str(tmp_path_factory.mktemp('flake')))


def test_inventory_source(flake):
    data = listing(write_config(flake, source='inventory'))[0]
    hv = data['_meta']['hostvars']
    assert sorted(hv) == ['db1', 'mac1', 'web1']
    assert hv['web1']['ansible_host'] == '10.0.0.1'
    assert hv['web1']['ansible_port'] == 2222
    assert hv['web1']['nix_flake'] == 'path:' + flake
    assert hv['web1']['nix_attr'] == 'nixosConfigurations.web1.config.system.build.toplevel'
    assert hv['db1']['ansible_host'] == '10.0.0.2'  # first of ips
    assert hv['mac1']['ansible_user'] == 'admin'
    assert hv['mac1']['nix_attr'] == 'darwinConfigurations.mac1.system'
    assert groups_of(data) == {
        'nixos': ['db1', 'web1'], 'darwin': ['mac1'],
        'x86_64_linux': ['db1', 'web1'], 'aarch64_darwin': ['mac1'],
        'role_web': ['web1'], 'role_db': ['db1'],
        'batch_vps': ['web1'], 'prod': ['db1', 'web1'], 'desk': ['mac1'],
    }


def test_three_shapes_same_hosts_groups_and_connection(flake):
    """colmena and deploy-rs give what the pure data gives (colmena: NixOS only)."""
    pure = listing(write_config(flake, 'pure.nix.yml', source='inventory'))[0]
    hive = listing(write_config(flake, 'hive.nix.yml', source='colmena'))[0]
    deploy = listing(write_config(flake, 'deploy.nix.yml', source='deploy-rs'))[0]
    assert connection(deploy) == connection(pure)
    assert groups_of(deploy) == groups_of(pure)
    nixos_only = dict((h, v) for h, v in connection(pure).items() if v['nix_platform'] == 'nixos')
    assert connection(hive) == nixos_only
    nixos_groups = dict((g, [h for h in hosts if h in nixos_only])
                        for g, hosts in groups_of(pure).items())
    assert groups_of(hive) == dict((g, h) for g, h in nixos_groups.items() if h)
    profiles = deploy['_meta']['hostvars']['mac1']['nix_profiles']
    assert [p['name'] for p in profiles] == ['system', 'home']
    assert profiles[1]['attr'] == 'deploy.nodes.mac1.profiles.home.path'
    # colmena keys (secrets) go to nix_keys, never into nix_node
    assert 'keys' not in json.dumps(hive['_meta']['hostvars']['web1']['nix_node'])


@pytest.mark.parametrize('keep, source', [
    (['inventory', 'colmena', 'deploy', 'nixosConfigurations'], 'inventory'),
    (['colmena', 'deploy', 'nixosConfigurations'], 'colmena'),
    (['deploy', 'nixosConfigurations'], 'deploy-rs'),
])
def test_auto_picks_what_the_flake_has(tmp_path, keep, source):
    outputs = ['inventory', 'colmena', 'deploy', 'nixosConfigurations', 'darwinConfigurations']
    path = write_flake(str(tmp_path), drop=[o for o in outputs if o not in keep])
    data, stderr = listing(write_config(path))
    hv = data['_meta']['hostvars']
    assert set(h['nix_source'] for h in hv.values()) == {source}
    assert 'web1' in hv
    # another source than the inventory data is said, with how to mean it
    looked = {'colmena': 'colmena hive (colmenaHive, colmena)',
              'deploy-rs': 'deploy-rs nodes (deploy.nodes)'}.get(source)
    fallback = 'the flake has no attribute inventory among its outputs: its hosts come from its'
    if looked:
        assert said('%s %s, without what the inventory data gives (tags, addresses, users); if '
                    'that is meant, set source: %s in the inventory file' % (fallback, looked, source),
                    stderr), stderr
        assert said('if not, the attribute inventory must sit inside outputs', stderr), stderr
        # named in the file: meant, nothing said
        stderr = listing(write_config(path, 'named.nix.yml', source=source))[1]
    assert not said(fallback, stderr), stderr


def test_configuration_names_only_when_the_file_asks(tmp_path):
    """Configurations alone: auto fails the parse, naming the attribute and
    where it sits; ``source: configurations`` makes their names the hosts."""
    path = write_flake(str(tmp_path), drop=['inventory', 'colmena', 'deploy'])
    proc = inventory(write_config(path), check=False)
    assert proc.returncode != 0
    assert said('the flake has no attribute inventory among its outputs', proc.stderr), proc.stderr
    assert said('must sit inside outputs, as in outputs = { self, ... }: { inventory =',
                proc.stderr), proc.stderr
    hv = listing(write_config(path, 'names.nix.yml', source='configurations'))[0]['_meta']['hostvars']
    assert sorted(hv) == ['db1', 'mac1', 'web1']
    assert set(h['nix_source'] for h in hv.values()) == {'configurations'}


def test_auto_runs_one_nix_evaluation(tmp_path, flake):
    counter, wrapper = counting_nix(str(tmp_path))
    listing(write_config(flake, 'one.nix.yml', nix_bin=wrapper))
    # one evaluation, and `nix --version` (which picks the outputs' form) once
    assert calls(counter) == 2
    assert calls(counter, 'eval') == 1


def test_unsafe_strings_stay_data(tmp_path):
    evil = "{{ lookup('pipe', 'id') }}"
    path = write_flake(str(tmp_path / 'flake'), '''
    {
      outputs = { self }: {
        inventory.evil = { targetHost = "127.0.0.1"; tags = [ "%s" ]; role = "%s"; note = "%s"; };
        inventory."%s" = { targetHost = "127.0.0.1"; };
      };
    }
    ''' % ((evil.replace('"', '\\"'),) * 4))
    config = write_config(path)
    data = listing(config)[0]
    hv = data['_meta']['hostvars']['evil']
    assert hv['nix_tags'] == [evil]
    assert hv['nix_role'] == evil
    assert hv['nix_node']['note'] == evil
    assert 'uid=' not in json.dumps(data)
    run = run_playbook('''
- hosts: all
  gather_facts: false
  tasks:
    - name: print
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }}|{{ nix_tags }}|{{ nix_role }}|{{ nix_node.note | default('') }}"
      delegate_to: localhost
''', config, str(tmp_path / 'play'), env={'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True'})
    assert run.rc == 0, run
    assert '"evil|[\\"%s\\"]|%s|%s"' % (evil, evil, evil) in run.stdout, run.stdout
    assert '"%s|[]||"' % evil in run.stdout, run.stdout
    assert 'uid=' not in run.stdout


def test_nix_error_is_a_parser_error_with_nix_message(tmp_path):
    path = write_flake(str(tmp_path), '''
    { outputs = { self }: { inventory = { web1 = throw "inventory-is-broken-here"; }; }; }
    ''')
    proc = inventory(write_config(path), check=False)
    assert proc.returncode != 0
    assert said('inventory-is-broken-here', proc.stderr)
    assert said('nix eval of the inventory', proc.stderr)


def test_missing_source_names_it(tmp_path):
    path = write_flake(str(tmp_path), '{ outputs = { self }: { inventory.a.host = "x"; }; }')
    proc = inventory(write_config(path, source='deploy-rs'), check=False)
    assert proc.returncode != 0
    assert said('the flake has no deploy-rs nodes (deploy.nodes)', proc.stderr)


# its skip warning and strict failure: test_nix_inventory_trust.py on the current stack
@pytest.mark.here_only
def test_node_without_address_warns_or_fails_under_strict(tmp_path):
    path = write_flake(str(tmp_path), '''
    { outputs = { self }: { inventory = { ok.host = "10.0.0.1"; lost.tags = [ "x" ]; }; }; }
    ''')
    data, err = listing(write_config(path))
    assert sorted(data['_meta']['hostvars']) == ['ok']
    assert said('skipped inventory node lost', err)
    proc = inventory(write_config(path, 'strict.nix.yml', strict=True), check=False)
    assert proc.returncode != 0
    assert said('inventory node lost: it has no address', proc.stderr)


def test_constructed_options_and_graph(flake):
    config = write_config(flake, 'constructed.nix.yml', source='inventory',
                          compose={'deploy_target': "nix_flake ~ '#' ~ nix_attr"},
                          groups={'canary': "'batch-vps' in nix_tags"},
                          keyed_groups=[{'key': 'nix_platform', 'prefix': 'platform'}])
    data = listing(config)[0]
    assert data['canary']['hosts'] == ['web1']
    assert sorted(data['platform_darwin']['hosts']) == ['mac1']
    assert data['_meta']['hostvars']['web1']['deploy_target'] == \
        'path:%s#nixosConfigurations.web1.config.system.build.toplevel' % flake
    graph = inventory(config, '--graph').stdout
    assert '@batch_vps:' in graph and '|--web1' in graph
    # -l vps:&prod, as colmena's --on @tag selects
    proc = subprocess.run([os.path.join(BIN, 'ansible'), '-i', config, 'prod:!batch_vps',
                           '--list-hosts'], env=ansible_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'db1' in proc.stdout and 'web1' not in proc.stdout


def counting_nix(path):
    counter = os.path.join(path, 'nix-calls')
    wrapper = os.path.join(path, 'nix-counting')
    with open(wrapper, 'w') as handle:
        handle.write('#!/bin/sh\necho "$1" >> %s\nexec %s "$@"\n' % (counter, NIX))
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IEXEC)
    return counter, wrapper


def calls(counter, subcommand=None):
    """How many nix processes ran (with ``subcommand`` only, if given)."""
    if not os.path.exists(counter):
        return 0
    with open(counter) as handle:
        return len([ln for ln in handle if subcommand in (None, ln.strip())])


def test_cached_second_parse_runs_no_nix(tmp_path, flake):
    counter, wrapper = counting_nix(str(tmp_path))
    config = write_config(flake, 'cached.nix.yml', source='inventory', nix_bin=wrapper, cache=True,
                          cache_plugin='ansible.builtin.jsonfile',
                          cache_connection=str(tmp_path / 'cache'), cache_timeout=3600)
    first = listing(config)[0]
    assert calls(counter) == 2 and calls(counter, 'eval') == 1
    second = listing(config)[0]
    assert calls(counter) == 2, 'the cached parse ran nix'
    assert second == first
    # --flush-cache evaluates again (ansible-inventory 2.18 lacks the flag)
    run = run_playbook('- hosts: all\n  gather_facts: false\n  tasks: []\n', config,
                       str(tmp_path / 'play'), args=['--flush-cache'])
    assert run.rc == 0, run
    assert calls(counter, 'eval') == 2


# the lab's own flake; the three sources: test_three_shapes_same_hosts_groups_and_connection
@pytest.mark.here_only
def test_lab_fixture_flake_three_shapes_agree(tmp_path):
    """The lab's fixture flake: inventory, colmena and deploy outputs agree."""
    from tests.lab.fixtures import FleetFlake
    hosts = {
        'vps1': {'address': '10.77.0.11', 'tags': ['batch-vps', 'eu'], 'role': 'web',
                 'configuration': 'vps'},
        'vps2': {'address': '10.77.0.12', 'tags': ['batch-vps', 'hk'], 'role': 'web',
                 'configuration': 'vps', 'user': 'deploy', 'port': 2222},
        'db1': {'address': '10.77.0.13', 'tags': ['prod']},
        'mac1': {'address': '10.77.0.14', 'platform': 'darwin', 'tags': ['desk']},
        'phone': {'address': '10.77.0.15', 'platform': 'nix-on-droid'},
        'alice': {'address': '10.77.0.16', 'platform': 'home-manager', 'tags': ['desk']},
    }
    fleet = FleetFlake.write(str(tmp_path / 'flake'), hosts)
    path = fleet.path
    pure = listing(write_config(path, 'pure.nix.yml', source='inventory'))[0]
    hive = listing(write_config(path, 'hive.nix.yml', source='colmena'))[0]
    deploy = listing(write_config(path, 'deploy.nix.yml', source='deploy-rs'))[0]
    assert sorted(pure['_meta']['hostvars']) == sorted(hosts)
    for host, hv in pure['_meta']['hostvars'].items():
        assert hv['nix_attr'] == fleet.attr(host)
        assert hv['ansible_host'] == hosts[host]['address']
    assert connection(deploy) == connection(pure)
    assert groups_of(deploy) == groups_of(pure)
    nixos = dict((h, v) for h, v in connection(pure).items() if v['nix_platform'] == 'nixos')
    assert connection(hive) == nixos
    expected = dict((g, [h for h in members if h in nixos]) for g, members in groups_of(pure).items())
    assert groups_of(hive) == dict((g, m) for g, m in expected.items() if m)
    assert groups_of(pure)['batch_vps'] == ['vps1', 'vps2']
    assert groups_of(pure)['role_web'] == ['vps1', 'vps2']
    assert groups_of(pure)['nix_on_droid'] == ['phone']


def test_auto_on_a_flake_without_inventory_data(tmp_path):
    path = write_flake(str(tmp_path), '{ outputs = { self }: { packages = { }; }; }')
    proc = inventory(write_config(path), check=False)
    assert proc.returncode != 0
    assert said('the flake has no attribute inventory among its outputs (nor colmenaHive, colmena '
                'or deploy.nodes)', proc.stderr), proc.stderr


def test_colmena_modules_and_made_hive(tmp_path):
    """Module functions get stubs (lib from meta.nixpkgs), priorities are honoured,
    a node that needs `config` is skipped by name, and a makeHive output is read
    from deploymentConfig without touching keys or toplevel."""
    raw_hive = write_flake(str(tmp_path / 'raw'), r'''
    {
      outputs = { self }: let
        lib = { mkDefault = content: { _type = "override"; priority = 1000; inherit content; };
                mkIf = condition: content: { _type = "if"; inherit condition content; }; };
      in {
        colmena = {
          meta.nixpkgs = { inherit lib; };
          meta.specialArgs.site = "eu";
          defaults = { lib, name, ... }: {
            deployment.targetUser = lib.mkDefault "fallback";
            deployment.tags = [ "fleet" ];
          };
          web1 = { lib, site, ... }: {
            deployment.targetUser = "ops";
            deployment.targetHost = "${site}-web1.example";
            deployment.tags = lib.mkIf (site == "eu") [ site ];
          };
          web2 = { name, ... }: { deployment.targetHost = "${name}.example"; };
          needsconfig = { config, ... }: { deployment.targetHost = config.networking.fqdn; };
        };
      };
    }
    ''')
    data, err = listing(write_config(raw_hive, source='colmena'))
    hv = data['_meta']['hostvars']
    assert sorted(hv) == ['web1', 'web2']
    assert hv['web1']['ansible_user'] == 'ops'
    assert hv['web1']['ansible_host'] == 'eu-web1.example'
    assert hv['web1']['nix_tags'] == ['fleet', 'eu']
    assert hv['web2']['ansible_user'] == 'fallback'
    assert said('skipped colmena node needsconfig', err)

    made = write_flake(str(tmp_path / 'made'), r'''
    {
      outputs = { self }: {
        colmenaHive = {
          __schema = "v0";
          deploymentConfig.n1 = { targetHost = "10.0.0.5"; targetPort = null; targetUser = "root";
                                  tags = [ "made" ]; keys = throw "keys forced"; };
          toplevel.n1 = throw "system forced";
        };
      };
    }
    ''')
    data = listing(write_config(made))[0]
    n1 = data['_meta']['hostvars']['n1']
    assert n1['nix_source'] == 'colmena'
    assert n1['ansible_host'] == '10.0.0.5'
    assert n1['nix_attr'] == 'colmenaHive.toplevel.n1'
    assert data['made']['hosts'] == ['n1']
