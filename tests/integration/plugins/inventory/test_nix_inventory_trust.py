# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nixdeploy.fleet.nix: the flake's data cannot become ssh options, a command
or a file read on the controller (issue 35), against real `nix eval`, real
ansible-inventory and real ssh.

One flake holds a hostile node in every shape the plugin reads (inventory
data, a colmena hive, deploy-rs nodes, a home-manager ``user@host``, a bare
configuration name) beside healthy ones. Each hostile value would run
``touch PWNED-<node>`` on the controller if it reached ssh as an option; the
test then runs Ansible's real ssh against every host the inventory gives (the
healthy ones point at a closed port on loopback, so no traffic leaves the
machine) and no such file may exist.
"""

import glob
import json
import os
import subprocess

import pytest

from tests.collection import BIN, ansible_env
from tests.integration.plugins.inventory.test_nix_inventory import (
    NIX, inventory, listing, said, write_config, write_flake)

pytestmark = pytest.mark.skipif(NIX is None, reason='needs nix on PATH')

# @P@ becomes the path prefix of the files a payload would create.
HOSTILE = r'''
{
  outputs = { self }: let
    touch = node: "-oProxyCommand=touch @P@-${node}";
  in {
    inventory = {
      good = { targetHost = "127.0.0.1"; tags = [ "ok" ]; };
      evil-host = { targetHost = touch "evil-host"; };
      evil-hostname = { hostname = "127.0.0.1\nProxyCommand touch @P@-evil-hostname"; };
      evil-ips = { ips = [ (touch "evil-ips") ]; };
      evil-user = { targetHost = "127.0.0.1"; user = touch "evil-user"; };
      evil-port = { targetHost = "127.0.0.1"; port = "22 ${touch "evil-port"}"; };
    };
    colmena = {
      meta = { };
      good = { deployment.targetHost = "127.0.0.1"; };
      ${touch "colmena-name"} = { deployment.tags = [ "x" ]; };
      evil-target = { deployment.targetHost = touch "evil-target"; };
      evil-user = { deployment = { targetHost = "127.0.0.1"; targetUser = "-l"; }; };
      keyed = { deployment = {
        targetHost = "127.0.0.1";
        keys.cmd.keyCommand = [ "touch" "@P@-keyCommand" ];
        keys.file.keyFile = "/etc/passwd";
        keys.inline.text = "inline";
      }; };
    };
    deploy.nodes = let profiles.system.path = throw "profile path forced"; in {
      good = { hostname = "127.0.0.1"; inherit profiles;
               sshOpts = [ "-o" "ConnectTimeout=5" "-oServerAliveInterval=5" "-4" ]; };
      evil-hostname = { hostname = touch "evil-hostname"; inherit profiles; };
      evil-opts = { hostname = "127.0.0.1"; inherit profiles; sshOpts = [ (touch "evil-opts") ]; };
      evil-opts-space = { hostname = "127.0.0.1"; inherit profiles;
                          sshOpts = [ "-o" "proxycommand touch @P@-evil-opts-space" ]; };
      evil-khc = { hostname = "127.0.0.1"; inherit profiles;
                   sshOpts = [ "-o" "StrictHostKeyChecking=no" ]; };
      evil-ssh-user = { hostname = "127.0.0.1"; sshUser = "a b"; inherit profiles; };
    };
    homeConfigurations = {
      "alice@localhost" = throw "system forced";
      "alice@${touch "home"}" = throw "system forced";
    };
    nixosConfigurations = {
      localhost = throw "system forced";
      ${touch "configuration"} = throw "system forced";
    };
  };
}
'''

# source -> (the hosts that come out, the hostile nodes and the field each names)
EXPECTED = {
    'inventory': (['good'], {
        'evil-host': "address '-oProxyCommand=touch",
        'evil-hostname': "address '127.0.0.1\\nProxyCommand touch",
        'evil-ips': "address '-oProxyCommand=touch",
        'evil-user': "ssh user '-oProxyCommand=touch",
        'evil-port': "port '22 -oProxyCommand=touch",
    }),
    'colmena': (['good', 'keyed'], {
        "'-oProxyCommand=touch": "address '-oProxyCommand=touch",
        'evil-target': "address '-oProxyCommand=touch",
        'evil-user': "ssh user '-l'",
    }),
    'deploy-rs': (['good'], {
        'evil-hostname': "address '-oProxyCommand=touch",
        'evil-opts': "ssh option '-oProxyCommand=touch",
        'evil-opts-space': "ssh option 'proxycommand touch",
        'evil-khc': "ssh option 'StrictHostKeyChecking=no'",
        'evil-ssh-user': "ssh user 'a b'",
    }),
    'configurations': (['alice@localhost', 'localhost'], {
        "'alice@-oProxyCommand=touch": "address '-oProxyCommand=touch",
        "'-oProxyCommand=touch": "address '-oProxyCommand=touch",
    }),
}


@pytest.fixture(scope='module')
def hostile(tmp_path_factory):
    base = str(tmp_path_factory.mktemp('hostile'))
    prefix = os.path.join(base, 'pwned')
    path = write_flake(os.path.join(base, 'flake'), HOSTILE.replace('@P@', prefix))
    return path, prefix


def pwned(prefix):
    return sorted(glob.glob(prefix + '*'))


def ssh_everywhere(config, workdir):
    """Ansible's real ssh to every host of the inventory, nothing of this
    machine's ssh config: a closed port on loopback refuses the healthy ones."""
    args = '-F /dev/null -o UserKnownHostsFile=%s -o ConnectTimeout=5' % os.path.join(workdir, 'known_hosts')
    return subprocess.run([os.path.join(BIN, 'ansible'), '-i', config, 'all', '-m', 'ansible.builtin.raw',
                           '-a', 'true', '-e', 'ansible_port=9', '-e', 'ansible_ssh_common_args=%r' % args],
                          cwd=workdir, env=ansible_env({'ANSIBLE_INVENTORY_ENABLED': 'nixdeploy.fleet.nix'}),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, check=False)


