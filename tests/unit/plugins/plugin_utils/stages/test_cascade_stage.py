"""nix_copy_closure's cascade for a play batch (plugin_utils/copy/_cascade_stage.py
CascadeStage, driving copy/_peer.py's CascadeDriver) over three targets with
real Nix stores of their own (copy_target.py): the first host's task runs
the batch's cascade under the real batch files and every host reads its
own entry; hosts that hold the closure send it on in real hops (copy-hop.sh
on the sender, a destination-constrained ssh-agent, Nix's ssh-ng to the
receiver's nix-daemon; only ssh itself is faked); a failed hop is reported
with its hop and the controller pushes instead; a host whose copy fails is
failed naming the host and its hops; a host the cascade left out (its
system not built when the cascade ran) gets the controller's push; check
mode runs no cascade and sends nothing; a host ssh cannot reach is a lost
connection, named."""

import sys

import pytest
from ansible.plugins.loader import connection_loader

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.stages.copy_target import (
    Closure, FakeSsh, StoreTarget, copy_args)
from tests.unit.plugins.plugin_utils.stages.stage_nix import controller_folders
from tests.unit.plugins.plugin_utils.stages.test_copy_stage import task_host
from tests.unit.plugins.plugin_utils.task.batch_place import ServedBy, batch_answer

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _copy_stage)

HOSTS = ('h1', 'h2', 'h3')
ADDRESSES = {'h1': '127.0.0.1', 'h2': '127.0.0.2', 'h3': '127.0.0.3'}


@pytest.fixture(scope='module')
def closure(tmp_path_factory):
    return Closure(tmp_path_factory.mktemp('cascade-closure') / 'nix')


class Play:
    """A play batch of ``HOSTS``, each a target of its own deploying
    ``path`` (the fact nix_out_path); ``entry(host)`` runs that host's task:
    a CopyStage in cascade mode whose ``batch_answer`` is the action's, over
    the real batch files (served once, by the server of the first host to
    get there: ``computed`` names the hosts whose servers ran a cascade);
    ``given``: the task's arguments besides its mode."""

    def __init__(self, tmp_path, ssh, path, hosts=HOSTS, untrusted=(), given=None):
        self.ssh, self.names, self.given = ssh, tuple(hosts), dict(given or {})
        self.targets = dict((h, StoreTarget(tmp_path / h, address=ADDRESSES[h], ssh=ssh,
                                            trusted=h not in untrusted)) for h in hosts)
        self.hostvars = dict((h, {'inventory_hostname': h, 'ansible_host': ADDRESSES[h],
                                  'ansible_facts': {'nix_out_path': path}}) for h in hosts)
        self.served = ServedBy(tmp_path / 'served.log')
        self.hosts = []

    def deploys(self, host, path):
        self.hostvars[host]['ansible_facts']['nix_out_path'] = path

    def entry(self, host, check_mode=False):
        task_vars = dict(self.hostvars[host], hostvars=self.hostvars,
                         ansible_play_batch=list(self.names))
        args, filled = copy_args(task_vars, copy_mode='cascade', **self.given)
        target = task_host(self.targets[host], host, self.ssh)
        self.hosts.append(target)

        # not the closures' listing: the cascade's
        count = self.served.hook(host, 'copy')
        return _copy_stage.CopyStage(host, args, task_vars, target, check_mode=check_mode,
                                     filled=filled,
                                     batch_answer=batch_answer(host, task_vars, self.names,
                                                               count)).run()

    @property
    def computed(self):
        return self.served.hosts()

    def close(self):
        for host in self.hosts:
            host.close()


@pytest.fixture
def ssh(tmp_path, monkeypatch):
    controller_folders(tmp_path, monkeypatch)
    # the ssh plugin's options' definitions, as in a run: the cascade asks
    # them whether ssh checks each other host's key
    connection_loader.get('ssh', class_only=True)
    return FakeSsh(tmp_path, monkeypatch)


@pytest.fixture
def play(tmp_path, ssh, closure):
    batch = Play(tmp_path, ssh, closure.top)
    yield batch
    batch.close()


