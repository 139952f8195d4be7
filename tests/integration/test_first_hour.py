"""A new user's first hour, from the built tarball (issue 93, items 2 to 5).

The collection's tarball is built from the commit (tests/galaxy/pack.py) and
installed as the docs say for a folder of one's own: ``ansible-galaxy
collection install -p DIR``, then ``ANSIBLE_COLLECTIONS_PATH`` naming DIR
(README.md, docs/quickstart.md). The user has a home of their own (no
``~/.ansible.cfg``, no collection in ``~/.ansible/collections``) and a
fleet folder laid out as the quickstart's, its files the shipped
``examples/``. Each mistake is one run of ``ansible-playbook
nixdeploy.fleet.deploy`` (or ``ansible-inventory``), none of which reaches a
host, so no lab is needed: the inventory is refused before any play.

- the flake's ``inventory`` written in a ``let`` instead of inside
  ``outputs``: the run fails naming the attribute, where it must sit and the
  option that asks for configuration names, which then works;
- a tag equal to a host name: the run fails naming the host and the tag;
- the run started outside the fleet's folder (the folder above it, its
  ``inventory/``, a clone whose own ``ansible.cfg`` names the demo's flake):
  one line naming the folder to ``cd`` to, exit code 1.
"""

import os
import shutil
import subprocess
import tempfile

import pytest
import yaml

from tests.collection import BIN, REPO
from tests.galaxy import pack

pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')

DEPLOY = ['ansible-playbook', 'nixdeploy.fleet.deploy', '-l', 'vps']

# the quickstart's flake, as a user gets it wrong: the inventory in a let
# (every system a throw: the inventory never builds or evaluates one)
FLAKE = '''{
  outputs = { self }:
    let
      inventory = {
        web1 = { targetHost = "web1"; targetUser = "root"; tags = [ "vps" "prod" ]; };
        web2 = { targetHost = "web2"; targetUser = "root"; tags = [ "vps" "@TAG@" ]; };
      };
    in {
      @INVENTORY@
      nixosConfigurations.web1 = throw "system forced";
      nixosConfigurations.web2 = throw "system forced";
    };
}
'''


class User:
    """A user with a home of their own, the collection installed with -p."""

    def __init__(self, base):
        self.base = base
        self.home = os.path.join(base, 'home')
        os.makedirs(self.home)
        env = dict((k, v) for k, v in os.environ.items()
                   if not k.startswith(('ANSIBLE_', 'NIXDEPLOY_', 'NIX_CONFIG', 'VIRTUAL_ENV')))
        env.update({'HOME': self.home, 'PATH': BIN + os.pathsep + os.environ.get('PATH', ''),
                    'ANSIBLE_NOCOLOR': '1'})
        self.env = env

    def run(self, argv, cwd):
        return subprocess.run(argv, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=300, check=False)


def example(rel):
    with open(os.path.join(REPO, 'examples', rel)) as handle:
        return handle.read()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)


def fleet_folder(path, tag='hk', inventory_in_outputs=False):
    """The quickstart's folder: its flake (a git repository), the shipped
    ansible.cfg and inventory files, Nix asking no binary cache."""
    flake = FLAKE.replace('@TAG@', tag).replace(
        '@INVENTORY@', 'inherit inventory;' if inventory_in_outputs else '')
    write(os.path.join(path, 'flake.nix'), flake)
    write(os.path.join(path, 'ansible.cfg'), example('ansible.cfg'))
    write(os.path.join(path, 'inventory', 'fleet.nix.yml'),
          example('inventory/fleet.nix.yml') + "nix_options: {substituters: ''}\n")
    write(os.path.join(path, 'inventory', 'group_vars', 'all.yml'),
          example('inventory/group_vars/all.yml'))
    for argv in (['git', 'init', '-q', '-b', 'main'], ['git', 'add', '.']):
        subprocess.run(argv, cwd=path, check=True)
    return path


def one_error_line(run):
    return [line for line in run.stdout.splitlines() if line.startswith('[ERROR]')]


