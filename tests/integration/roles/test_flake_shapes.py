"""Real-shaped flakes on the `shp` lab (issue 22).

Each shape of ``tests/lab/shapes.py`` (a committed git checkout, a flake in a
subfolder of a repository (``?dir=``), a work tree with uncommitted changes,
a plain ``path:`` folder), every one with ``packages``, ``legacyPackages``,
``devShells``, ``checks``, ``formatter``, ``apps``, ``overlays`` and
``nixosModules`` for the controller's system, a nixpkgs stand-in pinned by
flake.lock that the systems are built from, and 300 hosts in its
``inventory``, is used as users use theirs:

- the inventory plugin reads it: all 300 hosts, groups by tag, host vars,
  as the deploy's own run sees them (a play before the role's prints them);
- ``ansible-playbook nixdeploy.fleet.deploy -l lab`` (eval, build, copy,
  activate) moves the three lab hosts (two NixOS, one home-manager) to the
  system Nix itself evaluates from that flake, the uncommitted change of
  the dirty tree included;
- after ``nix flake lock --update-input`` moves the lock of the committed
  checkout to a new commit of its input, a deploy moves every host again;
- ``nixdeploy.fleet.publish`` publishes the committed shapes (the channel of
  each host moves to the commit, the cache holds each system, signed; a
  host pulls the subfolder flake's channel from the cache) and refuses the
  dirty tree and the ``path:`` folder with its reason.

One lab serves every shape; each shape deploys its own version, so each
deploy is a new generation on every host.
"""

import json
import os
import shlex
import subprocess

import pytest

from tests.collection import run_playbook, unsafe_free
from tests.deploy_fleet import KEY_NAME, lab_group_vars, signing_key, trust_key
from tests.lab.shapes import DATA_CONFIGS, NIX, SHAPES, ShapedFlake, StandIn, data_host, git

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'h1', 'persona': 'nixos'}, {'name': 'h2', 'persona': 'nixos'},
         {'name': 'h3', 'persona': 'home-manager'}]
LAB_HOSTS = ['h1', 'h2', 'h3']
TAGS = {'h1': ['lab', 'vps'], 'h2': ['lab', 'vps'], 'h3': ['lab']}
DATA_HOSTS = 297
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
PUB_PIN = 'nixdeploy.fleet.publish : Pin the flake to its commit'
PUB_EVAL = 'nixdeploy.fleet.publish : Evaluate the system of each host'
PUB_CHANNEL = "nixdeploy.fleet.publish : Move each host's tested channel to the commit"
REFUSED = {'git-dirty': 'uncommitted changes', 'path': 'not a git flake'}
INVENTORY_TASK = 'the inventory as the deploy reads it'
# the hosts whose vars the inventory check reads: four data hosts, h1, h3
SHOWN = [data_host(index)[0] for index in (0, 1, 150, DATA_HOSTS - 1)] + ['h1', 'h3']
# One play before the role's, on no host's connection: what the inventory
# plugin gave the run, so that the deploy's own run shows it (no
# ansible-inventory of its own, whose evaluation would be a second one).
# Only the shown hosts' vars: templating all 300 hosts' would cost more
# than the ansible-inventory run it replaces.
INVENTORY_PLAY = {'name': 'inventory', 'hosts': 'lab', 'gather_facts': False, 'tasks': [
    {'name': INVENTORY_TASK, 'run_once': True, 'vars': {'shown': SHOWN},
     'ansible.builtin.debug': {'msg': {
         'groups': '{{ groups }}', 'names': '{{ hostvars | list }}',
         'hostvars': "{{ dict(shown | zip(shown | map('extract', hostvars))) }}"}}}]}
# the publish role's pin, copy and channel calls: test_publish[git-subdir] on the current stack
PUBLISH_SHAPES = [pytest.param(shape, marks=pytest.mark.here_only) if shape == 'git' else shape
                  for shape in SHAPES]


