# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's Nix program (plugin_utils/inventory/inventory.nix and each
source's source-<name>.nix) evaluated by real Nix against small flakes, one
or more per source of the table (_inventory_sources.SOURCES), then mapped
by _inventory_hosts: the hosts, variables and groups the plugin yields, the
refusals (a missing source, bad data: an error naming the source or the
node), and the user's values reaching Nix as data only.

Every system, profile path and made hive's keys below is a ``throw``: a
test fails if the program ever forces one.
"""

import fnmatch
import functools
import os
import shutil
import sys
import textwrap

import pytest
import yaml

from tests.collection import REPO, collections_path
from tests.unit.plugins.plugin_utils.inventory.test_inventory import raw as raw_shape

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (  # noqa: E402
    _inventory, _inventory_config, _inventory_error, _inventory_hosts, _inventory_sources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixCommand, NixError, NixOptions)

InventoryError = _inventory_error.InventoryError
pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')


# Every source in one flake; web1 and db1 are NixOS, mac1 darwin.
FLEET = r'''
{
  outputs = { self }: {
    inventory = {
      web1 = { targetHost = "10.0.0.1"; targetUser = "deploy"; port = 2222;
               tags = [ "batch-vps" "prod" ]; role = "web"; system = "x86_64-linux";
               extra = { rack = 3; boot = ./flake.nix; f = x: x; };
               drv = derivation { name = "x"; builder = "/bin/sh"; system = "x"; }; };
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
  };
}
'''

# A raw hive of modules: stubs for their arguments, lib from meta.nixpkgs,
# priorities, mkIf, specialArgs; keys in colmena's spelling; one node that
# needs `config`, one whose keys throw.
RAW_HIVE = r'''
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
        deployment.keys.db = { keyCommand = [ "pass" "show" "db" ]; user = "postgres";
          group = "postgres"; permissions = "0400"; destDir = "/var/keys";
          uploadAt = "post-activation"; name = "db.pass"; };
        deployment.keys.tls = { keyFile = "/home/ops/tls.key"; };
        deployment.keys.inline = { text = "in the store"; };
      };
      web2 = { name, ... }: { deployment.targetHost = "${name}.example";
                              deployment.keys = throw "keys need pkgs"; };
      needsconfig = { config, ... }: { deployment.targetHost = config.networking.fqdn; };
    };
    inventory.web2 = { tags = [ "from-inventory" ]; role = "edge"; };
    nixosConfigurations.web2 = throw "system forced";
  };
}
'''

# colmena's makeHive output: read from deploymentConfig, keys and toplevel
# never forced.
MADE_HIVE = r'''
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
'''

# Configurations only, in every platform's output (a name in two: the first's).
CONFIGURATIONS = r'''
{
  outputs = { self }: {
    nixosConfigurations = { web1 = throw "s"; both = throw "s"; };
    darwinConfigurations = { mac = throw "s"; both = throw "s"; };
    homeConfigurations."alice@laptop" = throw "s";
    inventory.web1 = { host = "10.0.0.1"; tags = [ "t" ]; };
    colmenaHive = null;
  };
}
'''

# No inventory data, no hive (a null colmenaHive, a deploy without nodes):
# configurations, or deploy-rs nodes first where a flake has them.
SYSTEMS = ('{ outputs = { self }: { nixosConfigurations.a = 1; colmenaHive = null; '
           'deploy = { }; }; }')
DEPLOY_ONLY = ('{ outputs = { self }: { nixosConfigurations.a = 1; colmenaHive = null; '
               'deploy.nodes.a.hostname = "10.0.0.9"; }; }')

# The inventory written outside outputs: in a let, never an output.
OUTSIDE = r'''
{
  outputs = { self }:
    let inventory = { web1 = { targetHost = "10.0.0.1"; tags = [ "vps" ]; }; };
    in { nixosConfigurations = { web1 = throw "system forced"; web2 = throw "system forced"; }; };
}
'''

# The inventory written beside outputs, at the top of flake.nix.
BESIDE = r'''
{
  inventory = { web1 = { targetHost = "10.0.0.1"; }; };
  outputs = { self }: { nixosConfigurations.web1 = throw "system forced"; };
}
'''

THROWN = '{ outputs = { self }: { inventory.web1 = throw "web1-is-broken"; }; }'

# Names a Nix expression would read as code, at a custom attribute path.
WEIRD = u'a"b${builtins.abort "spliced"}\\c.d h\u00f4tes'
ATTRIBUTES = r'''
{
  outputs = { self }: {
    fleet."a\"b\${builtins.abort \"spliced\"}\\c.d hôtes" = {
      h1.host = "10.0.0.1";
    };
    ops.nodes.n.hostname = "10.0.0.3";
    hive.n = { deployment.targetHost = "10.0.0.4"; };
    inventory.n = { tags = [ "gap" ]; };
    packages = { };
  };
}
'''

# Bad data in each source's shape, beside a good node.
BAD = r'''
{
  outputs = { self }: {
    inventory = {
      ok.host = "10.0.0.1";
      evil.host = "-oProxyCommand=touch /tmp/x";
      port.host = "10.0.0.2"; port.port = "22 -oX";
      lost.tags = [ "x" ];
    };
    colmena = {
      ok.deployment.targetHost = "10.0.0.1";
      evil.deployment = { };
      user.deployment = { targetHost = "10.0.0.3"; targetUser = "-l"; };
    };
    deploy.nodes = {
      ok.hostname = "10.0.0.1";
      evil = { hostname = "10.0.0.2"; sshOpts = [ "-o" "ProxyJump=b;touch /tmp/x" ]; };
      jumpuser = { hostname = "10.0.0.3"; sshOpts = [ "-J" "$(touch /tmp/x)@b" ]; };
    };
  };
}
'''


@pytest.fixture(scope='module')
def flakes(tmp_path_factory):
    """{name: flake reference} of the flakes above."""
    made = {}
    for name, text in (('fleet', FLEET), ('raw-hive', RAW_HIVE), ('made-hive', MADE_HIVE),
                       ('configurations', CONFIGURATIONS), ('attributes', ATTRIBUTES),
                       ('bad', BAD), ('systems', SYSTEMS), ('deploy-only', DEPLOY_ONLY),
                       ('empty', '{ outputs = { self }: { packages = { }; }; }'),
                       ('thrown', THROWN), ('outside', OUTSIDE),
                       ('beside', BESIDE)):
        folder = tmp_path_factory.mktemp(name)
        (folder / 'flake.nix').write_text(textwrap.dedent(text), encoding='utf-8')
        made[name] = 'path:%s' % folder
    return made


@functools.lru_cache(maxsize=None)
def evaluated(flake, source='auto', attribute=None):
    """The program's JSON for one parse, as the plugin evaluates it."""
    runner = NixCommand(NixOptions(options={'substituters': ''}))
    if isinstance(attribute, tuple):
        attribute = list(attribute)
    return runner.json('eval', _inventory.eval_args(runner.outputs(flake), source, attribute),
                       'nix eval of the inventory', flake_command=True)


