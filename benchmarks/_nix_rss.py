# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nix's own peak memory, whatever the size of the Python that runs it.

Linux keeps the high-water RSS of what a process was before its exec in
the exec'ed program's ru_maxrss, so a Nix started by a Python that has
loaded Ansible reads at least that Python's size (~50 MB) whatever Nix
used. ``nix_wrapper(folder)`` writes a ``nix_bin`` run by a bare Python (no
site, ~10 MB): it forks, execs nix and appends nix's own maxrss (KB), as
wait4 reports it, to ``$NIXDEPLOY_BENCH_RSS``, one line a run;
``peak_mb(path)`` reads the largest.
"""

import os
import sys

WRAPPER = """#!%s -IS
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp('nix', ['nix'] + sys.argv[1:])
    finally:
        os._exit(127)
_pid, status, usage = os.wait4(pid, 0)
target = os.environ.get('NIXDEPLOY_BENCH_RSS')
if target:
    with open(target, 'a') as handle:
        handle.write('%%d\\n' %% usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status) %% 256)
"""


def nix_wrapper(folder):
    """The path of a ``nix_bin`` that reports nix's own peak RSS."""
    path = os.path.join(folder, 'nix-rss')
    with open(path, 'w') as handle:
        handle.write(WRAPPER % sys.executable)
    os.chmod(path, 0o755)
    return path


def peak_mb(path):
    """The largest peak RSS the wrapper wrote to ``path`` (MB), None if none."""
    try:
        with open(path) as handle:
            found = [int(line) for line in handle if line.strip().isdigit()]
    except OSError:
        return None
    return max(found) / 1024.0 if found else None
