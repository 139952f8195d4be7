"""Parallel evaluators (plugin_utils/evaluation/pool/_pool.py, stage/_stage.py):
each host's answer delivered as soon as its evaluator traces it, a slow host
holding only itself, memory bounded by restarting an evaluator between
hosts, a broken host costing one process. Real Nix, a lab fixture flake
with heavy knobs (tests/lab/heavy.py)."""

import shutil
import sys
import threading
import time

import pytest

from tests.collection import collections_path
from tests.lab import heavy
from tests.lab.fixtures import FleetFlake

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._batch import (  # noqa: E402
    EvalStage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool import (  # noqa: E402
    _pool as eval_pool)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')

OPTIONS = {'substituters': ''}


def requests_for(flake, names):
    return dict((name, {'flake': flake.ref, 'attr': flake.attr(name).split('.'),
                        'attr_string': flake.attr(name), 'platform': 'nixos'})
                for name in names)


def run_stage(flake, names, **kwargs):
    """(entries by host, {host: seconds after the start it was answered},
    the batch's figures)."""
    entries, when, lock = {}, {}, threading.Lock()
    start = time.monotonic()

    def put(host, entry):
        with lock:
            entries[host] = entry
            when[host] = time.monotonic() - start
    stage = EvalStage(NixOptions(options=dict(OPTIONS)), **kwargs)
    figures = stage.evaluate(requests_for(flake, names), put)
    return entries, when, figures


@pytest.fixture(scope='module')
def calibrated(tmp_path_factory):
    # measured once for the pytest session (heavy.session_folder)
    return heavy.calibrate(folder=heavy.session_folder(tmp_path_factory))


def test_a_slow_host_holds_only_itself(tmp_path, calibrated):
    # "slow" and "a" share an evaluator's piece, "b" and "c" the other's: the
    # idle one takes "a" instead of letting it wait behind "slow"
    names = ['slow', 'a', 'b', 'c']
    hosts = dict((n, {'address': '127.0.0.1'}) for n in names)
    flake = FleetFlake.write(str(tmp_path / 'flake'), hosts,
                             {'slow': heavy.heavy_config(seconds=6)})
    entries, when, figures = run_stage(flake, names, workers=2)
    assert all('error' not in e['answer'] for e in entries.values()), entries
    assert set(entries) == set(names)
    for name in ('a', 'b', 'c'):
        assert when[name] < when['slow'] - 2, when
    assert figures['processes'] == 3 and figures['workers'] == 2, figures


def test_a_host_over_the_timeout_fails_alone_and_the_rest_go_on(tmp_path, calibrated):
    """The timeout bounds each host, not the process: 14 hosts of 0.4 s each
    (5.6 s in all, more on a loaded machine) share one evaluator under a 5 s
    timeout, each well within it even at load 10; a host of 40 s behind them
    is stopped after 5 s, fails saying so, and the host after it gets its
    answer from a fresh process."""
    quick = ['t%02d' % i for i in range(14)]
    names = quick + ['slow', 'after']
    hosts = dict((n, {'address': '127.0.0.1'}) for n in names)
    configurations = dict((n, heavy.heavy_config(seconds=0.4)) for n in quick)
    configurations['slow'] = heavy.heavy_config(seconds=40)
    flake = FleetFlake.write(str(tmp_path / 'flake'), hosts, configurations)
    entries, when, figures = run_stage(flake, names, workers=1, chunk_size=len(names), timeout=5)
    for name in quick + ['after']:
        assert entries[name]['answer']['out_path'].startswith('/nix/store/'), entries[name]
    error = entries['slow']['answer']['error']
    assert error.startswith('evaluating %s#%s took longer than the timeout (5 s): stopped'
                            % (flake.ref, flake.attr('slow'))), error
    # stopped, not waited for: well before its 40 s
    assert when['slow'] < max(when[n] for n in quick) + 20, when
    # one process for the hosts under the timeout and the slow one, one after
    assert figures['processes'] == 2, figures


def test_memory_bound_restarts_evaluators_between_hosts(tmp_path, calibrated):
    # each host holds ~150 MB: over a 100 MB bound, each evaluator is
    # replaced after every host; the answers are all there and right
    names = ['m1', 'm2', 'm3', 'm4']
    hosts = dict((n, {'address': '127.0.0.1'}) for n in names)
    flake = FleetFlake.write(str(tmp_path / 'flake'), hosts,
                             dict((n, heavy.heavy_config(mb=150)) for n in names))
    entries, _when, figures = run_stage(flake, names, workers=1, max_memory_mb=100)
    assert all('error' not in e['answer'] for e in entries.values()), entries
    assert figures['processes'] == 4, figures
    free, _when, free_figures = run_stage(flake, names, workers=1)
    assert free_figures['processes'] == 1, free_figures
    assert dict((n, e['answer']) for n, e in entries.items()) == \
        dict((n, e['answer']) for n, e in free.items())


def test_a_broken_host_costs_one_process_and_only_its_answer(tmp_path):
    names = ['b1', 'b2', 'b3', 'b4', 'b5', 'b6']
    hosts = dict((n, {'address': '127.0.0.1'}) for n in names)
    flake = FleetFlake.write(str(tmp_path / 'flake'), hosts, {'b2': {'broken_eval': True}})
    entries, _when, figures = run_stage(flake, names, workers=2)
    assert "attribute 'lab' missing" in entries['b2']['answer']['error']
    assert entries['b2']['answer']['error'].startswith('evaluating %s#' % flake.ref)
    for name in names:
        if name != 'b2':
            assert entries[name]['answer']['out_path'].startswith('/nix/store/'), name
    # two evaluators, one more for the hosts after b2 in its piece
    assert figures['processes'] == 3, figures
    # the last answer carries the batch's figures, and only that one
    assert len([e for e in entries.values() if 'batch' in e]) == 1


class BrokenRecorder(object):
    """The reuse recorder of a run whose first evaluator's set-up fails as
    a bug of ours would (its place removed under it by another run); the
    later evaluators are not recorded."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def command(self, *_args):
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            raise FileNotFoundError(2, 'No such file or directory', 'record-1/nix')
        return None


def test_a_bug_in_one_evaluator_fails_its_hosts_in_one_line_and_the_rest_go_on(tmp_path):
    """The worker thread of an evaluator that raised died: its hosts got no
    answer at all, and a wave's hosts were told "the batch's work stopped
    before answering this host" with nothing to say why. Now they fail in
    one line, the traceback kept apart, and the other evaluator's hosts get
    their systems; the pool never waits on the broken piece."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
        apply_expression)
    names = ['e1', 'e2', 'e3', 'e4']
    hosts = dict((n, {'address': '127.0.0.1'}) for n in names)
    flake = FleetFlake.write(str(tmp_path / 'flake'), hosts)
    runner = EvalStage(NixOptions(options=dict(OPTIONS))).runner
    pool = eval_pool.EvalPool(runner, apply_expression, 2, recorder=BrokenRecorder())
    answers = {}
    items = [(name, flake.attr(name).split('.')) for name in names]
    run = threading.Thread(target=pool.run, args=({flake.ref: items}, answers.__setitem__))
    run.daemon = True
    run.start()
    run.join(120)
    assert not run.is_alive(), 'the pool waits for the piece whose evaluator broke'
    assert sorted(answers) == names
    broken = sorted(name for name in names if 'error' in answers[name])
    # one piece of two hosts a worker: the piece whose set-up broke
    assert broken in (['e1', 'e2'], ['e3', 'e4']), answers
    for name in names:
        if name in broken:
            assert answers[name]['error'] == (
                "internal error in an evaluator: FileNotFoundError: [Errno 2] No such file or "
                "directory: 'record-1/nix'; rerun with -vvv for the traceback"), answers[name]
            assert 'Traceback' in answers[name]['traceback']
        else:
            assert answers[name]['out_path'].startswith('/nix/store/'), answers[name]


