"""A play batch as its hosts know it, and what they share of it
(plugin_utils/task/_run.py, _play_batch.py, _facts_in_flight.py)."""

import json
import multiprocessing
import os
import sys

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named

# module_utils import each other as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (  # noqa: E402
    BatchWork, Place, answer)


def test_unlink_host_args():
    own = {'nix_attr': 'a.b', 'nix_flake': 'path:/f'}
    out = _run.unlink_host_args({'attr': 'a.b', 'flake': 'path:/other'}, own, {'attr': 'nix_attr', 'flake': 'nix_flake'})
    assert out == {'attr': None, 'flake': 'path:/other'}


def test_facts_are_read_under_ansible_facts_first():
    """INJECT_FACTS_AS_VARS off (the 2.24 default): a fact exists only under
    ansible_facts; on, it is also a top-level var. Either way the fact wins
    over an inventory var of that name, and '' counts as unset."""
    path = '/nix/store/' + 'a' * 32 + '-system'
    assert _role_vars.fact_or_var({'ansible_facts': {'nix_out_path': path}}, 'nix_out_path') == path
    assert _role_vars.fact_or_var({'nix_out_path': path}, 'nix_out_path') == path
    assert _role_vars.fact_or_var({'ansible_facts': {'nix_out_path': path}, 'nix_out_path': 'x'},
                                  'nix_out_path') == path
    assert _role_vars.fact_or_var({'ansible_facts': {'nix_out_path': ''}, 'nix_out_path': 'x'},
                                  'nix_out_path') == 'x'
    assert _role_vars.fact_or_var({'ansible_facts': {}}, 'nix_out_path') is None
    # a per-host argument equal to the host's own fact means "each host's own"
    out = _run.unlink_host_args({'path': path}, {'ansible_facts': {'nix_out_path': path}},
                                {'path': 'nix_out_path'})
    assert out == {'path': None}


def test_play_batch():
    assert _run.play_batch({'inventory_hostname': 'a', 'ansible_play_batch': ['a', 'b']}) == ['a', 'b']
    assert _run.play_batch({'inventory_hostname': 'c', 'ansible_play_batch': ['a']}) == ['c']


def test_vars_of_reads_this_hosts_task_vars_and_the_others_hostvars():
    task_vars = {'inventory_hostname': 'a', 'x': 1, 'hostvars': {'a': {'x': 0}, 'b': {'x': 2}}}
    assert _run.vars_of(task_vars, 'a') is task_vars
    assert _run.vars_of(task_vars, 'b') == {'x': 2}


def test_batch_key_is_stable_and_order_of_dict_keys_does_not_matter():
    assert _run.short_digest('k', {'a': 1, 'b': 2}) == _run.short_digest('k', {'b': 2, 'a': 1})
    assert len(_run.short_digest('k')) == 32


BATCH = ['h1', 'h2', 'h3', 'h4']
TASK = type('Task', (), {'_uuid': 'parallel-task'})()


def _worker(folder, host, log, out):
    """One host's worker: it asks the batch's work, foreseeing the batch."""
    from ansible import constants as C  # pylint: disable=import-outside-toplevel
    C.DEFAULT_LOCAL_TMP = folder

    @named
    def serve(requests, put):
        with open(log, 'a') as handle:
            handle.write(' '.join(sorted(requests)) + '\n')
        for name, request in requests.items():
            put(name, {'answer': request.upper()})
    place = Place(host, TASK, {'inventory_hostname': host, 'ansible_play_batch': BATCH})
    got = answer(place, BatchWork('probe', [], host, serve,
                                  foresee=lambda hosts: dict((h, h) for h in hosts)))
    with open('%s.%s' % (out, host), 'w') as handle:
        json.dump([got.entry, got.here], handle)


def test_parallel_workers_share_one_wave_of_the_first_hosts_foresight(tmp_path):
    """As Ansible's forks do: four workers ask at once; the first to claim
    the slot foresees the batch, one wave serves all four, each host reads
    its own answer and one of them opened the wave."""
    log, out = str(tmp_path / 'log'), str(tmp_path / 'out')
    procs = [multiprocessing.Process(target=_worker, args=(str(tmp_path), host, log, out))
             for host in BATCH]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    with open(log) as handle:
        assert handle.read() == 'h1 h2 h3 h4\n'
    answers = {}
    for host in BATCH:
        with open('%s.%s' % (out, host)) as handle:
            answers[host] = json.load(handle)
    assert dict((h, a[0]) for h, a in answers.items()) == dict(
        (h, {'answer': h.upper()}) for h in BATCH)
    assert sorted(a[1] for a in answers.values()) == [False, False, False, True]


