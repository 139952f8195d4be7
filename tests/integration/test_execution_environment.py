"""The execution environment definition: `ansible-builder create` makes a build
context that installs ansible-core, ansible-runner, the collection built from
this checkout and, through the collection's own dependency files, Nix.

No container is built (there is no container runtime here): the context is
checked, and ansible-builder's own introspection of the installed collection
must find Nix among the system dependencies.
"""

import os
import shutil
import subprocess

import pytest
import yaml

from tests.collection import BIN, REPO

BUILDER = os.path.join(BIN, 'ansible-builder')
GALAXY = os.path.join(BIN, 'ansible-galaxy')


def run(argv, cwd):
    # cwd outside the checkout: its ansible.cfg (collections_path) would make
    # ansible-galaxy find the collection "already installed"
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False, timeout=300)
    assert proc.returncode == 0, '%s\n%s' % (' '.join(argv), proc.stdout[-3000:])
    return proc.stdout


@pytest.fixture(scope='module')
def context(tmp_path_factory):
    if not os.path.exists(BUILDER):
        pytest.skip('ansible-builder is not installed')
    base = str(tmp_path_factory.mktemp('ee'))
    # the definition next to dist/ holding the collection tarball, as the
    # documented `ansible-galaxy collection build --output-path dist/` leaves it
    shutil.copy(os.path.join(REPO, 'execution-environment.yml'), base)
    run([GALAXY, 'collection', 'build', '--output-path', os.path.join(base, 'dist'), REPO], base)
    run([BUILDER, 'create', '-f', os.path.join(base, 'execution-environment.yml'),
         '-c', os.path.join(base, 'context'), '--output-filename', 'Containerfile'], base)
    return base


def test_definition_is_version_3():
    with open(os.path.join(REPO, 'execution-environment.yml')) as handle:
        definition = yaml.safe_load(handle)
    assert definition['version'] == 3
    deps = definition['dependencies']
    assert 'ansible_core' in deps and 'ansible_runner' in deps


def test_context_installs_ansible_and_the_collection(context):
    ctx = os.path.join(context, 'context')
    with open(os.path.join(ctx, 'Containerfile')) as handle:
        containerfile = handle.read()
    assert 'FROM $EE_BASE_IMAGE AS base' in containerfile
    assert 'ansible-core>=2.18' in containerfile and 'ansible-runner' in containerfile
    assert 'ansible-galaxy collection install' in containerfile
    assert 'COPY _build/collection /build/collection' in containerfile
    assert 'introspect' in containerfile and 'install-from-bindep' in containerfile
    with open(os.path.join(ctx, '_build', 'requirements.yml')) as handle:
        requirements = yaml.safe_load(handle)
    assert requirements['collections'] == [
        {'name': '/build/collection/nixdeploy-fleet.tar.gz', 'type': 'file'}]
    tarballs = os.listdir(os.path.join(ctx, '_build', 'collection'))
    assert len(tarballs) == 1 and tarballs[0].startswith('nixdeploy-fleet-'), tarballs


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