FAKE_FLAKE = '''{
  outputs = { self }: let
    real = name: derivation { name = name; system = "@SYSTEM@"; builder = "/bin/sh"; };
  in {
    good1 = real "nixdeploy-pool-good1";
    # attribute sets that only look like derivations: a flake reference, an
    # option and a path outside the store must not become the host's system
    fake = { drvPath = "github:evil/flake"; outPath = "--option"; system = "x86_64-linux"; };
    badsystem = (real "nixdeploy-pool-bad") // { system = "x86_64-linux\n--option"; };
    good2 = real "nixdeploy-pool-good2";
  };
}
'''


def test_what_only_looks_like_a_derivation_fails_its_host_alone(tmp_path):
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import native_system
    folder = tmp_path / 'flake'
    folder.mkdir()
    (folder / 'flake.nix').write_text(FAKE_FLAKE.replace('@SYSTEM@', native_system()))
    ref = 'path:%s' % folder
    names = ['good1', 'fake', 'badsystem', 'good2']
    requests = dict((n, {'flake': ref, 'attr': [n], 'attr_string': n, 'platform': 'nixos'})
                    for n in names)
    entries = {}
    stage = EvalStage(NixOptions(options=dict(OPTIONS)), workers=1)
    stage.evaluate(requests, lambda host, entry: entries.update({host: entry}))
    assert 'not a derivation of the Nix store' in entries['fake']['answer']['error']
    assert 'github:evil/flake' in entries['fake']['answer']['error']
    error = entries['badsystem']['answer']['error']
    assert 'not a Nix system name' in error and '\n' not in error
    for name in ('good1', 'good2'):
        assert entries[name]['answer']['drv_path'].endswith('-nixdeploy-pool-%s.drv' % name)