class Shape:
    """One shaped flake, its inventory folder and its runs."""

    def __init__(self, lab, flake, base, secret):
        self.lab, self.flake, self.base = lab, flake, base
        self.runs = 0
        self.inventory = os.path.join(base, 'inventory')
        group_vars = os.path.join(self.inventory, 'group_vars')
        os.makedirs(group_vars)
        self.config = os.path.join(self.inventory, 'fleet.nix.yml')
        with open(self.config, 'w') as handle:   # JSON is YAML
            json.dump({'plugin': 'nixdeploy.fleet.nix', 'flake': flake.config_flake,
                       'nix_options': {'substituters': ''}}, handle)
        with open(os.path.join(group_vars, 'all.yml'), 'w') as handle:
            json.dump(lab_group_vars(lab, secret), handle)
        self.cache = os.path.join(base, 'cache')
        self.channels = os.path.join(base, 'channels.git')
        git(base, 'init', '-q', '--bare', self.channels)

    def rundir(self):
        self.runs += 1
        return os.path.join(self.base, 'run%d' % self.runs)

    def deploy(self, with_inventory=False):
        playbook = 'nixdeploy.fleet.deploy'
        if with_inventory:
            playbook = [INVENTORY_PLAY, {'ansible.builtin.import_playbook': playbook}]
        return run_playbook(playbook, self.inventory, self.rundir(), args=['-l', 'lab'])

    def publish(self):
        extra = {'nix_publish_cache': 'file://' + self.cache, 'nix_channel_repo': self.channels}
        return run_playbook('nixdeploy.fleet.publish', self.inventory, self.rundir(),
                            args=['-l', 'lab', '-e', json.dumps(extra)])

    def refs(self):
        out = git(self.base, 'ls-remote', self.channels)
        return dict((ref.rsplit('nixos-tested-', 1)[1], commit)
                    for commit, ref in (line.split('\t') for line in out.splitlines()))

    def expected(self):
        """{host: out path} of every lab host's system, as Nix evaluates the flake."""
        return self.flake.out_paths(LAB_HOSTS)


@pytest.fixture(scope='module')
def shapes(make_lab, tmp_path_factory):
    lab = make_lab('shp', HOSTS)
    base = str(tmp_path_factory.mktemp('shp'))
    secret, public = signing_key(base)
    trust_key(lab, public)
    # one nixpkgs stand-in of each kind, shared by the shapes (locked when
    # each flake is written, all before any test moves an input)
    stand_ins = {'git': StandIn.write(os.path.join(base, 'nixpkgs-git'), 'git'),
                 'path': StandIn.write(os.path.join(base, 'nixpkgs-path'), 'path')}
    found = {}
    for shape in SHAPES:
        root = os.path.join(base, shape)
        flake = ShapedFlake.for_lab_shape(
            root, shape, lab, tags=TAGS, data_hosts=DATA_HOSTS,
            stand_in=stand_ins['path' if shape == 'path' else 'git'])
        found[shape] = Shape(lab, flake, root, secret)
    return found


def inventory_of(run):
    """The inventory the run read, shaped as ``ansible-inventory --list``
    prints it ({group: {'hosts': [...]}, '_meta': {'hostvars': {...}}}, the
    vars of the hosts SHOWN), and the names of every host it holds."""
    seen = unsafe_free(run.result(INVENTORY_TASK, LAB_HOSTS[0])['result']['msg'])
    data = dict((name, {'hosts': hosts}) for name, hosts in seen['groups'].items())
    data['_meta'] = {'hostvars': seen['hostvars']}
    return data, seen['names']


def group(data, name):
    return sorted(data.get(name, {}).get('hosts', []))


def check_inventory(fleet, data, names):
    """What the inventory plugin made of the shape's 300 hosts."""
    hostvars = data['_meta']['hostvars']
    assert len(set(names)) == 3 + DATA_HOSTS, names
    # groups by tag: the lab's and the data hosts'
    assert group(data, 'lab') == LAB_HOSTS
    assert group(data, 'vps') == ['h1', 'h2']
    assert len(group(data, 'site_eu')) == 99 and 'node001' in group(data, 'site_eu'), data.keys()
    assert group(data, 'canary') == ['node001', 'node051', 'node101', 'node151', 'node201',
                                     'node251']
    # the data hosts' own vars, and the input's lib filled in their system
    for index in (0, 1, 150, DATA_HOSTS - 1):
        name, entry = data_host(index)
        vars_ = hostvars[name]
        assert (vars_['ansible_host'], vars_['ansible_user'], vars_['ansible_port']) == (
            entry['targetHost'], 'deploy', entry['port']), vars_
        assert vars_['nix_attr'] == (
            'nixosConfigurations.%s.config.system.build.toplevel' % entry['configuration'])
        assert vars_['nix_role'] == entry['role'] and vars_['nix_node']['rack'] == entry['rack']
        assert vars_['nix_system'] == fleet.flake.data['system'], vars_
    # the lab hosts, as deploys use them
    h3 = hostvars['h3']
    assert (h3['nix_platform'], h3['ansible_user']) == ('home-manager', 'app'), h3
    assert h3['ansible_host'] == fleet.lab.host('h3')['address']
    assert h3['nix_attr'] == 'homeConfigurations.h3.activationPackage'
    assert hostvars['h1']['nix_flake'] == fleet.flake.ref, hostvars['h1']
    # groups by platform and role
    assert len(group(data, 'nixos')) == 2 + DATA_HOSTS and group(data, 'home_manager') == ['h3']
    for role in DATA_CONFIGS:
        assert len(group(data, 'role_%s' % role)) == DATA_HOSTS // 3, role


