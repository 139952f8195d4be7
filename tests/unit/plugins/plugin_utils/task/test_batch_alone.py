"""When a host is served for itself only (plugin_utils/task/_action.py
``_batch_work.answer``, _work_keys.py): a retry of its task (``until``/``retries``:
Ansible runs the action again in the same worker) is served again instead
of reading what the first attempt stored, and a host whose key arguments
differ from the batch's does not make a server serve the whole batch. The
real action base runs (``NixdeployAction.run``), as a worker runs it."""

import os
import sys
import time

from ansible import constants as C

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _run, _work_keys)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
# run_probe: the test action's real run for a host (a fixture)
from tests.unit.plugins.plugin_utils.task.test_action import (  # noqa: F401,E402  pylint: disable=unused-import
    Probe, action_of, run_probe, waves)

BATCH = ('h1', 'h2', 'h3')


def test_a_retry_computes_its_answer_again_for_its_host(run_probe):
    first = run_probe({'do': 'batch', 'value': 'v'}, host='h1', batch=BATCH)
    assert first['answer'] == 'H1/v' and first['here'] is True
    # the same worker runs h1's task again (a retry): a request of its own,
    # to a server of its own, not the stored answer
    again = run_probe({'do': 'batch', 'value': 'v'}, host='h1', batch=BATCH)
    assert again['here'] is True and again['hosts'] == ['h1']
    # the batch is not computed again for every host; h2's first run reads it
    other = run_probe({'do': 'batch', 'value': 'v'}, host='h2', batch=BATCH)
    assert other['answer'] == 'H2/v' and other['here'] is False
    assert waves() == [list(BATCH), ['h1']]


def test_a_retrys_server_is_its_own_and_serves_again(tmp_path, monkeypatch):
    """The key the action base gives a batch server (``work_key``): a
    retry's is its own, so its server serves it again (a real fork) and
    answers anew; another host's first ask still reads the answer the
    first server gave it, foreseen."""
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    counter = str(tmp_path / 'runs')
    task = type('Task', (), {'_uuid': 'eval-task'})()
    hosts = _run.task_batch(str(tmp_path), 'play', {'inventory_hostname': 'h1',
                                                    'ansible_play_batch': list(BATCH)})

    @named
    def serve(requests, put):
        with open(counter, 'a') as handle:
            handle.write('run\n')
        with open(counter) as handle:
            runs = len(handle.read().split())
        for host in requests:
            put(host, {'answer': '%s-%d' % (host, runs)})

    def ask(host):
        _work_keys.new_run(host, {})  # what the action base does at each run
        server = BatchServer(str(tmp_path), 'eval', _run.work_key('eval', task, hosts, ['opts']))
        server.request(host, 'opts', serve, foresee=lambda: dict((h, 'opts') for h in BATCH))
        return server.answer(host, 'opts', serve, timeout=60)[0]['answer']

    assert ask('h1') == 'h1-1'
    assert ask('h1') == 'h1-2'  # the retry: served again
    assert ask('h2') == 'h2-1'  # another host's first ask: the batch's answer
    deadline = time.monotonic() + 20
    while os.path.getsize(counter) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(counter) as handle:
        assert handle.read().split() == ['run', 'run']


def test_a_host_whose_key_differs_computes_for_itself_only(run_probe):
    """h2's key arguments differ from the batch's (the first host's): its
    server serves its own request alone, foreseeing nobody (the slot is
    h1's); the batch is served once, and h3 reads it."""
    first = run_probe({'do': 'batch', 'value': 'v'}, host='h1', batch=BATCH)
    odd = run_probe({'do': 'batch', 'value': 'w'}, host='h2', batch=BATCH)
    third = run_probe({'do': 'batch', 'value': 'v'}, host='h3', batch=BATCH)
    assert waves() == [list(BATCH), ['h2']]
    assert first['answer'] == 'H1/v' and first['here'] is True
    assert odd['answer'] == 'H2/w' and odd['here'] is True
    assert third['answer'] == 'H3/v' and third['here'] is False


def test_each_loop_item_is_a_batch_of_its_own(tmp_path, monkeypatch):
    """A loop (its items run in the same worker): each item's work is
    shared by the batch and computed once, whether the items differ in a
    key argument or not; an item is no retry of the one before."""
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    for values in (('a', 'b'), ('v', 'v')):
        before = len(waves())
        answers = []
        for item, value in zip(('first', 'second'), values):
            for host in ('h1', 'h2'):
                task_vars = {'inventory_hostname': host, 'ansible_play_batch': ['h1', 'h2'],
                             'hostvars': {}, 'ansible_loop_var': 'item', 'item': item}
                out = action_of(Probe, {'do': 'batch', 'value': value}, uuid=values[0]).run(
                    task_vars=task_vars)
                answers.append((host, out['answer'], out['here']))
        assert waves()[before:] == [['h1', 'h2'], ['h1', 'h2']]
        assert answers == [('h1', 'H1/%s' % values[0], True), ('h2', 'H2/%s' % values[0], False),
                           ('h1', 'H1/%s' % values[1], True), ('h2', 'H2/%s' % values[1], False)]