def _evaluators_environment(tmp_path, monkeypatch, name, given, workers=1):
    """Evaluate two hosts with ``name`` set to ``given`` in the environment
    (None: unset) through a ``nix`` that logs it: the values each ``nix
    eval`` got."""
    if given is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, given)
    log = tmp_path / 'env.log'
    wrapper = tmp_path / 'nix'
    wrapper.write_text('#!/bin/sh\nprintf "%%s %%s\\n" "$1" "${%s-unset}" >>%s\nexec nix "$@"\n'
                       % (name, log))
    wrapper.chmod(0o755)
    names = ['p', 'q']
    hosts = dict((n, {'address': '127.0.0.1'}) for n in names)
    flake = FleetFlake.write(str(tmp_path / 'flake'), hosts)
    entries = {}
    stage = EvalStage(NixOptions(nix_bin=str(wrapper), options=dict(OPTIONS)), workers=workers,
                      max_memory_mb=2048)
    stage.evaluate(requests_for(flake, names), entries.__setitem__)
    assert all('error' not in e['answer'] for e in entries.values()), entries
    return [line.split()[1] for line in log.read_text().splitlines() if line.split()[0] == 'eval']


@pytest.mark.parametrize('given, expected', [(None, str(1536 * 2 ** 20)), ('123456789', '123456789')])
def test_evaluators_start_with_most_of_their_memory_bound_as_heap(
        tmp_path, monkeypatch, given, expected):
    """Nix's 384 MiB start makes a big evaluator collect at every growth: the
    evaluators start at three quarters of eval_max_memory_mb, unless the
    user set it."""
    assert _evaluators_environment(tmp_path, monkeypatch, 'GC_INITIAL_HEAP_SIZE',
                                   given) == [expected]


@pytest.mark.parametrize('workers, given, expected', [
    (2, None, '1'), (1, None, '2'), (2, '3', '3')])
def test_evaluators_side_by_side_share_the_cores_collector_threads(
        tmp_path, monkeypatch, workers, given, expected):
    """Nix's collector marks with a thread per core: evaluators side by side
    each get their share of the cores (two on 2 cores: one each, which saved
    their spinning on the mark locks), unless the user set GC_MARKERS."""
    monkeypatch.setattr(eval_pool.os, 'cpu_count', lambda: 2)
    markers = _evaluators_environment(tmp_path, monkeypatch, 'GC_MARKERS', given, workers)
    assert markers and set(markers) == {expected}
    assert eval_pool.gc_markers(1, cpus=2) == 2 and eval_pool.gc_markers(4, cpus=2) == 1