def nix_error(flake, source='auto', attribute=None):
    """Nix's message (as the plugin shows it) for a parse that fails."""
    with pytest.raises(NixError) as err:
        evaluated(flake, source, attribute)
    return _inventory_config.nix_error(err.value.nix_message())


def hosts(flake, source='auto', attribute=None, **options):
    result = _inventory_hosts.build_inventory(evaluated(flake, source, attribute), flake, **options)
    return dict((h.name, h) for h in result.hosts), result


def connection(found):
    return dict((name, (h.vars.get('ansible_host'), h.vars.get('ansible_user'),
                        h.vars.get('ansible_port'), h.vars['nix_attr'], h.vars['nix_platform']))
                for name, h in found.items())


# ---- source: inventory ----------------------------------------------------------

def test_inventory_data(flakes):
    got, result = hosts(flakes['fleet'], 'inventory')
    assert sorted(got) == ['db1', 'mac1', 'web1'] and not result.messages()
    web1 = got['web1'].vars
    assert (web1['ansible_host'], web1['ansible_user'], web1['ansible_port']) == \
        ('10.0.0.1', 'deploy', 2222)
    assert web1['nix_attr'] == 'nixosConfigurations.web1.config.system.build.toplevel'
    assert web1['nix_source'] == 'inventory' and web1['nix_flake'] == flakes['fleet']
    assert got['web1'].groups == ['nixos', 'x86_64_linux', 'role_web', 'batch_vps', 'prod']
    # functions and derivations are no data; a path is its text
    assert web1['nix_node']['extra']['f'] is None and web1['nix_node']['drv'] is None
    assert web1['nix_node']['extra']['rack'] == 3
    assert web1['nix_node']['extra']['boot'].endswith('/flake.nix')
    assert got['db1'].vars['ansible_host'] == '10.0.0.2'  # the first of ips
    assert got['mac1'].vars['nix_attr'] == 'darwinConfigurations.mac1.system'
    assert got['mac1'].groups == ['darwin', 'aarch64_darwin', 'desk']


