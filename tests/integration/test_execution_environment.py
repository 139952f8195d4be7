"""The execution environment (EE): its definition, and the image `make ee` builds from it.

The definition: `ansible-builder create` makes a build context that installs ansible-core,
ansible-runner, the collection built from this checkout and, through the collection's own
dependency files, Nix, on a Debian base; ansible-builder's introspection of the installed
collection finds Nix among the system dependencies.

The image (localhost/nixdeploy-fleet-ee:latest, built by `make ee` before the suite uses it):
run as AWX runs a job, as an arbitrary UID in group 0 that is not in /etc/passwd, with
HOME=/runner and the project at /runner/project, Nix evaluates and builds a flake (a
derivation built by Debian's static busybox, as the lab's systems are), keeps GC roots, and
the collection, ansible-runner and the ssh client are there: with the store in the image and
with an empty volume at /nix. No network in these containers (--network=none).
"""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.collection import BIN, REPO
from tests.galaxy import pack
from tests.lab.fixtures import BUSYBOX, nix_system

BUILDER = os.path.join(BIN, 'ansible-builder')
GALAXY = os.path.join(BIN, 'ansible-galaxy')
IMAGE = os.environ.get('NIXDEPLOY_EE_IMAGE', 'localhost/nixdeploy-fleet-ee:latest')
# AWX on a container group (OpenShift's restricted policy): some UID of the namespace's
# range, group 0, no entry in the image's /etc/passwd
UID = '1000650000'


def run(argv, cwd):
    # cwd outside the checkout: its ansible.cfg (collections_path) would make
    # ansible-galaxy find the collection "already installed"
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False, timeout=300)
    assert proc.returncode == 0, '%s\n%s' % (' '.join(argv), proc.stdout[-3000:])
    return proc.stdout


def definition():
    with open(os.path.join(REPO, 'execution-environment.yml')) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope='module')
def context(tmp_path_factory):
    if not os.path.exists(BUILDER):
        pytest.skip('ansible-builder is not installed')
    base = str(tmp_path_factory.mktemp('ee'))
    # the definition next to dist/ holding the collection tarball, as the
    # documented `python3 tests/galaxy/pack.py build dist/` leaves it,
    # and next to ee/ (nix.conf)
    shutil.copy(os.path.join(REPO, 'execution-environment.yml'), base)
    shutil.copytree(os.path.join(REPO, 'ee'), os.path.join(base, 'ee'))
    # what git tracks, as a release packs it (tests/galaxy/pack.py)
    pack.build(os.path.join(base, 'dist'))
    run([BUILDER, 'create', '-f', os.path.join(base, 'execution-environment.yml'),
         '-c', os.path.join(base, 'context'), '--output-filename', 'Containerfile'], base)
    return base


def test_definition_is_version_3_on_debian():
    ee = definition()
    assert ee['version'] == 3
    assert 'debian' in ee['images']['base_image']['name']
    assert ee['options']['package_manager_path'] == '/usr/bin/apt-get'
    deps = ee['dependencies']
    assert 'ansible_core' in deps and 'ansible_runner' in deps


def test_ansible_core_is_the_one_the_current_stack_tests():
    """The EE's ansible-core is the one pinned for the current stack, and the collection
    supports it (meta/runtime.yml)."""
    pin = definition()['dependencies']['ansible_core']['package_pip']
    with open(os.path.join(REPO, 'tests', 'stack', 'constraints-current.txt')) as handle:
        tested = [line.strip() for line in handle if line.startswith('ansible-core')]
    assert [pin] == tested, 'raise both pins together'
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as handle:
        requires = yaml.safe_load(handle)['requires_ansible']
    low = tuple(int(x) for x in re.search(r'>=\s*([\d.]+)', requires).group(1).split('.')[:2])
    have = tuple(int(x) for x in pin.split('==')[1].split('.')[:2])
    assert have >= low, (pin, requires)