@pytest.fixture(scope='module')
def user(tmp_path_factory):
    base = tempfile.mkdtemp(prefix='first-hour-')
    out = str(tmp_path_factory.mktemp('dist'))
    tarball = pack.build(out)
    collections = os.path.join(base, 'collections')
    # the docs' -p install: ansible-galaxy says the folder is not on the
    # configured path; ANSIBLE_COLLECTIONS_PATH then names it
    user = User(base)
    proc = user.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '-p',
                     collections, tarball], base)
    assert proc.returncode == 0, proc.stdout
    installed = os.path.join(collections, 'ansible_collections', 'nixdeploy', 'fleet')
    assert os.path.isfile(os.path.join(installed, 'MANIFEST.json')), proc.stdout
    # without it, the playbook is not found (as README.md and the quickstart say)
    fleet_folder(os.path.join(base, 'nopath'), inventory_in_outputs=True)
    lost = deploy(user, os.path.join(base, 'nopath'))
    assert lost.returncode != 0 and 'nixdeploy.fleet.deploy' in lost.stdout, lost.stdout
    user.env['ANSIBLE_COLLECTIONS_PATH'] = collections
    yield user
    shutil.rmtree(base, ignore_errors=True)


def deploy(user, cwd):
    return user.run([os.path.join(BIN, DEPLOY[0])] + DEPLOY[1:], cwd)


def test_an_inventory_outside_outputs_is_refused_until_asked_for(user):
    """Item 2: no fallback to configuration names; the option asks for them."""
    folder = fleet_folder(os.path.join(user.base, 'outside'))
    run = deploy(user, folder)
    said = ' '.join(run.stdout.split())
    assert run.returncode == 1, run.stdout
    assert 'the flake has no attribute inventory among its outputs' in said, run.stdout
    assert 'must sit inside outputs, as in outputs = { self, ... }: { inventory =' in said, said
    assert 'set source: configurations in the inventory file' in said, said
    assert 'PLAY [' not in run.stdout and 'Traceback' not in run.stdout, run.stdout
    # asked for on purpose: one host per configuration name, no tags
    config = os.path.join(folder, 'inventory', 'fleet.nix.yml')
    with open(config, 'a') as handle:
        handle.write('source: configurations\n')
    graph = user.run([os.path.join(BIN, 'ansible-inventory'), '--graph'], folder)
    assert graph.returncode == 0, graph.stdout
    assert 'web1' in graph.stdout and 'web2' in graph.stdout and '@vps' not in graph.stdout, \
        graph.stdout


def test_a_tag_equal_to_a_host_name_names_both(user):
    """Item 5: ansible-core's "can't add group to itself" no more."""
    folder = fleet_folder(os.path.join(user.base, 'tag'), tag='web2', inventory_in_outputs=True)
    run = deploy(user, folder)
    said = ' '.join(run.stdout.split())
    assert run.returncode == 1, run.stdout
    assert ('host web2: its tag web2 makes the group web2, which is also the name of a host, and '
            'Ansible cannot have a group and a host of one name: rename the tag or the host') \
        in said, run.stdout
    assert "can't add group to itself" not in said, run.stdout


def test_the_wrong_folder_says_where_to_cd(user):
    """Item 3: above the fleet's folder, in its inventory/, in a clone."""
    fleet = fleet_folder(os.path.join(user.base, 'work', 'fleet'), inventory_in_outputs=True)
    above = deploy(user, os.path.dirname(fleet))
    assert above.returncode == 1, above.stdout
    assert one_error_line(above) == [
        '[ERROR]: wrong folder: Ansible read no ansible.cfg in %s, so it has no inventory of your '
        'fleet; cd fleet and run again' % os.path.dirname(fleet)], above.stdout
    assert "Error processing keyword 'hosts'" not in above.stdout, above.stdout
    assert 'Origin:' not in above.stdout, above.stdout
    inside = deploy(user, os.path.join(fleet, 'inventory'))
    assert inside.returncode == 1, inside.stdout
    assert one_error_line(inside)[0].endswith('; cd %s and run again' % fleet), inside.stdout

    # a clone: the repository's own ansible.cfg and demo inventory, whose
    # flake is not there, with the try fleet below it
    clone = os.path.join(user.base, 'clone')
    with open(os.path.join(REPO, 'inventory', 'fleet.nix.yml')) as handle:
        demo = handle.read()
    assert yaml.safe_load(demo)['flake'] == '../.lab/demo-flake', demo
    write(os.path.join(clone, 'inventory', 'fleet.nix.yml'), demo)
    shutil.copy(os.path.join(REPO, 'ansible.cfg'), os.path.join(clone, 'ansible.cfg'))
    fleet_folder(os.path.join(clone, '.lab', 'try'), inventory_in_outputs=True)
    run = deploy(user, clone)
    said = ' '.join(run.stdout.split())
    assert run.returncode == 1, run.stdout
    assert ('this inventory is not the one of the fleet folder %s: if that is your fleet, '
            'cd .lab/try and run again' % os.path.join(clone, '.lab', 'try')) in said, run.stdout