# ---- source: colmena ------------------------------------------------------------

def test_colmena_hive_gives_what_the_data_gives(flakes):
    """The fleet's hive: modules called with stubs (pkgs only where a node
    needs it, meta.nixpkgs never forced), defaults merged, the NixOS hosts
    of the inventory data with their connection and groups."""
    hive, result = hosts(flakes['fleet'], 'colmena')
    pure = hosts(flakes['fleet'], 'inventory')[0]
    assert connection(hive) == dict((n, c) for n, c in connection(pure).items() if c[4] == 'nixos')
    assert hive['web1'].groups == ['nixos', 'x86_64_linux', 'role_web', 'prod', 'batch_vps']
    # keys are secrets: nix_keys, never nix_node
    assert hive['web1'].vars['nix_keys'] == {'secret': {'text': 'never read'}}
    assert hive['web1'].vars['nix_node'] == {'deployment': {
        'targetHost': '10.0.0.1', 'targetPort': 2222, 'targetUser': 'deploy',
        'tags': ['prod', 'batch-vps']}}
    assert [m for m in result.messages() if 'key secret: its text is in the Nix store' in m]


def test_colmena_modules_priorities_and_keys(flakes):
    got, result = hosts(flakes['raw-hive'], 'colmena', hive_keys=['text', 'keyFile', 'keyCommand'])
    assert sorted(got) == ['web1', 'web2']
    web1, web2 = got['web1'].vars, got['web2'].vars
    assert (web1['ansible_host'], web1['ansible_user']) == ('eu-web1.example', 'ops')
    assert web1['nix_tags'] == ['fleet', 'eu']
    assert (web2['ansible_host'], web2['ansible_user']) == ('web2.example', 'fallback')
    # every key field, in colmena's spelling, reaches nix_keys in the collection's
    assert web1['nix_keys'] == {
        'db': {'command': ['pass', 'show', 'db'], 'user': 'postgres', 'group': 'postgres',
               'mode': '0400', 'dest_dir': '/var/keys', 'upload_at': 'post-activation',
               'name': 'db.pass'},
        'tls': {'src': '/home/ops/tls.key'},
        'inline': {'text': 'in the store'}}
    # the inventory entry of its name fills the gaps (the role; the node's
    # own tags win); its system is found by its name
    assert got['web2'].groups == ['nixos', 'role_edge', 'fleet']
    assert web2['nix_attr'] == 'nixosConfigurations.web2.config.system.build.toplevel'
    assert 'nix_keys' not in web2
    messages = result.messages()
    assert messages[0].startswith('skipped colmena node needsconfig: its colmena deployment '
                                  'options need more than data')
    assert 'colmena node web2: its deployment.keys do not evaluate as data' in '\n'.join(messages)