def test_facts_in_flight_fill_what_a_worker_does_not_see_yet(tmp_path):
    """The eval batch keeps every host's facts; the next batch task's first
    worker, forked before h2's eval result reached Ansible, still finds h2's
    instead of evaluating h2 again."""
    base = str(tmp_path)
    hosts = ['h2', 'h1']
    assert dict(_run.facts_in_flight(base, hosts).items()) == {}
    _run.record_facts(base, hosts, {'h1': {'nix_out_path': '/nix/store/a-1'},
                                    'h2': {'nix_out_path': '/nix/store/b-1'}})
    _run.record_facts(base, hosts, {'h2': {'nix_out_path': '/nix/store/b-2'}})
    kept = _run.facts_in_flight(base, ['h1', 'h2'])  # the play batch in any order
    assert dict(kept.items()) == {'h1': {'nix_out_path': '/nix/store/a-1'},
                                  'h2': {'nix_out_path': '/nix/store/b-2'}}
    assert dict(_run.facts_in_flight(base, ['h1']).items()) == {}  # another play batch
    # a host whose own computation failed loses what was kept for it
    _run.record_facts(base, hosts, {'h1': None})
    assert _run.facts_in_flight(base, hosts).get('h1') is None
    # h2 as this worker sees it: no facts yet -> the ones in flight
    seen = _run.with_facts({'nix_build_on': 'controller'}, kept['h2'])
    assert _role_vars.fact_or_var(seen, 'nix_out_path') == '/nix/store/b-2'
    assert seen['nix_build_on'] == 'controller' and seen.get('missing') is None
    # a host's own fact wins, and so does its variable (a host that skipped the
    # eval by its when and names its system itself: the batch's answer is not its own)
    own = {'ansible_facts': {'nix_out_path': '/nix/store/b-3'}}
    assert _role_vars.fact_or_var(_run.with_facts(own, kept['h2']), 'nix_out_path') \
        == '/nix/store/b-3'
    named = {'nix_out_path': '/nix/store/b-4'}
    assert _role_vars.fact_or_var(_run.with_facts(named, kept['h2']), 'nix_out_path') \
        == '/nix/store/b-4'
    assert _run.with_facts(own, None) is own


def test_recording_a_hosts_facts_writes_that_host_alone(tmp_path):
    """At 1,000 hosts the batch's process records facts host by host: each
    record writes one small file of that host, whatever the batch's size."""
    base = str(tmp_path)
    hosts = ['h%d' % i for i in range(1000)]
    for name in hosts:
        _run.record_facts(base, hosts, {name: {'nix_out_path': '/nix/store/x-' + name}})
    folder = _run.facts_dir(base, hosts)
    sizes = [os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)]
    assert len(sizes) == 1000 and max(sizes) < 100
    mtimes = dict((n, os.stat(os.path.join(folder, n)).st_mtime_ns) for n in os.listdir(folder))
    os.utime(folder)
    _run.record_facts(base, hosts, {'h500': {'nix_drv_path': '/nix/store/y.drv'}})
    changed = [n for n in os.listdir(folder)
               if os.stat(os.path.join(folder, n)).st_mtime_ns != mtimes.get(n)]
    assert len(changed) == 1
    assert _run.facts_in_flight(base, hosts).get('h500') == {
        'nix_out_path': '/nix/store/x-h500', 'nix_drv_path': '/nix/store/y.drv'}


