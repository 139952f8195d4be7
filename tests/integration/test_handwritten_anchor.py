"""benchmarks/handwritten/deploy.yml, the third deployer of table 10 (issue
45: the playbook an Ansible user writes by hand for the script's Nix
commands), deploys a 3-host scale lab for real, as benchmarks/scale.py runs
it (ScaleFleet.handwritten: its static inventory, forks, ssh settings and a
control path folder of its own):

1. a first system and then a new one: every host runs it and its system
   profile points to it, the state the plain script leaves;
2. the no-op redeploy changes nothing;
3. host key checking stays on: with a known_hosts that does not hold the
   hosts' keys the playbook fails and no host changes.

Judged from what each host holds (the lab's ``active`` file and the
profile's links, read from its folder). About 20 s.
"""

import os

import pytest

from benchmarks._fleet import RunError
from benchmarks.scale import ScaleFleet
from tests.collection import BIN

pytestmark = [pytest.mark.lab, pytest.mark.scale]

LAB = 'hwa'
HOSTS = 3


@pytest.fixture(scope='module')
def fleet(tmp_path_factory):
    if not os.path.exists(os.path.join(BIN, 'ansible-playbook')):
        pytest.fail('no ansible-playbook beside %s' % BIN)
    if os.geteuid() != 0:
        pytest.skip('a scale lab needs root')
    made = ScaleFleet(LAB, HOSTS, str(tmp_path_factory.mktemp('handwritten')), forks=50,
                      log=lambda _line: None)
    try:
        made.new_version()
        expected = made.expected()
        made.handwritten(made.forks)
        made.check_state(expected, 'first deploy')
        yield made
    finally:
        made.down()
    assert made.lab.leftovers() == []


def test_a_new_system_is_active_and_the_profile_points_to_it(fleet):
    before = fleet.active()
    fleet.new_version()
    expected = fleet.expected()
    assert all(expected[name] != before[name] for name in fleet.selected)
    run = fleet.handwritten(fleet.forks)
    assert run['rc'] == 0
    fleet.check_state(expected, 'deploy')
    assert fleet.active() == expected
    assert fleet.profiles() == expected
    # the benchmark's event counter ran: per host at least the copy, the
    # read, the profile and the switch (a start and a result each)
    assert run['events']['host_events'] >= 8 * HOSTS, run['events']


def test_the_noop_redeploy_changes_nothing(fleet):
    expected = fleet.expected()
    fleet.check_state(expected, 'before the no-op')
    log_before = sorted(os.listdir(fleet.workdir))
    fleet.handwritten(fleet.forks)
    fleet.check_state(expected, 'no-op')
    log = [n for n in sorted(os.listdir(fleet.workdir)) if n not in log_before
           and n.endswith('-handwritten.log')][0]
    with open(os.path.join(fleet.workdir, log)) as handle:
        text = handle.read()
    # the activation is skipped on every host, nothing reported changed
    assert 'changed=0' in text and 'changed=1' not in text, text[-2000:]


def test_host_key_checking_stays_on(fleet):
    expected = fleet.expected()
    fleet.new_version()
    known = fleet.lab.known_hosts
    saved = known + '.saved'
    os.rename(known, saved)
    try:
        with open(known, 'w') as handle:
            handle.write('')
        with pytest.raises(RunError) as failed:
            fleet.handwritten(fleet.forks)
    finally:
        os.rename(saved, known)
    with open(str(failed.value).rsplit('see ', 1)[1]) as handle:
        assert 'Host key verification failed' in handle.read()
    # nothing was copied or activated: still the system before
    fleet.check_state(expected, 'a run with unknown host keys')