def test_colmena_made_hive(flakes):
    """auto finds colmenaHive; its deploymentConfig is read, its keys and
    toplevel are not; the host deploys the hive's own toplevel."""
    got, result = hosts(flakes['made-hive'])
    n1 = got['n1'].vars
    assert n1['nix_source'] == 'colmena'
    assert (n1['ansible_host'], n1['ansible_user'], n1.get('ansible_port')) == \
        ('10.0.0.5', 'root', None)
    assert n1['nix_attr'] == 'colmenaHive.toplevel.n1'
    assert got['n1'].groups == ['nixos', 'made']
    assert 'nix_keys' not in n1 and 'do not evaluate as data' in '\n'.join(result.messages())


# ---- source: deploy-rs ----------------------------------------------------------

def test_deploy_rs_nodes_and_profiles(flakes):
    deploy = hosts(flakes['fleet'], 'deploy-rs')[0]
    pure = hosts(flakes['fleet'], 'inventory')[0]
    assert connection(deploy) == connection(pure)
    assert dict((n, h.groups) for n, h in deploy.items()) == \
        dict((n, h.groups) for n, h in pure.items())
    mac1 = deploy['mac1'].vars
    assert [p['name'] for p in mac1['nix_profiles']] == ['system', 'home']
    assert mac1['nix_profiles'][1] == {
        'name': 'home', 'attr': 'deploy.nodes.mac1.profiles.home.path', 'user': 'admin',
        'ssh_user': 'admin', 'profile_path': None}
    # the generic sshUser; no profile's path in nix_node
    assert deploy['db1'].vars['ansible_user'] == 'root'
    assert deploy['db1'].vars['nix_node']['profiles'] == {'system': {'user': 'root'}}


# ---- source: configurations -----------------------------------------------------

def test_configurations_one_host_per_name(flakes):
    got, _result = hosts(flakes['configurations'], 'configurations')
    # each output's names sorted (Nix's attrNames), the outputs in the platforms' order
    assert list(got) == ['both', 'web1', 'mac', 'alice@laptop']
    assert got['web1'].vars['nix_source'] == 'configurations'
    assert got['web1'].vars['ansible_host'] == '10.0.0.1' and got['web1'].groups == ['nixos', 't']
    assert 'ansible_host' not in got['mac'].vars
    assert got['both'].vars['nix_platform'] == 'nixos'
    assert (got['alice@laptop'].vars['ansible_user'], got['alice@laptop'].vars['ansible_host']) == \
        ('alice', 'laptop')
    assert got['alice@laptop'].vars['nix_attr'] == \
        'homeConfigurations."alice@laptop".activationPackage'


def test_configurations_asked_for_without_any_is_no_host(flakes):
    assert hosts(flakes['empty'], 'configurations')[0] == {}


# ---- auto and the table -------------------------------------------------------

@pytest.mark.parametrize('flake, source', [
    ('fleet', 'inventory'), ('raw-hive', 'inventory'), ('made-hive', 'colmena'),
    ('bad', 'inventory'), ('configurations', 'inventory'), ('attributes', 'inventory'),
])
def test_auto_takes_the_first_row_the_flake_has(flakes, flake, source):
    assert evaluated(flakes[flake])['source'] == source


def test_auto_never_falls_back_to_the_configuration_names(flakes):
    """A flake whose inventory sits outside ``outputs`` (here in a ``let``)
    has only configurations for auto: its hosts would have no tags, no
    addresses and the login user. auto refuses, naming the attribute, where
    it must sit and the option that asks for configuration names; asked for,
    they are the hosts."""
    said = nix_error(flakes['outside'])
    last = said.splitlines()[-1].strip()
    assert last.startswith('error: nixdeploy.fleet.nix: the flake has no attribute inventory '
                           'among its outputs (nor colmenaHive, colmena or deploy.nodes): the '
                           'attribute must sit inside outputs, as in outputs = { self, ... }: '
                           '{ inventory = '), said
    assert last.endswith('set source: configurations in the inventory file'), said
    # an attribute of the user's own is the one named
    named = nix_error(flakes['empty'], 'auto', 'fleet.hosts')
    assert 'no attribute fleet.hosts among its outputs' in named, named
    assert sorted(hosts(flakes['outside'], 'configurations')[0]) == ['web1', 'web2']
    # the same where the configurations sit beside a null hive and no nodes
    assert 'set source: configurations' in nix_error(flakes['systems'])
    assert evaluated(flakes['systems'], 'configurations')['source'] == 'configurations'


