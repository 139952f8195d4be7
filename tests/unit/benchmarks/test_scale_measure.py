# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/_scale_measure.py: what benchmark 10 reports of a run's main
process is all of its CPU, its last seconds too."""

import sys

from benchmarks._scale_measure import timed

# a process that spends one CPU second and ends: shorter than the memory
# sampler's period, so only the reading of its zombie sees it all
BURN = 'import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0:\n    pass\n'


def test_the_main_process_cpu_counts_its_last_seconds(tmp_path):
    result = timed([sys.executable, '-c', BURN], log=str(tmp_path / 'run.log'))
    assert result['rc'] == 0
    assert 0.9 <= result['memory']['main_cpu'] <= result['cpu'] + 0.1, result