def test_context_installs_ansible_and_the_collection(context):
    ctx = os.path.join(context, 'context')
    with open(os.path.join(ctx, 'Containerfile')) as handle:
        containerfile = handle.read()
    assert 'FROM $EE_BASE_IMAGE AS base' in containerfile
    assert 'ARG PKGMGR="/usr/bin/apt-get"' in containerfile
    pin = definition()['dependencies']['ansible_core']['package_pip']
    assert pin in containerfile and 'ansible-runner' in containerfile
    assert 'ansible-galaxy collection install' in containerfile
    assert 'COPY _build/collection /build/collection' in containerfile
    assert 'introspect' in containerfile and 'install-from-bindep' in containerfile
    # apt's lists before the first install; Debian's pip instead of ensurepip
    assert containerfile.index('apt-get update') < containerfile.index('$PKGMGR install $PYPKG')
    assert 'pip_install $PYCMD' not in containerfile
    assert 'RUN rm -f /etc/pip.conf' in containerfile
    with open(os.path.join(ctx, '_build', 'requirements.yml')) as handle:
        requirements = yaml.safe_load(handle)
    assert requirements['collections'] == [
        {'name': '/build/collection/nixdeploy-fleet.tar.gz', 'type': 'file'}]
    tarballs = os.listdir(os.path.join(ctx, '_build', 'collection'))
    assert len(tarballs) == 1 and tarballs[0].startswith('nixdeploy-fleet-'), tarballs
    assert os.path.exists(os.path.join(ctx, '_build', 'nix', 'nix.conf'))


def test_introspection_finds_nix_in_the_collection(context, tmp_path):
    ctx = os.path.join(context, 'context')
    tarball = os.path.join(ctx, '_build', 'collection',
                           os.listdir(os.path.join(ctx, '_build', 'collection'))[0])
    run([GALAXY, 'collection', 'install', '--force', '-p', str(tmp_path), tarball], str(tmp_path))
    out = run([BUILDER, 'introspect', str(tmp_path)], str(tmp_path))
    deps = yaml.safe_load(out.split('---', 1)[1])
    system = ' '.join(deps['system'])
    assert 'nix [platform:rpm]' in system and 'nix-bin [platform:dpkg]' in system, out
    assert 'openssh-client' in system, out


# --- the image ---------------------------------------------------------------------------

FLAKE = """{
  outputs = { self }: {
    answer = 6 * 7;
    packages.%(system)s.default = derivation {
      name = "ee-hello";
      system = "%(system)s";
      builder = "${./bb}/busybox";
      args = [ "sh" "-c" "echo hello from the EE > $out" ];
    };
  };
}
"""

# what a job does with Nix: evaluate, build with a GC root in the project, one more root by
# hand, the roots listed, a garbage collection that keeps them
NIX_JOB = r"""
set -eu
echo "who: $(id -u):$(id -g) $(id -un) HOME=$HOME"
nix eval --json path:.#answer
nix build -o /runner/project/result path:.
cat /runner/project/result
nix-store --add-root /runner/project/root2 --realise "$(readlink /runner/project/result)" >/dev/null
nix-store --gc --print-roots | grep '^/runner/project/' | sort
nix-collect-garbage >/dev/null 2>&1
cat /runner/project/root2
"""


def podman(*argv, timeout=60):
    env = dict(os.environ, CONTAINERS_CONF=os.path.join(REPO, 'ee', 'containers.conf'))
    return subprocess.run(['podman'] + list(argv), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False,
                          timeout=timeout)


@pytest.fixture(scope='module')
def image():
    if shutil.which('podman') is None:
        pytest.skip('podman is not installed (make ee installs it and builds the image)')
    proc = podman('image', 'exists', IMAGE)
    assert proc.returncode == 0, '%s is missing: build it with `make ee`' % IMAGE
    return IMAGE


@pytest.fixture
def runner_dir(tmp_path):
    """A private data dir as ansible-runner mounts it at /runner: project/ holding a flake.
    Group 0 may write it, as AWX's container group gives the job's UID."""
    project = tmp_path / 'project'
    (project / 'bb').mkdir(parents=True)
    shutil.copy(BUSYBOX, str(project / 'bb' / 'busybox'))
    (project / 'flake.nix').write_text(FLAKE % {'system': nix_system()})
    for root, dirs, files in os.walk(str(tmp_path)):
        for name in [root] + [os.path.join(root, f) for f in files]:
            os.chown(name, -1, 0)
            os.chmod(name, os.stat(name).st_mode | 0o070)
    return tmp_path


