# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What benchmarks/pipeline.py reads out of a run (pure: no lab, no Nix),
and the sampler of the evaluators' memory.

The tests' recording callback (tests/callback_plugins/record.py) writes one
JSON line per task result with ``started``/``ended`` (time.time()) per host;
the figures here are taken from those lines.
"""

import json
import os
import threading

EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
BUILD = 'nixdeploy.fleet.deploy : Build the system of each host'
ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'
# the environment variable that marks the Nix processes of one run
MARKER = 'NIXDEPLOY_PIPELINE_RUN'


def spread(index, count, low, high, step):
    """A value in [low, high] for host ``index`` (0-based) of ``count``:
    evenly spread, in an order that mixes cheap and costly neighbours
    (``step`` coprime with ``count`` makes index -> index * step % count a
    permutation). Deterministic."""
    if count <= 1:
        return float(low)
    return low + (high - low) * ((index * step) % count) / float(count - 1)


def read_records(path):
    """The recorded results (list of dicts), [] when there is no file."""
    try:
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError):
        return []


def spans(records, task):
    """{host: (started, ended)} of ``task``'s results."""
    return dict((r['host'], (r.get('started'), r.get('ended')))
                for r in records if r.get('task') == task and r.get('host'))


def phase_wall(records, task):
    """Seconds from the first host's start of ``task`` to the last host's
    end (None without results)."""
    found = [v for v in spans(records, task).values() if v[0] is not None and v[1] is not None]
    if not found:
        return None
    return max(e for _s, e in found) - min(s for s, _e in found)


def batch_figures(records, task=EVAL):
    """The batch's evaluation figures: ``evaluation`` of the result that has
    ``evaluated_here: true``, with ``nix_processes``; {} when none."""
    for record in records:
        result = record.get('result') or {}
        if record.get('task') == task and result.get('evaluated_here'):
            out = dict(result.get('evaluation') or {})
            out['nix_processes'] = result.get('nix_processes')
            return out
    return {}


def cached_hosts(records, task=EVAL):
    """How many hosts' results say ``from_cache: true``."""
    return sum(1 for r in records
               if r.get('task') == task and (r.get('result') or {}).get('from_cache'))


def overlap(records, epoch):
    """The pipeline's overlap in one deploy, in seconds from ``epoch`` (the
    run's start): when the first host's activate task ended, when the last
    host's eval task ended, and how many hosts were active before that."""
    evals = [e for _s, e in spans(records, EVAL).values() if e is not None]
    acts = [e for _s, e in spans(records, ACTIVATE).values() if e is not None]
    if not evals or not acts:
        return {}
    last_eval = max(evals)
    return {'first_active': round(min(acts) - epoch, 1),
            'last_evaluated': round(last_eval - epoch, 1),
            'last_active': round(max(acts) - epoch, 1),
            'active_before_last_eval': sum(1 for e in acts if e < last_eval)}


def margins(records, end, slow):
    """{host: seconds between its activate task's end and ``end`` (the
    deploy's end)} for every host but ``slow``, and the slow host's own."""
    acts = dict((h, e) for h, (_s, e) in spans(records, ACTIVATE).items() if e is not None)
    fast = dict((h, round(end - e, 1)) for h, e in acts.items() if h != slow)
    return {'fast': fast, 'slow': round(end - acts[slow], 1) if slow in acts else None}


def ratio(value, base):
    return round(value / base, 2) if value is not None and base else None


class NixSampler:
    """Every ``every`` seconds, the Nix ``eval`` processes whose environment
    has ``MARKER=token`` (the run's; the evaluators run detached, outside
    the playbook's process tree): the peak of their summed RSS, the most at
    once, and each one's CPU seconds at its last sample (a process ending
    between two samples loses at most ``every`` of it).

    The processes there before ``start`` (the lab's sshds, the machine's
    own) cannot carry a token made for this run: they are not read while
    they live, so the sampler costs little beside the evaluators it
    measures."""

    def __init__(self, token, every=0.5, proc='/proc'):
        self.needle = ('%s=%s' % (MARKER, token)).encode()
        self.every, self.proc = every, proc
        self.page = os.sysconf('SC_PAGE_SIZE')
        self.tick = float(os.sysconf('SC_CLK_TCK'))
        self.ours = {}    # (pid, start time): ours or not
        self.cpu = {}     # (pid, start time): CPU seconds last seen
        self.peak_rss_mb, self.most = 0.0, 0
        self.before = frozenset()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.before = frozenset(os.listdir(self.proc))
        self.thread.start()
        return self

    def _read(self, name, what, mode='rb'):
        with open(os.path.join(self.proc, name, what), mode) as handle:
            return handle.read()

    def sample(self):
        total, count = 0, 0
        names = os.listdir(self.proc)
        # an earlier process that ended gives its pid back: the pid may come
        # again (pid_max is often 32768) for one of ours
        self.before = self.before.intersection(names)
        for name in names:
            if not name.isdigit() or name in self.before:
                continue
            try:
                if self._read(name, 'comm').strip() != b'nix':
                    continue
                fields = self._read(name, 'stat').rsplit(b')', 1)[1].split()
                key = (int(name), int(fields[19]))
                if not self.ours.get(key):
                    # a no is asked again: a wrapper script named nix (its
                    # shell has the comm of the script's name) becomes Nix
                    # itself when it execs it, with the same pid and start
                    argv = self._read(name, 'cmdline').split(b'\0')
                    self.ours[key] = (os.path.basename(argv[0]) == b'nix' and b'eval' in argv
                                      and self.needle in self._read(name, 'environ').split(b'\0'))
                if not self.ours[key]:
                    continue
                self.cpu[key] = (int(fields[11]) + int(fields[12])) / self.tick
                total += int(fields[21]) * self.page
                count += 1
            except (OSError, ValueError, IndexError):
                continue
        self.peak_rss_mb = max(self.peak_rss_mb, total / 2.0 ** 20)
        self.most = max(self.most, count)

    def _loop(self):
        while not self.stopped.is_set():
            self.sample()
            self.stopped.wait(self.every)

    def stop(self):
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        return self.figures()

    def figures(self):
        return {'sampled_peak_rss_mb': round(self.peak_rss_mb), 'sampled_most_at_once': self.most,
                'sampled_processes': len(self.cpu),
                'sampled_cpu': round(sum(self.cpu.values()), 1)}