@pytest.mark.parametrize('source', sorted(EXPECTED))
def test_hostile_nodes_are_skipped_by_name_and_field(hostile, source, tmp_path):
    path, prefix = hostile
    config = write_config(path, '%s.nix.yml' % source, source=source)
    data, err = listing(config)
    healthy, refused = EXPECTED[source]
    assert sorted(data['_meta']['hostvars']) == healthy, err
    for node, field in refused.items():
        assert said('nixdeploy.fleet.nix: skipped %s node %s' % (source, node), err), (node, err)
        assert said(field, err), (node, field, err)
    # every hostile value is shown escaped: no raw newline from the flake in a warning
    assert '127.0.0.1\nProxyCommand' not in err
    # the real ssh of Ansible to everything the inventory gives runs no payload
    run = ssh_everywhere(config, str(tmp_path))
    assert 'UNREACHABLE' in run.stdout + run.stderr, run.stdout + run.stderr
    assert pwned(prefix) == []


@pytest.mark.parametrize('source, node', [
    # the first hostile node in flake order (names sorted) fails the parse
    ('inventory', 'evil-host'),
    # strict: [inventory-evil-host]; its source's evaluation: test_hostile_nodes_...[colmena]
    pytest.param('colmena', "'-oProxyCommand=touch", marks=pytest.mark.here_only),
    # strict: [inventory-evil-host]; its source's evaluation: test_hostile_nodes_...[deploy-rs]
    pytest.param('deploy-rs', 'evil-hostname', marks=pytest.mark.here_only),
    # strict: [inventory-evil-host]; its source's evaluation: test_hostile_nodes_...[configurations]
    pytest.param('configurations', "'-oProxyCommand=touch", marks=pytest.mark.here_only),
])
def test_strict_fails_naming_the_node(hostile, source, node):
    path, _prefix = hostile
    proc = inventory(write_config(path, 'strict-%s.nix.yml' % source, source=source, strict=True),
                     check=False)
    assert proc.returncode != 0
    assert said('nixdeploy.fleet.nix: %s node %s' % (source, node), proc.stderr), proc.stderr