def test_an_inventory_beside_outputs_is_said_to_belong_inside(flakes):
    """Nix refuses the attribute at the top of flake.nix; the plugin's line
    after Nix's says where it sits and where it must."""
    with pytest.raises(NixError) as err:
        evaluated(flakes['beside'])
    said = err.value.nix_message()
    assert "unsupported attribute 'inventory'" in said, said
    assert _inventory_config.outside_outputs(said) == (
        '\ninventory sits beside outputs in flake.nix; it must sit inside: outputs = { self, ... }: '
        '{ inventory = ...; nixosConfigurations = ...; }')
    assert _inventory_config.outside_outputs(nix_error(flakes['thrown'])) == ''


def test_auto_without_an_inventory_attribute_takes_the_next_rows(flakes):
    """The table's order: a hive after the inventory data (the attribute
    names where auto looks for that), deploy-rs nodes after a hive."""
    assert evaluated(flakes['fleet'], 'auto', ('nowhere',))['source'] == 'colmena'
    assert evaluated(flakes['attributes'], 'deploy-rs', 'ops')['source'] == 'deploy-rs'
    assert evaluated(flakes['deploy-only'])['source'] == 'deploy-rs'


def test_the_json_is_the_shape_the_mapping_tests_use(flakes):
    """test_inventory.py maps hand-made JSON (its ``raw``): each key a real
    evaluation returns is one of its keys."""
    for flake, source in (('fleet', 'inventory'), ('fleet', 'colmena'), ('fleet', 'deploy-rs'),
                          ('configurations', 'configurations'), ('made-hive', 'colmena'),
                          ('systems', 'configurations')):
        real = evaluated(flakes[flake], source)
        shape = raw_shape(real['source'], {})
        assert set(real) <= set(shape), (source, sorted(set(real) - set(shape)))


def test_every_row_ships_its_mapper():
    """Each row's Nix mapper is a file beside the program, which galaxy.yml's
    build_ignore does not leave out of the tarball (ansible-galaxy matches
    each path relative to the collection with fnmatch)."""
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        ignored = yaml.safe_load(handle)['build_ignore']
    files = [_inventory.PROGRAM] + [os.path.join(_inventory.HERE, row.nix)
                                    for row in _inventory_sources.SOURCES]
    for path in files:
        assert os.path.isfile(path), path
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(REPO))
        parts = rel.split(os.sep)
        for depth in range(1, len(parts) + 1):
            prefix = '/'.join(parts[:depth])
            assert not [p for p in ignored if fnmatch.fnmatch(prefix, p)], prefix


# ---- what the user gives reaches Nix as data -----------------------------------

def test_attribute_names_are_data(flakes):
    """An attribute name holding what Nix would read as code (a quote,
    ``${builtins.abort ...}``, a backslash, a dot, a space, non-ASCII) is
    found as the name it is; never evaluated."""
    got = hosts(flakes['attributes'], 'inventory', ('fleet', WEIRD))[0]
    assert list(got) == ['h1'] and got['h1'].vars['ansible_host'] == '10.0.0.1'
    # the same with auto (the attribute names the inventory data)
    assert list(hosts(flakes['attributes'], 'auto', ('fleet', WEIRD))[0]) == ['h1']
    # and as the option's dotted text, the dotted name quoted
    dotted = 'fleet."%s"' % WEIRD.replace('"', '\\"')
    assert _inventory.parse_attribute(dotted) == ['fleet', WEIRD]