def test_the_tasks_timeout_reaches_the_evaluators(tmp_path, monkeypatch):
    """nix_eval's eval_timeout, and nix_build's timeout for the hosts it
    evaluates itself, are the evaluators' bound (0: none); 1800 s by
    default. eval_batch_timeout bounds the batch's evaluators in all."""
    from ansible import constants as C
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._stage import (
        stage_of)
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    opts = NixOptions(options=dict(OPTIONS))
    assert stage_of(opts, {'eval_timeout': 7, 'eval_cache': False}).runner.timeout == 7
    assert stage_of(opts, {'timeout': 9, 'eval_cache': False}).runner.timeout == 9
    assert stage_of(opts, {'eval_cache': False}).runner.timeout == 1800
    assert stage_of(opts, {'eval_timeout': 0, 'eval_cache': False}).runner.timeout is None
    assert stage_of(opts, {'eval_batch_timeout': 60, 'eval_cache': False}).batch_timeout == 60


def test_the_batchs_time_bound_stops_its_evaluators_and_names_each_host(tmp_path, calibrated):
    """eval_batch_timeout bounds all of one batch's evaluations: a host of
    40 s in one evaluator and two quick hosts queued behind it, one
    evaluator, a 6 s bound. The slow host is stopped at the bound, not after
    its 40 s, and it and every host no evaluator answered fail, each naming
    its own configuration and the option to raise; the quick host answered
    before the bound keeps its answer."""
    names = ['first', 'slow', 'later1', 'later2']
    hosts = dict((n, {'address': '127.0.0.1'}) for n in names)
    configurations = dict((n, heavy.heavy_config(seconds=0.3)) for n in names)
    configurations['slow'] = heavy.heavy_config(seconds=40)
    flake = FleetFlake.write(str(tmp_path / 'flake'), hosts, configurations)
    entries, when, _figures = run_stage(flake, names, workers=1, chunk_size=2, timeout=None,
                                        batch_timeout=6)
    assert entries['first'].get('answer', {}).get('out_path', '').startswith('/nix/store/'), entries
    for name in ('slow', 'later1', 'later2'):
        error = entries[name]['answer']['error']
        assert error.startswith('evaluating %s#%s was stopped: the evaluations of its batch took '
                                'longer than eval_batch_timeout (6 s)'
                                % (flake.ref, flake.attr(name))), (name, error)
    assert max(when.values()) < 6 + 15, when


def test_a_loaded_machine_does_not_split_cheap_hosts_into_more_processes():
    """How many hosts a recorded evaluator holds follows what each host
    cost it in CPU seconds, not how long it took: on a loaded controller a
    cheap host's few milliseconds of Nix stretch past MIN_HOST_SECONDS of
    wall time, and a fleet of cheap hosts was split into a process each
    (a run of test_eval_reuse_order beside two test suites counted 5
    processes for 2 workers). Hosts that cost the CPU keep their rule."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
        apply_expression)
    pool = eval_pool.EvalPool(EvalStage(NixOptions(options=dict(OPTIONS))).runner,
                              apply_expression, 2)
    # wall seconds as a loaded machine gives them, CPU as the evaluator spent it
    pool._durations, pool._first = [0.5], [1.3]
    pool._cpu_durations, pool._cpu_first = [0.01, 0.02], [0.2]
    assert pool._per_process() == float('inf')
    # hosts that cost the evaluator eight times its start: one a process
    pool._cpu_durations, pool._cpu_first = [2.0, 2.1], [2.3]
    assert pool._per_process() == 1
    # where the system tells no CPU (no /proc), the wall seconds decide:
    # a start of 0.8 s against 0.5 s a host, 13 hosts a process
    pool._cpu_durations, pool._cpu_first = [], []
    assert pool._per_process() == 13


def test_an_evaluators_cpu_seconds_are_read_from_the_system():
    """``cpu_seconds``: what a process has spent so far (user and system),
    as the kernel counts it; None for a process that is gone."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._budget import (
        cpu_seconds)
    import subprocess
    # it burns 0.5 s and is read as at least 0.4: the kernel's count is by
    # clock ticks, and fell short of the process's own clock (0.39 for 0.4)
    burner = subprocess.Popen([sys.executable, '-c', 'import time\nt = time.process_time()\n'
                               'while time.process_time() - t < 0.5: pass\ninput()'],
                              stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        spent = 0.0
        while time.monotonic() < deadline:
            spent = cpu_seconds(burner.pid) or 0.0
            if spent >= 0.4:
                break
            time.sleep(0.05)
        assert 0.4 <= spent < 5, spent
    finally:
        burner.communicate(b'\n', timeout=60)
    assert cpu_seconds(burner.pid) is None
