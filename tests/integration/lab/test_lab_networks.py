"""The lab's network shapes (issue 78, tests/lab/networks.py): a bastion and a
host only reachable through it, an IPv6-only host, a host whose first address
is dead and a host that is switched off, in one small mixed lab. Every check
uses the exact vars ``ansible_vars`` gives, with plain ssh, Nix and Ansible."""

import errno
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from tests.collection import REPO
from tests.lab.lab import HELD_NAME, STACK_TREE, index_held, sh

pytestmark = [pytest.mark.lab, pytest.mark.here_only]

HOSTS = [{'name': 'h1'}, {'name': 'jump', 'bastion': True}, {'name': 'b1', 'behind': 'jump'},
         {'name': 'v6', 'ipv6_only': True}, {'name': 'm1', 'dead_first': True},
         {'name': 'off1', 'off': True}]
NIX_FLAGS = ['--extra-experimental-features', 'nix-command flakes', '--option', 'substituters', '']
# a failed connect must end by itself (no ConnectTimeout in the vars): ARP's
# or neighbour discovery's ~3 s, with a wide margin for a busy machine
FAIL_BOUND = 20
V6_FORMS = ('ssh-ng://root@{a}', 'ssh-ng://root@[{a}]', 'ssh://root@{a}', 'ssh://root@[{a}]')


@pytest.fixture(scope='module')
def lab(make_lab):
    return make_lab('labnet', hosts=HOSTS)


def ssh_argv(lab, name, command, address=None, user=None, common=None):
    """ssh as Ansible's vars for ``name`` say (BatchMode: never a prompt)."""
    hostvars = lab.ansible_vars(name)
    return (['ssh', '-i', hostvars['ansible_ssh_private_key_file'], '-o', 'BatchMode=yes',
             '-p', str(hostvars['ansible_port'])]
            + shlex.split(common or hostvars['ansible_ssh_common_args'])
            + ['-l', user or hostvars['ansible_user'], address or hostvars['ansible_host'],
               command])


def timed_ssh(lab, name, command='hostname -I; id -un', **kwargs):
    started = time.monotonic()
    proc = subprocess.run(ssh_argv(lab, name, command, **kwargs), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120,
                          check=False)
    return proc, round(time.monotonic() - started, 2)


def nix_sshopts(lab, name):
    hostvars = lab.ansible_vars(name)
    return '-i %s -o BatchMode=yes %s' % (hostvars['ansible_ssh_private_key_file'],
                                          hostvars['ansible_ssh_common_args'])


def new_store_path(tmp_path, label):
    """A small path of its own in the controller's store (this stack's Nix)."""
    source = tmp_path / ('payload-%s' % re.sub(r'[^A-Za-z0-9+._?=-]', '_', label))
    source.write_text('lab networks %s %s\n' % (label, time.time()))
    return sh(['nix-store', '--add', str(source)]).stdout.strip()


def nix_copy(lab, name, uri, path):
    return subprocess.run(['nix'] + NIX_FLAGS + ['copy', '--no-check-sigs', '--to', uri, path],
                          env=dict(os.environ, NIX_SSHOPTS=nix_sshopts(lab, name)),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120, check=False)


