# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 10's growth: how the controller CPU a host grows from the
smallest fleet size to the largest, decided over repeated rounds.

One run cannot decide a growth a few points wide: the same code grew -2% to
+11% over five single runs (docs/benchmarks.md). ``scale.py --repeat K``
runs the sizes K times, alternating their order and the deployers' order
from round to round (a drift of the machine then falls on both sides); this
module takes each size's median CPU a host over the rounds, the growth of
the medians, and the spread of the rounds' own growths (each round's
largest size against its smallest), and says whether the playbook grows no
more than the script (issue 64's goal), for the deploy and the no-op.
"""

import statistics

PHASES = ('deploy', 'noop')


def round_order(sizes, deployers, round_index):
    """The (size, deployers) order of round ``round_index``: even rounds go
    up in size with the deployers as given, odd ones down with them
    reversed."""
    sizes = sorted(sizes)
    deployers = list(deployers)
    if round_index % 2:
        return [(size, list(reversed(deployers))) for size in reversed(sizes)]
    return [(size, deployers) for size in sizes]


def per_host(row, deployer, phase):
    """Controller CPU seconds a host of one row's run, or None."""
    cpu = ((row.get(deployer) or {}).get(phase) or {}).get('cpu')
    return cpu / float(row['n']) if cpu is not None and row.get('n') else None


def _growth(low, high):
    return (high / low - 1.0) if low and high is not None else None


def growth(rows, deployers, phases=PHASES):
    """{deployer: {phase: {medians: {n: s}, growth, rounds: [growth of
    each round], low, high}}} from rows carrying ``n`` and ``round``; None
    when fewer than two sizes were run."""
    sizes = sorted(set(row['n'] for row in rows))
    if len(sizes) < 2:
        return None
    low, high = sizes[0], sizes[-1]
    rounds = sorted(set(row.get('round', 0) for row in rows))
    out = {}
    for deployer in deployers:
        out[deployer] = {}
        for phase in phases:
            medians = {}
            for size in (low, high):
                values = [v for v in (per_host(r, deployer, phase) for r in rows
                                      if r['n'] == size) if v is not None]
                medians[size] = statistics.median(values) if values else None
            each = []
            for number in rounds:
                mine = dict((r['n'], per_host(r, deployer, phase)) for r in rows
                            if r.get('round', 0) == number)
                if mine.get(low) and mine.get(high) is not None:
                    each.append(_growth(mine[low], mine[high]))
            out[deployer][phase] = {'medians': medians, 'low': low, 'high': high,
                                    'growth': _growth(medians[low], medians[high]),
                                    'rounds': each}
    return out


def verdict(found, top='playbook', base='script'):
    """{phase: True/False/None}: ``top``'s growth of the medians no more
    than ``base``'s (None when either is unknown)."""
    out = {}
    for phase in PHASES:
        mine, theirs = found[top][phase]['growth'], found[base][phase]['growth']
        out[phase] = None if mine is None or theirs is None else mine <= theirs
    return out


def percent(value):
    """A growth as printed: +5.0%, or - when unknown."""
    return '-' if value is None else '%+.1f%%' % (100.0 * value)


def rounds_text(repeat):
    return '%d round%s' % (repeat, '' if repeat == 1 else 's')


def table(found, repeat):
    """The lines that print the growth of the medians and the verdict."""
    phases = dict(deploy='deploy', noop='no-op')
    first = next(iter(found.values()))['deploy']
    low, high = first['low'], first['high']
    lines = ['', 'growth of the controller CPU a host, N=%d -> N=%d (median of %s; each '
             'round\'s own growth in brackets)' % (low, high, rounds_text(repeat))]
    for deployer, cells in found.items():
        parts = []
        for phase in PHASES:
            cell = cells[phase]
            parts.append('%s %.3f -> %.3f s %s [%s]' % (
                phases[phase], cell['medians'][low] or 0.0, cell['medians'][high] or 0.0,
                percent(cell['growth']), ', '.join(percent(g) for g in cell['rounds'])))
        lines.append('  %-11s %s' % (deployer, '; '.join(parts)))
    if 'playbook' in found and 'script' in found:
        said = verdict(found)
        lines.append('goal (issue 64): the playbook\'s growth no more than the script\'s: %s' % (
            ', '.join('%s %s' % (phases[p], {True: 'met', False: 'NOT met', None: '-'}[said[p]])
                      for p in PHASES)))
    return lines
