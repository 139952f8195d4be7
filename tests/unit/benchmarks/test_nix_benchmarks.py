# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmarks that time Nix on the controller (2 evaluation batching, 4
the inventory plugin, 8 flake shapes) run on a tiny fleet and print figures
that are Nix's own. Two of them had stopped running when nix_eval's request
took its flake from the arguments (the benchmarks passed it as host
variables), and no test ran them."""

import json
import os
import subprocess
import sys

from benchmarks import _nix_rss
from tests.collection import REPO


def bench(*argv):
    proc = subprocess.run([sys.executable] + list(argv), cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc.stdout


def rows(out, first):
    """The table's rows: lines whose first word is ``first``."""
    return [line.split() for line in out.splitlines() if line.split()[:1] == [first]]


def test_the_wrapper_reports_nix_own_peak_not_its_callers(tmp_path):
    held = bytearray(200 * 2 ** 20)
    held[::4096] = b'\x01' * len(range(0, len(held), 4096))
    rss = str(tmp_path / 'rss')
    env = dict(os.environ, NIXDEPLOY_BENCH_RSS=rss)
    proc = subprocess.run([_nix_rss.nix_wrapper(str(tmp_path)), '--version'], env=env,
                          stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith('nix ')
    assert 0 < _nix_rss.peak_mb(rss) < 100
    del held
    assert _nix_rss.peak_mb(str(tmp_path / 'none')) is None


def test_evaluation_batching_runs_and_batches():
    out = bench('benchmarks/eval_batching.py', '--sizes', '1,3', '--heavy', '1000')
    found = dict(((int(r[0]), r[1]), r) for r in rows(out, '1') + rows(out, '3'))
    assert sorted(found) == [(1, 'batched'), (1, 'per-host'), (3, 'batched'), (3, 'per-host')]
    # procs: one a host, one for the batch
    assert (found[(3, 'per-host')][2], found[(3, 'batched')][2]) == ('3', '1'), out
    for row in found.values():
        # Nix's own peak, under the child Python's ~40 MB with the collection loaded
        assert 0 < float(row[5]) < 100, out


def test_inventory_parse_runs_and_reads_nix_own_memory():
    out = bench('benchmarks/inventory_parse.py', '--sizes', '100', '--sources',
                'inventory,colmena')
    found = rows(out, '100')
    assert [r[1] for r in found] == ['inventory', 'colmena'], out
    for row in found:
        assert row[2] == '100', out
        py_mb, nix_mb = float(row[7]), float(row[8])
        # before, nix MB was the Python's size (51 and 51): now its own
        assert 0 < nix_mb < py_mb, out


def test_flake_shapes_runs_on_a_small_flake():
    out = bench('-m', 'benchmarks.flake_shapes', '--sizes', '10', '--shapes', 'path',
                '--configs', 'shared')
    assert 'FAILED' not in out, out
    # each row as it is measured, then the table
    found = dict((r[3], r) for r in rows(out, 'path'))
    assert sorted(found) == ['inventory', 'nix_eval'], out
    assert found['inventory'][4] == found['nix_eval'][4] == '10', out
    nix_mb, py_mb = float(found['inventory'][9]), float(found['inventory'][10])
    assert 0 < nix_mb < py_mb, out


def test_the_harness_runs_the_tables_without_a_lab(tmp_path):
    """``python -m benchmarks --only eval,inventory,shapes``: the three
    through the harness's own calls of them (it called inventory_parse
    with the arguments of before), their tables in its output file."""
    output = str(tmp_path / 'results.json')
    out = bench('-m', 'benchmarks', '--only', 'eval,inventory,shapes', '--eval-sizes', '1',
                '--eval-heavy', '1000', '--inventory-sizes', '100', '--inventory-sources',
                'inventory', '--shapes-sizes', '10', '--output', output)
    with open(output) as handle:
        tables = json.load(handle)['tables']
    assert sorted(tables) == ['eval', 'inventory', 'shapes'], out
    (row,) = tables['inventory']['rows']
    assert row['hosts'] == 100 and 0 < row['nix_mb'] < row['py_mb'], row
    assert tables['eval']['rows'][0]['batched']['peak_mb'] > 0, tables['eval']
