"""Lab systems that cost what real ones cost to evaluate and build (issue 45).

A real NixOS system takes 1-65 s and 0.5-4.5 GB to evaluate and minutes to
build; a fixture system takes milliseconds. The fixture flake's cost knobs
(tests/lab/flake/lib.nix: ``eval_work``, ``eval_mb``, ``build_seconds`` per
configuration, ``shared_work``, ``shared_mb`` for the whole fleet) are in
iterations and nominal units, whose price depends on the machine and the Nix
version, so tests ask in seconds and MB here::

    cal = heavy.calibrate(nix_env, folder)        # once; cached in folder
    configs = {'h1': heavy.heavy_config(seconds=5, mb=800, build_seconds=60)}
    FleetFlake.write(path, hosts, configs, cost=heavy.heavy_shared(seconds=20, mb=1500))

Seconds are CPU seconds of the evaluating Nix process (a busy machine makes
the wall time longer, never the work smaller). MB is what the process's peak
RSS grows by; below Nix's initial GC heap (384 MB) garbage counts too, so a
small ``mb`` may come out up to a fifth larger.

A test module's ``folder`` is ``session_folder(tmp_path_factory)``: one
measure for the whole pytest session.
"""

import hashlib
import json
import os
import subprocess
import tempfile

from benchmarks import _nix_rss
from tests.lab.fixtures import FLAKE_SRC

LIB = os.path.join(FLAKE_SRC, 'lib.nix')
CACHE = 'heavy-calibration.json'
# lib.nix's evaluation-cost functions alone (burn, hold, force), for a Nix
# expression that measures them outside any flake
COST = '(import %s { fleet = { }; busyboxDir = null; part = "cost"; })' % json.dumps(LIB)
# the memory figure is taken this far above the GC's initial heap, where a
# process evaluating several hosts spends most of its life
CALIBRATION_UNITS = 600

_current = None


class Calibration:
    """The figures of one machine and Nix: CPU iterations per second, MB and
    CPU seconds per ``eval_mb`` unit."""

    def __init__(self, figures):
        self.figures = dict(figures)
        self.iterations_per_second = figures['iterations_per_second']
        self.mb_per_unit = figures['mb_per_unit']
        self.seconds_per_unit = figures['seconds_per_unit']

    def _knobs(self, seconds, mb):
        units = int(round(mb / self.mb_per_unit)) if mb > 0 else 0
        # building the held memory costs time too: the CPU knob pays the rest
        left = max(0.0, seconds - units * self.seconds_per_unit)
        return int(round(left * self.iterations_per_second)), units

    def config(self, seconds=0, mb=0, build_seconds=0, broken_build=False):
        work, units = self._knobs(seconds, mb)
        knobs = {'eval_work': work, 'eval_mb': units, 'build_seconds': build_seconds}
        if broken_build:
            knobs['broken_build'] = True
        return knobs

    def shared(self, seconds=0, mb=0):
        work, units = self._knobs(seconds, mb)
        return {'shared_work': work, 'shared_mb': units}