def test_the_vars_are_what_a_user_writes(lab):
    jump, b1, v6, m1 = (lab.host(h) for h in ('jump', 'b1', 'v6', 'm1'))
    index = lab.state['index']
    b1_vars = lab.ansible_vars('b1')
    assert b1_vars['ansible_host'] == b1['address'] == '10.214.%d.13' % index
    common = b1_vars['ansible_ssh_common_args']
    assert '-o ProxyJump=deploy@%s' % jump['address'] in common
    assert '-F %s' % lab.ssh_config in common
    assert '-o StrictHostKeyChecking=yes' in common
    # NIX_SSHOPTS is split on whitespace: no token may hold any
    assert shlex.split(common) == common.split()
    with open(lab.ssh_config) as handle:
        config = handle.read()
    assert 'Host jump %s\n' % jump['address'] in config
    assert '  ProxyJump deploy@%s\n' % jump['address'] in config
    assert config.count('StrictHostKeyChecking yes') == len(HOSTS)
    v6_vars = lab.ansible_vars('v6')
    assert v6_vars['ansible_host'] == v6['address'] == 'fd42:213:%d::14' % index
    m1_vars = lab.ansible_vars('m1')
    dead = m1_vars['ansible_host']
    assert m1_vars['nix_target_hosts'] == [dead, m1['address']]
    assert dead.startswith('10.213.%d.' % index)
    assert dead not in [h['address'] for h in lab.hosts.values()]
    assert lab.ansible_vars('off1')['ansible_host'] == lab.host('off1')['address']
    # the lab's own inventory holds the same vars
    with open(os.path.join(lab.dir, 'inventory.yml')) as handle:
        inventory = json.load(handle)
    assert inventory['all']['children']['nixos']['hosts']['b1'] == b1_vars
    print(json.dumps({h: lab.ansible_vars(h) for h in lab.hosts}, indent=1))


def test_off_host_fails_within_a_bound_not_refused(lab):
    assert lab.switched_off('off1') and lab.power_state('off1') == 'off'
    proc, seconds = timed_ssh(lab, 'off1')
    print('off1: %ss %s' % (seconds, proc.stderr.strip()))
    assert proc.returncode == 255
    assert 'No route to host' in proc.stderr, proc.stderr
    assert seconds < FAIL_BOUND
    # restorable: on, reached, off again
    lab.switch_on('off1')
    assert timed_ssh(lab, 'off1')[0].stdout.split()[-1] == 'root'
    lab.switch_off('off1')
    proc, seconds = timed_ssh(lab, 'off1')
    print('off1 after switch_on and switch_off: %ss %s' % (seconds, proc.stderr.strip()))
    assert 'No route to host' in proc.stderr and seconds < FAIL_BOUND
    # off: no process left in it
    assert not sh(['ip', 'netns', 'pids', lab.host('off1')['netns']]).stdout.strip()


def test_a_dead_first_address_fails_within_a_bound(lab):
    dead, real = lab.ansible_vars('m1')['nix_target_hosts']
    proc, seconds = timed_ssh(lab, 'm1')
    print('m1 first address %s: %ss %s' % (dead, seconds, proc.stderr.strip()))
    assert proc.returncode == 255
    assert 'connect to host %s port 22: No route to host' % dead in proc.stderr, proc.stderr
    assert seconds < FAIL_BOUND
    proc, seconds = timed_ssh(lab, 'm1', address=real)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [real, 'root']


def test_plain_ssh_with_the_vars_reaches_every_host_that_is_on(lab):
    for name in ('h1', 'jump', 'b1', 'v6'):
        proc, seconds = timed_ssh(lab, name)
        assert proc.returncode == 0, (name, proc.stderr)
        assert proc.stdout.split()[-1] == 'root'
        assert lab.host(name)['address'] in proc.stdout.split(), (name, proc.stdout)
        print('%s: %ss' % (name, seconds))
    # the bastion is on both subnets; b1 only on the inner one
    assert lab.host('jump')['inner_address'] in timed_ssh(lab, 'jump')[0].stdout.split()
    # the deploy user (the ProxyJump's) logs in to the bastion too
    proc, _seconds = timed_ssh(lab, 'jump', command='id -un', user='deploy')
    assert proc.stdout.strip() == 'deploy', proc.stderr
    # v6 has no IPv4 at all
    eth0 = sh(['ip', '-n', lab.host('v6')['netns'], 'addr', 'show', 'dev', 'eth0']).stdout
    assert ' inet ' not in eth0 and 'inet6 %s/64' % lab.host('v6')['address'] in eth0


