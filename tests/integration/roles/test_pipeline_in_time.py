"""Each host moves through eval, build, copy and activate on its own, in time
(`ansible-playbook nixdeploy.fleet.deploy`, lab `pit`, real ssh and Nix).

Four NixOS hosts in ONE run, with systems that cost what real ones cost
(tests/lab/heavy.py): `slowev` (first in the inventory) takes many CPU
seconds to evaluate, `slowbuild` builds for a long time, `fast1` and `fast2`
are quick. Before, evaluation and build were batch barriers: no host built
before the last was evaluated, none copied before the slowest build was done.
Now the fast hosts are active before the slow evaluation ends and before the
slow build ends; every host still deploys its new system.
"""

import os
import uuid

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_inventory
from tests.lab import heavy

pytestmark = [pytest.mark.lab, pytest.mark.here_only]

EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
BUILD = 'nixdeploy.fleet.deploy : Build the system of each host'
ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'

HOSTS = [{'name': 'slowev', 'persona': 'nixos'}, {'name': 'slowbuild', 'persona': 'nixos'},
         {'name': 'fast1', 'persona': 'nixos'}, {'name': 'fast2', 'persona': 'nixos'}]
FAST = ('fast1', 'fast2')
# CPU seconds of the slow evaluation and seconds of the slow build: long
# beside what a fast host's whole deploy takes here (about 5 s)
SLOW_EVAL_SECONDS = 20
SLOW_BUILD_SECONDS = 25


@pytest.fixture(scope='module')
def pit_fleet(make_lab, tmp_path_factory):
    lab = make_lab('pit', HOSTS)
    base = str(tmp_path_factory.mktemp('pit'))
    heavy.calibrate(folder=heavy.session_folder(tmp_path_factory))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    fleet = DeployFleet(lab, flake, inventory, base)
    run = fleet.deploy()
    assert run.rc == 0, run
    return fleet


def times(run, task):
    """{host: (started, ended)} of ``task``'s results."""
    return dict((r['host'], (r['started'], r['ended'])) for r in run.results(task))


def test_fast_hosts_are_active_before_the_slow_ones_are_evaluated_or_built(pit_fleet):
    flake, lab = pit_fleet.flake, pit_fleet.lab
    # a new version for every host, new to every store (both stacks share
    # the machine: a system the other built would not build again here); one
    # evaluation and one build are slow
    version = '2-%s' % uuid.uuid4().hex[:8]
    flake.set_all(version=version)
    flake.set_config('slowev', **heavy.heavy_config(seconds=SLOW_EVAL_SECONDS))
    flake.set_config('slowbuild', **heavy.heavy_config(build_seconds=SLOW_BUILD_SECONDS))
    # two evaluators on any machine (the default follows the cores)
    run = pit_fleet.deploy('-e', 'nix_eval_workers=2')
    assert run.rc == 0, run
    evals, builds, activations = times(run, EVAL), times(run, BUILD), times(run, ACTIVATE)
    assert set(activations) == {h['name'] for h in HOSTS}, run
    for host in FAST:
        # active before the first host of the inventory was even evaluated
        assert activations[host][1] < evals['slowev'][1], (host, activations, evals)
        # and before the slow build was done
        assert activations[host][1] < builds['slowbuild'][1], (host, activations, builds)
    # the slow build started when its own system was evaluated, not after
    # the slow evaluation (a batch barrier would have held it)
    assert builds['slowbuild'][0] < evals['slowev'][1], (builds, evals)
    # one evaluation for the batch, in two evaluators (and a third process
    # when an idle one took a host waiting behind the slow one)
    (last,) = [r['result'] for r in run.results(EVAL) if r['result'].get('evaluated_here')]
    assert last['evaluation']['workers'] == 2 and 2 <= last['nix_processes'] <= 3, last
    for host in lab.hosts:
        result = run.result(EVAL, host)['result']
        assert lab.active(host) == result['out_path'], host
        assert result['out_path'].endswith('-' + version), host