def run_measured(argv, **popen):
    """Run ``argv`` (subprocess.run's keywords in ``popen``): (exit code,
    its own CPU seconds, its own peak RSS in bytes), whatever the size of
    the process that calls this: a Nix started straight from a pytest worker
    holding 176 MB read at least 176 MB (two CI runs: a light evaluation at
    173 and 176 MB, 30-36 MB alone), since Linux keeps a process's pre-exec
    peak in the exec'ed program's ru_maxrss (benchmarks/_nix_rss.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, 'usage')
        env = dict(popen.pop('env', None) or os.environ, NIXDEPLOY_BENCH_RSS=report)
        proc = subprocess.run([_nix_rss.wrapper(tmp)] + list(argv), env=env, check=False,
                              **popen)
        ((maxrss_kb, cpu),) = _nix_rss.usages(report)
    return proc.returncode, cpu, maxrss_kb * 1024


def _measure(nix_env, expr):
    """(CPU seconds, peak RSS bytes) of one evaluation."""
    with tempfile.TemporaryFile() as err:
        code, cpu, rss = run_measured(
            ['nix-instantiate', '--eval', '--strict', '-E', 'let cost = %s; in %s' % (COST, expr)],
            env=nix_env, stdout=subprocess.DEVNULL, stderr=err)
        if code != 0:
            err.seek(0)
            raise RuntimeError('nix-instantiate failed: %s' % err.read().decode(errors='replace'))
    return cpu, rss


# how the figures are measured: 2 since each process's own RSS (run_measured)
MEASURE = 2


def _key(nix_env):
    """What the figures depend on: the Nix that runs, the Nix work and how
    they are measured."""
    version = subprocess.run(['nix-instantiate', '--version'], env=nix_env, check=True,
                             stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    with open(LIB, 'rb') as handle:
        return {'nix': version, 'lib': hashlib.sha256(handle.read()).hexdigest(),
                'measure': MEASURE}


def session_folder(tmp_path_factory):
    """A folder for the figures that every test module of the pytest session
    shares, pytest-xdist's workers too (each has a base folder of its own
    under the session's): the figures are the machine's and its Nix's, the
    same for every module, so the modules that need them pay for one
    measure, not one each."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        base = base.parent
    return str(base / 'heavy-calibration')


def calibrate(nix_env=None, folder=None, refresh=False):
    """Measure this machine once (a few seconds) and cache the figures in
    ``folder`` (none: not cached); they are kept until the Nix version or
    lib.nix changes. ``nix_env``: the environment the Nix to measure runs
    in (its PATH picks the stack's Nix; None: this one's). Returns a
    Calibration, also used by heavy_config and heavy_shared from then on."""
    global _current
    key = _key(nix_env)
    path = os.path.join(folder, CACHE) if folder else None
    if path and not refresh and os.path.exists(path):
        with open(path) as handle:
            cached = json.load(handle)
        if cached.get('key') == key:
            _current = Calibration(cached['figures'])
            return _current
    base_cpu, base_rss = _measure(nix_env, 'cost.burn 0')
    # a short probe sizes the real run to about a second
    probe = 4000
    rate = probe / max(0.01, _measure(nix_env, 'cost.burn %d' % probe)[0] - base_cpu)
    iterations = int(rate)
    cpu = _measure(nix_env, 'cost.burn %d' % iterations)[0]
    hold_cpu, hold_rss = _measure(
        nix_env, 'cost.force (cost.hold "calibration" %d)' % CALIBRATION_UNITS)
    figures = {
        'iterations_per_second': iterations / max(0.01, cpu - base_cpu),
        'mb_per_unit': (hold_rss - base_rss) / 2.0 ** 20 / CALIBRATION_UNITS,
        'seconds_per_unit': max(0.0, hold_cpu - base_cpu) / CALIBRATION_UNITS,
        'base_rss_mb': base_rss / 2.0 ** 20,
    }
    if path:
        os.makedirs(folder, exist_ok=True)
        # a name of the process's own: two workers may measure at once
        written = '%s.%d.tmp' % (path, os.getpid())
        with open(written, 'w') as handle:
            json.dump({'key': key, 'figures': figures}, handle, indent=2)
        os.replace(written, path)
    _current = Calibration(figures)
    return _current


def _calibration(calibration):
    if calibration is None and _current is None:
        raise RuntimeError('call tests.lab.heavy.calibrate() first')
    return calibration or _current


def heavy_config(seconds=0, mb=0, build_seconds=0, broken_build=False, calibration=None):
    """Configuration knobs: this system alone takes ``seconds`` of CPU and
    ``mb`` of memory to evaluate (beyond what the fleet shares) and
    ``build_seconds`` to build; ``broken_build``: the build then fails."""
    return _calibration(calibration).config(seconds, mb, build_seconds, broken_build)


def heavy_shared(seconds=0, mb=0, calibration=None):
    """The fleet's top-level knobs (FleetFlake.write(..., cost=...)): a part
    every system evaluates, paid once per Nix process, as a nixpkgs is."""
    return _calibration(calibration).shared(seconds, mb)
