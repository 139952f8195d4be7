"""The spot check (plugin_utils/evaluation/reuse/_spot_check.py,
docs/eval-cache.md "The spot check"): a recorded evaluator's answers are
drawn too, so one that is not what Nix gives is caught on the run that
records it, before any of its flake's answers is given. Real Nix, git and
strace; every answer given is checked against a plain `nix eval`
(``Flake.run``)."""

import os
import threading
import time

import pytest

from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse import (  # noqa: F401  pylint: disable=unused-import
    MK, Flake, how, pytestmark)
from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse_shapes import Shape

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache import (  # noqa: E402
    _cache, _marks)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse import (  # noqa: E402
    _reuse)


def make_recorder_wrong(patch):
    """A recorder whose ``self`` is not Nix's (as a new Nix, or a flake
    shape record.nix does not call as Nix does, would make it): its
    ``lastModified`` is a second late. ``patch``: a pytest MonkeyPatch."""
    spec_of = _reuse.Reuse._spec

    def late(*args):
        spec = spec_of(*args)
        spec.call['info']['lastModified'] += 1
        return spec
    patch.setattr(_reuse.Reuse, '_spec', staticmethod(late))


@pytest.fixture
def wrong_recorder(monkeypatch):
    make_recorder_wrong(monkeypatch)


def test_a_recorded_answer_that_is_not_nix_s_is_caught_on_its_first_run(tmp_path, wrong_recorder):
    flake = Flake(str(tmp_path))
    for name in 'abcd':
        flake.write('hosts/%s.nix' % name, '{ self }: { v = toString self.lastModified; }\n')
    flake.commit('every host reads lastModified')
    # (Flake.run: every answer given is a plain `nix eval`'s)
    entries, _figures = flake.run(workers=2, reuse_check=1)
    failed = [name for name, entry in entries.items() if 'error' in entry]
    assert len(failed) == 1, entries
    assert 'the answer a recorded evaluation gave for' in entries[failed[0]]['error']
    assert 'is not what Nix gives for this commit' in entries[failed[0]]['error']
    assert all(how(entries)[name] == 'evaluated' for name in 'abcd' if name not in failed)
    assert any(name.startswith('distrust-') for name in os.listdir(flake.cache))
    # reuse (and recording) stays off for it, and says so
    flake.write('README', 'y')
    flake.commit('readme')
    entries, _figures = flake.run(workers=2, reuse_check=1)
    assert how(entries) == dict.fromkeys('abcd', 'evaluated')
    assert any('reuse stays off for this flake until' in note for note in entries['a']['notes'])


def test_a_right_recorder_is_checked_once_then_costs_its_turn(tmp_path):
    """A recorder found right is marked (the drawn host, and the recorder:
    a flake, this Nix, this record.nix), and every other host's wait is
    kept; the next commit reuses as before."""
    flake = Flake(str(tmp_path))
    entries, _figures = flake.run(workers=2, reuse_check=1)
    assert how(entries) == dict.fromkeys('abcd', 'evaluated')
    # one recorded host drawn (the recorder is new), found right: its mark
    # and its recorder's; every other host's wait
    marks = [name for name in os.listdir(flake.cache) if name.startswith('checked-')]
    assert len(marks) == 5, marks
    assert not any(name.startswith('distrust-') for name in os.listdir(flake.cache))
    flake.write('files/b.txt', 'B')
    flake.commit('b')
    entries, _figures = flake.run(workers=2, reuse_check=1)
    # (which hosts follow b in its evaluator depends on the host drawn first)
    assert how(entries)['b'] == 'evaluated', entries
    assert list(how(entries).values()).count('reused') >= 2, entries


def test_a_reused_batch_reads_each_entry_once_and_counts_waits_while_nix_checks(
        tmp_path, monkeypatch):
    """The steady state of a fleet: every host reused but the few a commit
    changed. What a reused host costs is file reads, never a second read
    of its entry (the spot check weighs the hosts by the costs the look-up
    read), and the batch the others waited is counted while Nix checks
    the one drawn: the answers wait for the slower of the two, not for
    both. Every answer is still the one a plain `nix eval` gives."""
    flake = Flake(str(tmp_path))
    flake.run(workers=2, reuse_check=1)
    flake.write('files/b.txt', 'B')
    flake.commit('b')
    flake.run(workers=2, reuse_check=1)
    flake.write('README', 'y')
    flake.commit('readme')
    reads, times = {}, {}
    get_reuse, mark_waited = _cache.EvalCache.get_reuse, _marks.TrustMarks.mark_waited
    nix_check = _reuse.spot_check

    def counted(self, key):
        reads[key] = reads.get(key, 0) + 1
        return get_reuse(self, key)

    def waited(self, marks):
        times['waited'] = time.monotonic()
        return mark_waited(self, marks)

    def checked(*args, **kwargs):
        try:
            return nix_check(*args, **kwargs)
        finally:
            times['checked'] = time.monotonic()
    monkeypatch.setattr(_cache.EvalCache, 'get_reuse', counted)
    monkeypatch.setattr(_marks.TrustMarks, 'mark_waited', waited)
    monkeypatch.setattr(_reuse, 'spot_check', checked)
    entries, _figures = flake.run(workers=2, reuse_check=1)
    assert how(entries) == dict.fromkeys('abcd', 'reused'), entries
    assert len(reads) == 4 and set(reads.values()) == {1}, reads
    assert times['waited'] < times['checked'], times