def job(image, runner_dir, script, *options):
    """podman run as ansible-runner starts a job container (--workdir /runner/project, the
    private data dir at /runner, --group-add=root, --ipc=host) as AWX's UID, and as on a
    Kubernetes container group: no passwd entry made by the engine (the image's entrypoint
    adds one) and HOME=/runner."""
    return podman('run', '--rm', '--network=none', '--passwd=false', '--user', UID + ':0',
                  '--group-add=root', '--ipc=host', '-e', 'HOME=/runner',
                  '-e', 'NIX_CONFIG=substituters =', '--workdir', '/runner/project',
                  '-v', '%s:/runner:Z' % runner_dir, *options, image, 'sh', '-c', script)


def check_nix_job(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == 'who: %s:0 %s HOME=/runner' % (UID, UID), proc.stdout
    assert lines[1] == '42'
    assert lines[2] == 'hello from the EE'
    assert [line.split(' -> ')[0] for line in lines[3:5]] == [
        '/runner/project/result', '/runner/project/root2'], proc.stdout
    assert lines[5] == 'hello from the EE', proc.stdout


def test_image_has_the_tools_a_job_needs(image, runner_dir):
    pin = definition()['dependencies']['ansible_core']['package_pip'].split('==')[1]
    proc = job(image, runner_dir, 'ansible --version | head -n 1; ansible-runner --version; '
               'nix --version; ssh -V 2>&1; command -v ssh-agent; python3 --version; '
               'ansible-doc -t module nixdeploy.fleet.nix_activate | head -n 1; '
               'ansible-doc -t inventory nixdeploy.fleet.nix | head -n 1; '
               'grep "^store\\|^sandbox\\|^allow-import" /etc/nix/nix.conf; '
               # the build machine's pip configuration stays out of the image
               'test -e /etc/pip.conf && echo pip.conf-left || echo no-pip.conf')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert 'ansible [core %s]' % pin in out, out
    assert re.search(r'^2\.4\.\d+$', out, re.M), out
    assert re.search(r'^nix \(Nix\) 2\.\d+', out, re.M), out
    assert 'OpenSSH_' in out and '/usr/bin/ssh-agent' in out, out
    assert 'nixdeploy.fleet.nix_activate' in out and 'nixdeploy.fleet.nix' in out, out
    assert 'store = local' in out and 'sandbox = false' in out, out
    # evaluation never runs a builder in the EE (docs/security.md)
    assert 'allow-import-from-derivation = false' in out, out
    assert 'no-pip.conf' in out and 'pip.conf-left' not in out, out


def test_nix_in_the_image_store_as_an_arbitrary_uid(image, runner_dir):
    check_nix_job(job(image, runner_dir, NIX_JOB))


def test_nix_with_an_empty_volume_at_nix(image, runner_dir, tmp_path_factory):
    """A persistent store: an empty folder of group 0 at /nix (what a PVC with fsGroup 0
    gives), filled by the first job and used again by the next one."""
    store = tmp_path_factory.mktemp('nix-volume')
    os.chown(str(store), -1, 0)
    os.chmod(str(store), 0o2775)
    check_nix_job(job(image, runner_dir, NIX_JOB, '-v', '%s:/nix' % store))
    assert os.path.isdir(os.path.join(str(store), 'var', 'nix', 'db'))
    # the next job finds the build in the volume: nothing to build
    proc = job(image, runner_dir, 'nix build --dry-run -o /runner/project/again path:. 2>&1; '
               'nix path-info "$(readlink /runner/project/root2)"', '-v', '%s:/nix' % store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'will be built' not in proc.stdout, proc.stdout
    assert '-ee-hello' in proc.stdout, proc.stdout