@pytest.fixture
def pair(tmp_path, ssh, closure):
    """A batch of h1 and h2 (fewer hops: a test that needs no third host)."""
    batch = Play(tmp_path, ssh, closure.top, hosts=('h1', 'h2'))
    yield batch
    batch.close()


def test_the_holder_sends_on_and_each_host_reads_its_own_entry(play, closure):
    play.targets['h1'].give(closure.top)
    h1 = play.entry('h1')
    h2, h3 = play.entry('h2'), play.entry('h3')
    assert play.computed == ['h1']
    assert (h1['mode'], h1['changed'], h1['copied_from']) == ('cascade', False, None)
    for result in (h2, h3):
        assert 'failed' not in result and result['hop_errors'] == [], result
        assert result['changed'] is True and result['paths_sent'] == 2
        # from a host that held it: nothing of it crossed the controller's uplink
        assert result['copied_from'] in ('h1', 'h2', 'h3')
        assert result['cascade']['controller_paths'] == 0
    assert sorted(h1['sent_to'] + h2['sent_to'] + h3['sent_to']) == ['h2', 'h3']
    for host in HOSTS:
        assert play.targets[host].lacks([closure.top, closure.base]) == []
        assert play.targets[host].gc_root(host) == closure.top


def test_a_failed_hop_is_reported_with_its_hop_and_the_controller_pushes(pair, closure):
    pair.targets['h1'].give(closure.top)
    # h1's sshd forwards no agent: it cannot send
    pair.targets['h1'].set(forwards_agent=False)
    pair.entry('h1')
    h2 = pair.entry('h2')
    (error,) = h2['hop_errors']
    assert error.startswith("h1 -> h2: the sender's sshd did not forward the agent")
    assert h2['copied_from'] == 'controller' and h2['paths_sent'] == 2
    assert h2['warnings'] == ['h2: cascade hop %s; got the closure from controller instead'
                              % error]
    assert pair.targets['h2'].lacks([closure.top]) == []


def test_a_host_the_cascade_cannot_copy_to_fails_naming_its_hops(tmp_path, ssh, closure):
    # h3's nix-daemon does not trust the user and nothing is signed
    play = Play(tmp_path, ssh, closure.top, hosts=('h1', 'h2'), untrusted=('h2',))
    try:
        play.targets['h1'].give(closure.top)
        play.entry('h1')
        h2 = play.entry('h2')
    finally:
        play.close()
    assert h2['failed'] is True and h2['phase'] == 'copy' and h2['connection_lost'] is False
    assert h2['msg'].startswith('h2: the cascade could not copy %s: h1 -> h2: ' % closure.top)
    assert '; controller -> h2: h2: the target refuses unsigned paths' in h2['msg']
    assert play.targets['h2'].lacks([closure.top]) == [closure.top]


def test_a_host_the_cascade_left_out_gets_the_controllers_push(pair, closure):
    # h2 deploys a system the controller had not built when h1 ran the cascade
    pair.deploys('h2', closure.other)
    pair.targets['h1'].give(closure.top)
    pair.entry('h1')
    closure.build_other()
    h2 = pair.entry('h2')
    assert pair.computed == ['h1']
    assert (h2['copied_from'], h2['sent_to'], h2['hop_errors']) == ('controller', [], [])
    assert h2['mode'] == 'cascade' and h2['paths_sent'] == 2 and 'cascade' not in h2
    assert pair.targets['h2'].lacks([closure.other, closure.base]) == []


def test_check_mode_runs_no_cascade_and_sends_nothing(pair, closure):
    result = pair.entry('h2', check_mode=True)
    assert pair.computed == [] and pair.ssh.log() == []
    assert (result['paths_missing'], result['paths_sent'], result['changed']) == (2, 2, True)
    assert pair.targets['h2'].lacks([closure.top]) == [closure.top]


def test_a_host_ssh_cannot_reach_fails_as_a_lost_connection_naming_it(pair, closure):
    pair.targets['h1'].give(closure.top)
    pair.targets['h2'].set(down=True)
    assert pair.entry('h1')['changed'] is False
    h2 = pair.entry('h2')
    assert h2['failed'] is True and h2['connection_lost'] is True
    assert h2['msg'].startswith('h2: cannot reach the host over ssh to copy: ')