def _waits(flake):
    """{check mark file: batches it waited} of the cache folder (each file
    is signed: read as the runs read it)."""
    cache = _cache.EvalCache(flake.cache, environ=flake.environ())
    names = [n for n in os.listdir(flake.cache) if n.startswith('checked-')]
    marks = cache.trust.check_marks([n[len('checked-'):-len('.json')] for n in names])
    return dict(('checked-%s.json' % key, mark['waited']) for key, mark in marks.items())


# hosts that read nothing of their input: a lock change is all that differs
LOCKED = '''{
  inputs.dep.url = "path:%(base)s/dep";
  outputs = { self, dep }: let lib = import ./lib/mk.nix; in {
    nixosConfigurations = builtins.listToAttrs (map (name: { inherit name; value = {
      config.system.build.toplevel = lib.mk { inherit name; args.v = name; }; }; })
      [ "a" "b" "c" "d" ]);
  }; }
'''


def test_a_host_s_wait_goes_on_across_a_lock_change(tmp_path):
    """The check marks were keyed by the reuse key, which holds the locks:
    a flake.lock change gave every host a new mark, and every wait started
    from zero again, so a host that does not fit the budget could go
    unchecked far beyond the bound (a lock change every few commits). A
    host's mark is its own, across commits and locks: the hosts not drawn
    after the lock change waited one batch more, in the same marks."""
    base = str(tmp_path)
    os.makedirs(os.path.join(base, 'dep'))
    with open(os.path.join(base, 'dep', 'flake.nix'), 'w') as handle:
        handle.write('{ outputs = { self }: { v = 1; }; }\n')
    flake = Shape(base, {'flake.nix': LOCKED % {'base': base}, 'lib/mk.nix': MK}, 'abcd')
    flake.git('add', '-A')
    flake.truth()  # nix writes the lock; commit it
    flake.commit('lock')
    flake.run(reuse_check=1)
    flake.write('README', 'x')
    flake.commit('readme')
    assert set(how(flake.run(reuse_check=1)[0]).values()) == {'reused'}
    before = _waits(flake)
    # the input changes: a new flake.lock
    with open(os.path.join(base, 'dep', 'flake.nix'), 'w') as handle:
        handle.write('{ outputs = { self }: { v = 2; }; }\n')
    os.unlink(os.path.join(flake.repo, 'flake.lock'))
    flake.git('add', '-A')
    flake.truth()
    flake.commit('lock bump')
    entries, _figures = flake.run(reuse_check=1)
    assert all('error' not in e for e in entries.values()), entries
    after = _waits(flake)
    # no new mark: every host's (and the recorder's) is the one it had
    assert set(after) == set(before), (before, after)
    # the hosts not checked now (recorded again: the locks are in every
    # reuse key) waited one batch more than before, not one from zero
    waited = [n for n in after if after[n]]
    assert waited and all(after[n] == before[n] + 1 for n in waited), (before, after)


def _spot_checks_running():
    """The Nix processes this test process started that evaluate hosts'
    systems the spot check's way (``_eval.Evaluator``: the whole list is
    its value); the pool's evaluators give ``true``, so the two differ."""
    found = []
    for task in os.listdir('/proc/self/task'):
        try:
            with open('/proc/self/task/%s/children' % task) as handle:
                children = handle.read().split()
        except OSError:
            continue
        for pid in children:
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                    argv = handle.read().split(b'\0')
            except OSError:
                continue
            if b'eval' in argv and any(b'builtins.seq forced results' in a for a in argv):
                found.append(int(pid))
    return found


def test_the_spot_check_waits_for_one_of_the_job_s_evaluator_slots(tmp_path):
    """The spot check's Nix evaluates hosts' systems as any evaluator does
    (a heap of gigabytes on a real flake): it takes one of the job's
    evaluator slots (eval_workers) like the others. With the only slot held
    by another evaluation of the job, a batch with reused answers to check
    starts no Nix until the slot is free, then checks and answers every
    host right."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._slots import (
        EvalSlots)
    flake = Flake(str(tmp_path))
    flake.run(workers=1, reuse_check=1)
    flake.write('files/b.txt', 'B')
    flake.commit('b')
    folder = tmp_path / 'slots'
    folder.mkdir()
    other = EvalSlots(str(folder), 1)
    held = other.acquire()
    done = {}
    run = threading.Thread(target=lambda: done.update(result=flake.run(
        workers=1, reuse_check=1, slots=EvalSlots(str(folder), 1))))
    run.start()
    try:
        # the reused hosts are known within a second or two; their check
        # must wait for the slot all the while it is held
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            assert not _spot_checks_running(), 'a spot check ran beside the slot holder'
            assert run.is_alive(), 'the batch ended without waiting for the slot'
            time.sleep(0.02)
    finally:
        other.release(held)
    run.join(120)
    assert not run.is_alive(), 'the batch did not end within 120 s of the slot coming free'
    entries, _figures = done['result']
    assert all('error' not in entry for entry in entries.values()), entries
    assert how(entries)['b'] == 'evaluated', entries
    assert 'reused' in how(entries).values(), entries
