"""A job on a VM execution node, as AWX runs one there (node.py):
``ansible-runner transmit`` | ``ansible-runner worker --private-data-dir=DIR
--delete`` on the node as its non-root user, which starts the EE with
rootless podman, ``--user=root``, ``--network slirp4netns:enable_ipv6=true``
and ``--pull=missing`` | ``ansible-runner process``. The lab's hosts are
reached through slirp4netns (the node user's own connections), not the
host's network namespace.
"""

import os

import pytest

from tests.collection import set_stats_of
from tests.integration.ee import node
from tests.integration.ee.jobs import IMAGE, NAMES

pytestmark = pytest.mark.lab


def test_job_on_an_execution_node_runs_the_ee_with_rootless_podman(deployed_awx, execution_node):
    awx = deployed_awx
    lab, flake = awx.lab, awx.flake
    before = dict((h, lab.active(h)) for h in NAMES)
    flake.set_all(version='v1', behaviour='ok')
    awx.commit('version v1, from the execution node')
    job = awx.job(on_node=True)
    assert job.status == 'successful', job.tail()
    stats = set_stats_of(job.artifacts)['nixdeploy']
    assert {h: r['outcome'] for h, r in stats.items()} == dict.fromkeys(NAMES, 'switched'), stats
    for host in NAMES:
        assert lab.active(host) == stats[host]['path'] != before[host], host

    # the worker (the node's user) started the EE with AWX's options, its own
    # copy of the job mounted at /runner
    command = job.command
    assert command[:3] == ['podman', 'run', '--rm'], command
    at = command.index(IMAGE)
    assert command[at - 4:at] == ['--user=root', '--network', 'slirp4netns:enable_ipv6=true',
                                  '--pull=missing'], command
    mounts = [command[i + 1] for i, arg in enumerate(command) if arg == '-v']
    job_dir = node.job_dir(os.path.basename(job.private))
    assert '%s/:/runner/:Z' % job_dir in mounts, mounts
    # --delete: the node keeps nothing of the job
    assert not os.path.exists(job_dir)
    print('execution node job: %.1f s (node prepared in %.1f s, image copied in %.1f s)'
          % (job.seconds, execution_node['prepare_seconds'], execution_node['image_seconds']))
