"""The EE tests' lab, repository and job runner (jobs.py), one for the folder."""

import os
import shutil
import time

import pytest

from tests.deploy_fleet import commit_project, write_project
from tests.integration.host_key_vars import check_host_keys
from tests.lab import Lab

pytest.importorskip('ansible_runner')

from tests.integration.ee.jobs import (  # noqa: E402
    CONTAINERS_CONF, HOSTS, IMAGE, LAB, AwxFleet, podman)


@pytest.fixture(scope='package')
def awx(tmp_path_factory):
    if shutil.which('podman') is None:
        pytest.skip('podman is not installed: the EE tests run the image with it '
                    '(apt-get install podman runc; make ee)')
    previous = os.environ.get('CONTAINERS_CONF')
    os.environ['CONTAINERS_CONF'] = CONTAINERS_CONF   # for the podman ansible-runner starts
    try:
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
    finally:
        if previous is None:
            os.environ.pop('CONTAINERS_CONF', None)
        else:
            os.environ['CONTAINERS_CONF'] = previous