# scenario: test_inventory_plugin_reads_the_shape (check_inventory, on the deploy's own run)
@pytest.mark.parametrize('shape', SHAPES)
def test_deploy_moves_every_host_to_the_shape_system(shapes, shape):
    fleet = shapes[shape]
    lab = fleet.lab
    before = dict((host, lab.active(host)) for host in LAB_HOSTS)
    fleet.flake.set_all(version=shape)
    if shape == 'git-dirty':
        # the new version is an uncommitted change of the work tree
        status = git(fleet.flake.repo, 'status', '--porcelain')
        assert ' M fleet.json' in status.splitlines(), status
    expected = fleet.expected()
    run = fleet.deploy(with_inventory=True)
    assert run.rc == 0, run
    check_inventory(fleet, *inventory_of(run))
    assert run.outcomes() == dict((host, 'switched') for host in LAB_HOSTS), run
    evaluated = dict((r['host'], r['result']['out_path']) for r in run.results(EVAL)
                     if r['status'] == 'ok')
    assert evaluated == expected, run
    for host in LAB_HOSTS:
        assert lab.active(host) == expected[host] != before[host], host
        assert expected[host].endswith('-system-%s-%s' % (host, shape)), expected[host]


def test_a_new_input_in_the_lock_redeploys_every_host(shapes):
    fleet = shapes['git']
    lab, flake = fleet.lab, fleet.flake
    before = dict((host, lab.active(host)) for host in LAB_HOSTS)
    locked, pinned = flake.locked_input(), fleet.expected()
    # a new commit of the input changes nothing while the lock pins the old one
    flake.stand_in.set_release('2')
    assert fleet.expected() == pinned
    flake.lock(update=True)
    flake.commit('nixpkgs 2')
    assert flake.locked_input()['rev'] == flake.stand_in.rev != locked['rev']
    expected = fleet.expected()
    assert all(expected[host] != pinned[host] for host in LAB_HOSTS)
    run = fleet.deploy()
    assert run.rc == 0, run
    assert run.outcomes() == dict((host, 'switched') for host in LAB_HOSTS), run
    for host in LAB_HOSTS:
        assert lab.active(host) == expected[host] != before[host], host


def cached(cache, paths):
    """{path: signatures} of the paths the file:// cache holds."""
    proc = subprocess.run(NIX + ['path-info', '--json', '--store', 'file://' + cache] + paths,
                          universal_newlines=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    data = json.loads(proc.stdout or '[]')
    items = data.items() if isinstance(data, dict) else ((i.get('path'), i) for i in data)
    return dict((path, info.get('signatures') or []) for path, info in items
                if info and info.get('valid', True))


def pull(fleet, host):
    """The host pulls its channel as its auto-upgrade would (nothing built on
    the host; the system comes from the cache); returns the system."""
    _ref, _sep, query = fleet.flake.ref.partition('?')
    flake = 'git+file://%s?ref=nixos-tested-%s%s' % (
        fleet.channels, host, ('&' + query) if query else '')
    script = ('nix --extra-experimental-features "nix-command flakes" build --refresh --no-link'
              ' --json %s --option substituters %s --option builders "" --max-jobs 0'
              % (shlex.quote('%s#%s' % (flake, fleet.flake.attr(host))),
                 shlex.quote('file://' + fleet.cache)))
    proc = fleet.lab.ssh(host, script, user='root', check=False, timeout=120)
    assert proc.returncode == 0, (host, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)[0]['outputs']['out']


@pytest.mark.parametrize('shape', PUBLISH_SHAPES)
def test_publish(shapes, shape):
    fleet = shapes[shape]
    run = fleet.publish()
    if shape in REFUSED:
        # a channel names a commit: nothing of this tree may be published
        assert run.rc != 0, run
        for host in LAB_HOSTS:
            pin = run.result(PUB_PIN, host)
            assert pin['status'] == 'failed' and REFUSED[shape] in pin['result']['msg'], pin
        assert fleet.refs() == {} and not os.path.exists(fleet.cache)
        return
    assert run.rc == 0, run
    revision = fleet.flake.revision
    assert fleet.refs() == dict((host, revision) for host in LAB_HOSTS)
    for host in LAB_HOSTS:
        assert run.result(PUB_CHANNEL, host)['result']['status'] == 'new', host
    expected = fleet.expected()
    published = dict((r['host'], r['result']['out_path']) for r in run.results(PUB_EVAL))
    assert published == expected, run
    signatures = cached(fleet.cache, sorted(expected.values()))
    for host, path in expected.items():
        assert any(s.startswith(KEY_NAME + ':') for s in signatures.get(path, [])), (
            host, path, signatures)
    if shape == 'git-subdir':
        # the published commit of the subfolder flake gives a host the very
        # system built here, from the cache
        assert pull(fleet, 'h1') == expected['h1']
