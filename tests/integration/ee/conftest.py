"""The EE tests' lab, repository and jobs (jobs.py), one for the folder; the
execution node (node.py) for the tests that use it."""

import os
import shutil
import time

import pytest

from tests.deploy_fleet import commit_project, write_project
from tests.integration.host_key_vars import check_host_keys
from tests.lab import Lab

pytest.importorskip('ansible_runner')

from tests.integration.ee import node  # noqa: E402
from tests.integration.ee.jobs import (  # noqa: E402
    CONTAINERS_CONF, HOSTS, IMAGE, LAB, AwxFleet, podman)


@pytest.fixture(scope='package')
def awx(tmp_path_factory):
    if shutil.which('podman') is None:
        pytest.skip('podman is not installed: the EE tests run the image with it '
                    '(apt-get install podman runc; make ee)')
    if podman('image', 'exists', IMAGE, check=False).returncode != 0:
        pytest.fail('the EE image %s is missing: run `make ee` first' % IMAGE)
    lab = Lab(LAB).up(HOSTS)
    try:
        base = str(tmp_path_factory.mktemp('awx'))
        upstream = os.path.join(base, 'infra')
        flake, secret = write_project(upstream, lab, key_dir=os.path.join(base, 'keys'),
                                      tags={'a1': ['vps'], 'a2': ['vps']})
        # ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False for every job (AWX,
        # navigator), which beats ansible.cfg: the project's group_vars turn checking on
        check_host_keys(os.path.join(upstream, 'inventory', 'group_vars', 'all.yml'))
        commit_project(upstream, 'host keys checked under ansible-runner')
        fleet = AwxFleet(lab, flake, secret, upstream, base)
        started = time.time()
        fleet.inventory_update()
        fleet.inventory_seconds = round(time.time() - started, 1)
        yield fleet
    finally:
        lab.down()


@pytest.fixture(scope='package')
def execution_node():
    """The node's user with rootless podman and the EE in its storage; skips
    with podman's own reason where rootless podman cannot run."""
    reason, seconds = node.prepare(CONTAINERS_CONF)
    if reason:
        pytest.skip('no VM execution node here: %s' % reason)
    copied = node.load_image(IMAGE, CONTAINERS_CONF)
    print('execution node: prepared in %.1f s, EE image copied in %.1f s' % (seconds, copied))
    return {'prepare_seconds': seconds, 'image_seconds': copied}


@pytest.fixture
def deployed_awx(awx):
    """``awx`` with a system on every host (``ensure_deployed``), set up as
    a fixture: ``--durations`` then shows that first job apart from the
    test's own (a test that comes first in its package pays for it)."""
    awx.ensure_deployed()
    return awx