def test_a_host_that_comes_late_keys_the_batch_as_its_first_host_saw_it(tmp_path):
    # host_pinned: c reaches the task after b of its batch failed, so its
    # ansible_play_batch lacks b; it must still share the batch's work, and a
    # new serial batch (d, e) must not be taken for part of it
    def view(host, batch):
        return {'inventory_hostname': host, 'ansible_play_batch': batch}
    base = str(tmp_path)

    def batch_of(scope, host, batch):
        found = _run.task_batch(base, scope, view(host, batch))
        # its key is its names' (as facts in flight key them), its size theirs
        assert found.key == _run.batch_id(list(found)) and len(found) == len(list(found))
        return list(found)
    assert batch_of('play', 'a', ['a', 'b', 'c']) == ['a', 'b', 'c']
    assert batch_of('play', 'c', ['a', 'c']) == ['a', 'b', 'c']
    assert batch_of('play', 'e', ['e', 'd']) == ['d', 'e']
    assert batch_of('play', 'd', ['d']) == ['d', 'e']
    # another play keeps its own batches
    assert batch_of('other', 'c', ['a', 'c']) == ['a', 'c']


def test_a_host_learns_its_batch_from_its_own_file(tmp_path):
    """1,000 hosts: the first records the batch once; every other host
    reads a file of its own, a few bytes whatever the batch's size, and
    knows the batch's key and size without its names (which only the
    host that computes for the batch reads)."""
    base = str(tmp_path)
    names = ['h%d' % i for i in range(1000)]

    def view(host):
        return {'inventory_hostname': host, 'ansible_play_batch': names}
    first = _run.task_batch(base, 'play', view('h3'))
    folder = os.path.join(_run.batch_folder(base), 'members-%s.d'
                          % _run.short_digest('play'))
    own_files = [n for n in os.listdir(folder) if not n.startswith('batch-')]
    assert len(own_files) == 1000
    assert max(os.path.getsize(os.path.join(folder, n)) for n in own_files) < 100
    os.unlink(os.path.join(folder, 'batch-%s.json' % first.key))
    other = _run.task_batch(base, 'play', view('h999'))
    assert other.key == first.key == _run.batch_id(names) and len(other) == 1000
    # the same work key for both, from the key alone; another batch or kind: another
    task = type('Task', (), {'_uuid': 't1'})()
    assert _run.work_key('copy', task, other, [1]) == _run.work_key('copy', task, first, [1])
    assert _run.work_key('copy', task, other, [1]) != _run.work_key('eval', task, other, [1])
    lone = _run.task_batch(base, 'play2', {'inventory_hostname': 'x', 'ansible_play_batch': ['x']})
    assert _run.work_key('copy', task, other, [1]) != _run.work_key('copy', task, lone, [1])


def test_play_uuid_walks_up_to_the_play():
    class Node(object):
        def __init__(self, uuid, parent=None, play=None):
            self._uuid, self._parent, self._play = uuid, parent, play
    play = Node('p1')
    task = Node('t1', parent=Node('b1', parent=Node('b0', play=play)))
    assert _run.play_uuid(task) == 'p1'
    assert _run.play_uuid(Node('t2')) == 't2'


def test_a_batchs_entries_read_as_the_mapping_they_stand_for(tmp_path):
    """What a phase reads of its batch's entries (``_run.BatchHosts``) is a
    mapping of the hosts with an entry file: a host without one is not in
    it, even when named; its size is the count the computing host kept, or
    the names it wrote; an entry whose value is None is an entry."""
    folder = str(tmp_path / 'entries')
    os.makedirs(folder)
    for host, entry in (('h1', {'out': 1}), ('h2', None)):
        with open(_run.entry_path(folder, host), 'w') as handle:
            json.dump(entry, handle)
    names = str(tmp_path / 'names.json')
    with open(names, 'w') as handle:
        json.dump(['h2', 'h1', 'h3'], handle)
    hosts = _run.BatchHosts(folder, names_path=names)
    assert len(hosts) == 3 and list(hosts) == hosts.keys() == ['h1', 'h2', 'h3']
    assert 'h1' in hosts and 'h2' in hosts and 'h3' not in hosts
    assert hosts['h1'] == {'out': 1} and hosts['h2'] is None
    try:
        hosts['h3']
    except KeyError as exc:
        assert exc.args == ('h3',)
    else:
        raise AssertionError('a host without an entry has no item')
    assert hosts.get('h3', 'none') == 'none'
    assert hosts.items() == [('h1', {'out': 1}), ('h2', None), ('h3', None)]
    assert hosts.values() == [{'out': 1}, None, None]
    assert len(_run.BatchHosts(folder, names=['h1'], count=1000)) == 1000
    assert len(_run.BatchHosts(folder)) == 0 and list(_run.BatchHosts(folder)) == []