def test_the_controller_has_no_route_behind_the_bastion(lab):
    b1 = lab.host('b1')['address']
    started = time.monotonic()
    with pytest.raises(OSError) as refused:
        socket.create_connection((b1, 22), timeout=10).close()
    assert refused.value.errno == errno.EHOSTUNREACH, refused.value
    assert time.monotonic() - started < FAIL_BOUND
    proc = subprocess.run(['ssh'] + lab.ssh_args() + ['root@%s' % b1, 'true'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60, check=False)
    assert proc.returncode == 255 and 'No route to host' in proc.stderr, proc.stderr
    # ... and the bastion does not forward, nor has b1 a way out of its subnet
    forward = sh(['ip', 'netns', 'exec', lab.host('jump')['netns'],
                  'cat', '/proc/sys/net/ipv4/ip_forward']).stdout.strip()
    assert forward == '0'
    routes = sh(['ip', '-n', lab.host('b1')['netns'], 'route', 'show']).stdout.splitlines()
    assert [r.split()[0] for r in routes] == ['10.214.%d.0/24' % lab.state['index']]


def test_host_keys_are_checked_for_the_target_and_the_jump(lab, tmp_path):
    empty = tmp_path / 'known_hosts'
    empty.write_text('')
    common = lab.ansible_vars('b1')['ansible_ssh_common_args']
    # the jump's own ssh gets -F only: a copy of the config whose entries
    # point to an empty known_hosts
    with open(lab.ssh_config) as handle:
        config = handle.read()
    copy = tmp_path / 'ssh_config'
    copy.write_text(config.replace(lab.known_hosts, str(empty)))
    proc, _seconds = timed_ssh(lab, 'b1', common=common.replace(lab.ssh_config, str(copy)))
    assert proc.returncode == 255
    assert 'No ED25519 host key is known for %s' % lab.host('jump')['address'] in proc.stderr
    assert 'Host key verification failed' in proc.stderr, proc.stderr
    # the target's: its known_hosts on the command line
    proc, _seconds = timed_ssh(lab, 'b1', common=common.replace(
        'UserKnownHostsFile=%s' % lab.known_hosts, 'UserKnownHostsFile=%s' % empty))
    assert proc.returncode == 255
    assert 'No ED25519 host key is known for %s' % lab.host('b1')['address'] in proc.stderr
    assert 'Host key verification failed' in proc.stderr, proc.stderr


def test_ansible_reaches_the_hosts_with_the_lab_inventory(lab, tmp_path):
    """Ansible's own ssh connection with the inventory the lab wrote (a
    folder of its own: no ansible.cfg of the repository)."""
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible'),
                           '-i', os.path.join(lab.dir, 'inventory.yml'), 'h1:jump:b1:v6',
                           '-m', 'raw', '-a', 'hostname -I', '--one-line'],
                          cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout
    lines = {ln.split(' | ')[0]: ln for ln in proc.stdout.splitlines() if ' | ' in ln}
    assert sorted(lines) == ['b1', 'h1', 'jump', 'v6'], proc.stdout
    for name, line in lines.items():
        assert ' | CHANGED | rc=0 | ' in line and lab.host(name)['address'] in line, line


def test_nix_copies_through_the_jump_and_over_ipv6(lab, tmp_path):
    """This stack's Nix (2.8): ssh-ng through the bastion, and every URI form
    of an IPv6 address."""
    path = new_store_path(tmp_path, 'b1')
    proc = nix_copy(lab, 'b1', 'ssh-ng://root@%s' % lab.ansible_vars('b1')['ansible_host'], path)
    assert proc.returncode == 0, proc.stderr
    assert lab.store_has('b1', path)
    address = lab.ansible_vars('v6')['ansible_host']
    results = {}
    for form in V6_FORMS:
        uri = form.format(a=address)
        path = new_store_path(tmp_path, uri)
        proc = nix_copy(lab, 'v6', uri, path)
        results[uri] = 'ok' if proc.returncode == 0 and lab.store_has('v6', path) else \
            proc.stderr.strip()
    print('nix 2.8: %s' % json.dumps(results, indent=1))
    assert set(results.values()) == {'ok'}, results