def test_an_attribute_names_the_source_asked_for(flakes):
    """Other sources keep their default paths; the inventory entry of a
    node's name fills its gaps."""
    deploy = hosts(flakes['attributes'], 'deploy-rs', 'ops')[0]
    assert deploy['n'].vars['ansible_host'] == '10.0.0.3'
    assert deploy['n'].vars['nix_tags'] == ['gap']
    assert evaluated(flakes['attributes'], 'deploy-rs', 'ops')['attribute'] == ['ops']
    hive = hosts(flakes['attributes'], 'colmena', 'hive')[0]
    assert hive['n'].vars['ansible_host'] == '10.0.0.4' and hive['n'].vars['nix_tags'] == ['gap']


# ---- refusals -------------------------------------------------------------------

@pytest.mark.parametrize('source, attribute, message', [
    ('inventory', None, 'the flake has no inventory attribute inventory'),
    ('inventory', 'fleet.hosts', 'the flake has no inventory attribute fleet.hosts'),
    ('colmena', None, 'the flake has no colmena hive (colmenaHive, colmena)'),
    ('colmena', 'my.hive', 'the flake has no colmena hive (my.hive)'),
    ('deploy-rs', None, 'the flake has no deploy-rs nodes (deploy.nodes)'),
])
def test_a_missing_source_is_named(flakes, source, attribute, message):
    said = nix_error(flakes['empty'], source, attribute)
    assert said.splitlines()[-1].strip() == 'error: nixdeploy.fleet.nix: ' + message, said
    # no frame of the program's own text (Nix calls it «string»)
    assert '«string»' not in said, said


def test_a_throw_in_the_data_is_nixs_message(flakes):
    said = nix_error(flakes['thrown'])
    assert said.splitlines()[-1].strip() == 'error: web1-is-broken', said
    assert '«string»' not in said, said


@pytest.mark.parametrize('source, skipped', [
    ('inventory', [
        "skipped inventory node evil: refused address '-oProxyCommand=touch /tmp/x' from host: "
        "it begins with '-', which ssh reads as an option",
        'skipped inventory node lost: it has no address (targetHost, host, hostname or ips)',
        "skipped inventory node port: refused port '22 -oX' from port: it is not a number"]),
    # the inventory entry filling a gap is checked as the source's own
    ('colmena', ["skipped colmena node evil: refused address '-oProxyCommand=touch /tmp/x' from "
                 "inventory.host: it begins with '-', which ssh reads as an option",
                 "skipped colmena node user: refused ssh user '-l' from deployment.targetUser: "
                 "it begins with '-', which ssh reads as an option"]),
    # a jump host passes (test_inventory_network_sources.py), but ssh hands
    # its hops to /bin/sh: one holding a shell character or a $ is refused
    ('deploy-rs', ["skipped deploy-rs node evil: refused ssh option 'ProxyJump=b;touch /tmp/x' "
                   "from sshOpts: its hop 'b;touch /tmp/x': its host is no host name (letters, "
                   "digits, _ . - only)",
                   "skipped deploy-rs node jumpuser: refused ssh option '-J $(touch /tmp/x)@b' "
                   "from sshOpts: its hop '$(touch /tmp/x)@b': its user is no user name (letters, "
                   "digits, _ . - only)"]),
])
def test_bad_data_skips_the_node_by_name(flakes, source, skipped):
    got, result = hosts(flakes['bad'], source)
    assert list(got) == ['ok']
    assert result.messages() == skipped
    with pytest.raises(InventoryError) as err:
        hosts(flakes['bad'], source, strict=True)
    assert str(err.value) == skipped[0][len('skipped '):]


def test_an_unknown_source_never_reaches_nix():
    with pytest.raises(InventoryError, match="unknown source 'nixops' "
                       r'\(one of auto, inventory, colmena, deploy-rs, configurations\)'):
        _inventory.eval_args(['path:/x#.'], 'nixops')
