"""`python -m tests.lab try`: the folder it writes deploys as the quickstart says.

The command brings up two lab hosts (web1, web2, tagged vps) and writes a
fleet folder; in it, the quickstart's deploy command runs as written
(`ansible-playbook nixdeploy.fleet.deploy -l vps`, the folder's ansible.cfg
found in the working directory, env.sh sourced as README.txt says) and both
hosts switch. Then the one-host change README.txt suggests (web2's version
in hosts/web2.nix, committed) deploys web2 again and reuses web1's
evaluation: each system reads a file of its own. The lab goes down in the
test's own cleanup and nothing of it is left.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.collection import REPO
from tests.lab import Lab
from tests.lab.lab import index_held

# a test of the lab's own tool: the deploy's Nix, ansible-core and OpenSSH
# calls are the ones tests/integration/test_quickstart.py makes on both stacks
pytestmark = [pytest.mark.lab, pytest.mark.here_only]

NAME = 'trytest'
DEPLOY = 'ansible-playbook nixdeploy.fleet.deploy -l vps'


def user_env():
    """This process's environment without what would steer Ansible or Nix
    past the folder's own files (a user's shell has none of it)."""
    return dict((k, v) for k, v in os.environ.items()
                if not k.startswith('ANSIBLE_') and k not in ('NIX_CONFIG', 'NIX_SSHOPTS'))


@pytest.fixture
def try_lab():
    """The lab the command brings up, taken down after the test whatever
    happened; nothing of it may be left."""
    yield NAME
    lab = Lab(NAME)
    if lab.state:
        index = lab.state['index']
        with index_held(index):
            lab.down()
            left = lab.leftovers(index)
        assert left == [], left


def test_try_folder_deploys_as_the_quickstart_says(try_lab, tmp_path):
    folder = str(tmp_path / 'fleet')
    proc = subprocess.run([sys.executable, '-m', 'tests.lab', 'try', '--dir', folder,
                           '--hosts', '2', '--name', try_lab],
                          cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout
    lab = Lab(try_lab)
    assert sorted(lab.hosts) == ['web1', 'web2']

    # the quickstart's files, the lab's ssh files, the flake committed
    with open(os.path.join(REPO, 'examples', 'ansible.cfg')) as handle:
        assert (tmp_path / 'fleet' / 'ansible.cfg').read_text() == handle.read()
    for rel in ('inventory/fleet.nix.yml', 'inventory/group_vars/all.yml'):
        with open(os.path.join(REPO, 'examples', rel)) as handle:
            assert (tmp_path / 'fleet' / rel).read_text().startswith(handle.read()), rel
    for rel in ('ssh/config', 'ssh/id_ed25519', 'ssh/known_hosts', 'env.sh'):
        assert os.path.isfile(os.path.join(folder, rel)), rel
    config = (tmp_path / 'fleet' / 'ssh' / 'config').read_text()
    assert config.count('StrictHostKeyChecking yes') == 2, config
    tracked = subprocess.run(['git', '-C', folder, 'ls-files'], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout.split()
    for rel in ('flake.nix', 'lib.nix', 'fleet.json', 'busybox/busybox', 'hosts/web1.nix',
                'hosts/web2.nix', 'inventory/fleet.nix.yml', 'ansible.cfg'):
        assert rel in tracked, tracked
    assert not any(rel.startswith('ssh/') for rel in tracked), tracked
    status = subprocess.run(['git', '-C', folder, 'status', '--porcelain'],
                            stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert status.stdout == '', status.stdout
    readme = (tmp_path / 'fleet' / 'README.txt').read_text()
    for words in (DEPLOY, DEPLOY + ' --check --diff', 'nixdeploy.fleet.rollback -l web2',
                  'python -m tests.lab down --name %s' % try_lab, '. ./env.sh',
                  'in hosts/web2.nix set version to "2"',
                  'ansible-galaxy collection install -p ./collections nixdeploy.fleet',
                  'export ANSIBLE_COLLECTIONS_PATH=$PWD/collections'):
        assert words in readme, words

    # the quickstart's command, as written, where README.txt says to run it
    run = subprocess.run(['sh', '-c', '. ./env.sh && ' + DEPLOY], cwd=folder,
                         env=user_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stdout[-6000:]
    for host in ('web1', 'web2'):
        assert re.search(r'^%s\s+: ok=\d+\s+changed=[1-9]\d*\s+unreachable=0\s+failed=0'
                         % host, run.stdout, re.M), run.stdout[-4000:]
        # what the host itself says it runs
        active = lab.active(host) or ''
        assert active.endswith('-nixos-system-%s-1' % host), (host, active)
    assert os.path.isfile(os.path.join(folder, 'reports', 'nixdeploy-report.json'))

    # README.txt's change of one system, committed: web2 is evaluated again,
    # web1's evaluation of the commit before is reused
    module = tmp_path / 'fleet' / 'hosts' / 'web2.nix'
    module.write_text(module.read_text().replace('version = "1"', 'version = "2"'))
    subprocess.run(['git', '-C', folder, 'commit', '-qam', 'web2: version 2'], check=True)
    again = subprocess.run(['sh', '-c', '. ./env.sh && ' + DEPLOY], cwd=folder,
                           env=user_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                           check=False)
    assert again.returncode == 0, again.stdout[-6000:]
    assert re.search(r'^nixdeploy: evaluation: 1 evaluated, 1 reused \(from [0-9a-f]{7}\), '
                     r'0 cached$', again.stdout, re.M), again.stdout[-4000:]
    assert (lab.active('web2') or '').endswith('-nixos-system-web2-2'), lab.active('web2')
    assert (lab.active('web1') or '').endswith('-nixos-system-web1-1'), lab.active('web1')