TREE_SCRIPT = r"""
# inside the current-stack tree: a path of its own per URI, copied with its Nix
cd "$1"; shift
for uri in "$@"; do
  echo "lab networks $uri $(date +%s%N)" >payload
  path=$(nix-store --add payload)
  case $uri in *10.214.*) opts=$(cat sshopts.b1) ;; *) opts=$(cat sshopts.v6) ;; esac
  if out=$(NIX_SSHOPTS=$opts timeout 120 nix {flags} copy --no-check-sigs --to "$uri" "$path" 2>&1)
  then echo "RESULT $uri ok $path"
  else echo "RESULT $uri failed: $(echo "$out" | tr '\n' ' ')"
  fi
done
"""


def test_the_current_stacks_nix_copies_the_same_ways(lab):
    """The current stack's Nix (2.34, and its OpenSSH 10.x) from inside its
    tree: the same vars (the lab's files copied into the tree's /tmp, which is
    all it sees of them)."""
    if not os.path.isfile(os.path.join(STACK_TREE, '.nixdeploy-tree-ready')) or \
            not os.path.isfile(os.path.join(STACK_TREE, 'usr', 'bin', 'nix')):
        pytest.skip('no current-stack tree with Nix at %s (make current-deps)' % STACK_TREE)
    outside = tempfile.mkdtemp(prefix='labnet-', dir=os.path.join(STACK_TREE, 'tmp'))
    inside = '/tmp/' + os.path.basename(outside)
    try:
        for name in ('id_ed25519', 'known_hosts', 'ssh_config'):
            shutil.copy(os.path.join(lab.dir, name), os.path.join(outside, name))
        with open(os.path.join(outside, 'ssh_config')) as handle:
            config = handle.read().replace(lab.dir + '/', inside + '/')
        with open(os.path.join(outside, 'ssh_config'), 'w') as handle:
            handle.write(config)
        for name in ('b1', 'v6'):
            with open(os.path.join(outside, 'sshopts.' + name), 'w') as handle:
                handle.write(nix_sshopts(lab, name).replace(lab.dir + '/', inside + '/'))
        with open(os.path.join(outside, 'copy.sh'), 'w') as handle:
            handle.write(TREE_SCRIPT.replace('{flags}', ' '.join(
                shlex.quote(f) for f in NIX_FLAGS)))
        address = lab.ansible_vars('v6')['ansible_host']
        uris = ['ssh-ng://root@%s' % lab.ansible_vars('b1')['ansible_host']] + \
            [form.format(a=address) for form in V6_FORMS]
        proc = subprocess.run([os.path.join(REPO, 'tests', 'stack', 'tree.sh'), 'run', 'sh',
                               inside + '/copy.sh', inside] + uris,
                              env=dict(os.environ, NIXDEPLOY_TREE=STACK_TREE),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=900, check=False)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith('RESULT '):
            uri, outcome = line.split(' ', 2)[1:]
            results[uri] = outcome
    print('current stack: %s' % json.dumps(results, indent=1))
    assert sorted(results) == sorted(uris), proc.stdout
    for uri, outcome in results.items():
        assert outcome.startswith('ok '), (uri, outcome)
        host = 'b1' if '10.214.' in uri else 'v6'
        assert lab.store_has(host, outcome.split()[1]), (uri, outcome)


def test_down_removes_every_shape(lab):
    index = lab.state['index']
    held = HELD_NAME % index
    mark = re.compile(r'ndl%d-|ndl%dv|\bndlbr%d\b|\b10\.21[34]\.%d\.|\bfd42:213:%d:'
                      % ((index,) * 5))

    def ours():
        found = []
        for argv in (['ip', 'netns', 'list'], ['ip', '-o', 'link', 'show'],
                     ['ip', 'route', 'show', 'table', 'all'],
                     ['ip', '-6', 'route', 'show', 'table', 'all'], ['ip', '-o', 'addr', 'show']):
            found += [ln for ln in sh(argv).stdout.splitlines()
                      if mark.search(ln) and held not in ln]
        return found

    before = ours()
    assert any('ndl%d-inner' % index in ln for ln in before)
    assert any('unreachable 10.214.%d.0/24' % index in ln for ln in before)
    assert any('fd42:213:%d::1/64' % index in ln for ln in before)
    with index_held(index):
        lab.down()
        left = lab.leftovers(index)
        after = ours()
    assert left == [] and after == [], (left, after)
