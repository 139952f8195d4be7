# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much evaluation this machine's cores do side by side (benchmark 11).

The parallel evaluators' goal is a ratio of walls (parallel / one
evaluator); no scheduler can beat what the cores themselves give. On a VM
two vCPUs are not always two cores' worth: siblings of one physical core, a
shared cache and memory bus, a busy host. This measures it with the work the
lab's heavy systems do (tests/lab/heavy.py: Nix burning CPU and holding
memory as a module system does): one ``nix-instantiate`` alone, then one per
core at once.

    throughput = copies x wall alone / wall side by side   (cores' worth)
    best ratio = 1 / throughput     (what no evaluator pool can go below)
"""

import os
import subprocess
import time

from tests.lab import heavy


def _expression(calibration, seconds, mb):
    knobs = calibration.config(seconds=seconds, mb=mb)
    return ('let cost = %s; held = cost.hold "side" %d; in cost.burn %d + cost.force held'
            % (heavy.COST, knobs['eval_mb'], knobs['eval_work']))


def _run(expr, copies, nix_env):
    """Wall seconds of each of ``copies`` evaluations started together."""
    started = time.monotonic()
    procs = [subprocess.Popen(['nix-instantiate', '--eval', '--strict', '-E', expr],
                              env=nix_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _n in range(copies)]
    walls = []
    for proc in procs:
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise RuntimeError('nix-instantiate failed: %s' % err.decode(errors='replace'))
        walls.append(time.monotonic() - started)
    return walls


def side_by_side(calibration, seconds=6.0, mb=1200, copies=None, nix_env=None):
    """{'copies', 'alone_s', 'together_s', 'throughput', 'best_ratio'}: one
    evaluation of ``seconds`` CPU and ``mb`` MB alone (the best of two), then
    ``copies`` (default: the cores) at once (the last to end)."""
    copies = copies or os.cpu_count() or 1
    expr = _expression(calibration, seconds, mb)
    alone = min(_run(expr, 1, nix_env)[0] for _n in range(2))
    together = max(_run(expr, copies, nix_env))
    throughput = copies * alone / together
    return {'copies': copies, 'seconds': seconds, 'mb': mb, 'alone_s': round(alone, 2),
            'together_s': round(together, 2), 'throughput': round(throughput, 2),
            'best_ratio': round(1.0 / throughput, 2)}