def test_connection_vars_from_compose_are_checked(tmp_path):
    """compose may take ansible_host from the flake's data: checked the same way."""
    prefix = str(tmp_path / 'pwned')
    path = write_flake(str(tmp_path / 'flake'), '''
    { outputs = { self }: { inventory = {
        good = { targetHost = "127.0.0.1"; alt = "-oProxyCommand=touch %s-composed"; };
        plain = { targetHost = "127.0.0.1"; alt = "localhost"; };
    }; }; }
    ''' % prefix)
    compose = {'ansible_host': 'nix_node.alt'}
    config = write_config(path, 'compose.nix.yml', compose=compose, groups={'composed': 'true'})
    data, err = listing(config)
    assert sorted(data['_meta']['hostvars']) == ['plain']
    assert data['_meta']['hostvars']['plain']['ansible_host'] == 'localhost'
    assert data['composed']['hosts'] == ['plain']
    assert said("nixdeploy.fleet.nix: skipped inventory node good: refused address "
                "'-oProxyCommand=touch %s-composed' from compose ansible_host" % prefix, err), err
    proc = inventory(write_config(path, 'strict.nix.yml', compose=compose, strict=True), check=False)
    assert proc.returncode != 0
    assert said('nixdeploy.fleet.nix: inventory node good: refused address', proc.stderr), proc.stderr
    ssh_everywhere(config, str(tmp_path))
    assert pwned(prefix) == []


def test_hive_keys_from_the_flake_are_an_explicit_choice(hostile):
    """By default a hive's keyCommand and keyFile stay out of nix_keys, with a
    warning naming node, key and the option; hive_keys maps them."""
    path, prefix = hostile
    data, err = listing(write_config(path, 'keys-default.nix.yml', source='colmena'))
    keys = data['_meta']['hostvars']['keyed']['nix_keys']
    assert keys == {'inline': {'text': 'inline'}}
    assert said("colmena node keyed, key cmd: its keyCommand is left out", err), err
    assert said("colmena node keyed, key file: its keyFile is left out", err), err
    assert said('hive_keys', err)
    data, err = listing(write_config(path, 'keys-all.nix.yml', source='colmena',
                                     hive_keys=['text', 'keyFile', 'keyCommand']))
    keys = data['_meta']['hostvars']['keyed']['nix_keys']
    assert keys['cmd'] == {'command': ['touch', prefix + '-keyCommand']}
    assert keys['file'] == {'src': '/etc/passwd'}
    assert not said('left out', err)
    data, err = listing(write_config(path, 'keys-none.nix.yml', source='colmena', hive_keys=[]))
    assert 'nix_keys' not in data['_meta']['hostvars']['keyed']
    # parsing never runs a key command
    assert pwned(prefix) == []


def test_cache_holds_no_nix_option_value(hostile, tmp_path):
    """nix_options may carry secrets (access-tokens): the cache file keeps a
    digest of the request, never its argv; a changed option still evaluates again."""
    path, _prefix = hostile
    secret = 'nixdeploy-inventory-secret-3b9e'
    cache = str(tmp_path / 'cache')
    options = dict(source='inventory', cache=True, cache_plugin='ansible.builtin.jsonfile',
                   cache_connection=cache, cache_timeout=3600)
    config = write_config(path, 'cached.nix.yml', nix_options={
        'substituters': '', 'access-tokens': 'example.invalid=%s' % secret}, **options)
    first = listing(config)[0]
    files = glob.glob(os.path.join(cache, '*'))
    assert files
    for name in files:
        with open(name) as handle:
            text = handle.read()
        assert secret not in text
        assert 'access-tokens' not in text
        assert 'request_sha256' in text
    # a cached entry that differs from the flake: read as long as the request is the same
    with open(files[0]) as handle:
        stored = json.load(handle)
    # ansible-core 2.19+ wraps the entry as a JSON string under __payload__
    entry = json.loads(stored['__payload__']) if '__payload__' in stored else stored
    entry['raw']['nodes'] = {'from-the-cache': {'targetHost': '127.0.0.1'}}
    if '__payload__' in stored:
        stored['__payload__'] = json.dumps(entry)
    with open(files[0], 'w') as handle:
        json.dump(stored if '__payload__' in stored else entry, handle)
    assert sorted(listing(config)[0]['_meta']['hostvars']) == ['from-the-cache']
    # another token, same argv length and shape: the entry is not used
    write_config(path, 'cached.nix.yml', nix_options={
        'substituters': '', 'access-tokens': 'example.invalid=%s-2' % secret}, **options)
    second = listing(config)[0]
    assert sorted(second['_meta']['hostvars']) == sorted(first['_meta']['hostvars']) == ['good']
