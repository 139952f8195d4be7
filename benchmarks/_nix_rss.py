# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A process's own peak memory and CPU, whatever the size of who runs it.

Linux keeps the high-water RSS of what a process was before its exec in
the exec'ed program's ru_maxrss, so a Nix started by a Python that has
loaded Ansible (or a pytest worker after hundreds of tests) reads at least
that Python's size whatever Nix used. ``wrapper(folder, prefix)`` writes an
executable run by a bare Python (no site, ~10 MB): it forks, execs
``prefix`` + its arguments and appends that child's own maxrss (KB) and CPU
seconds, as wait4 reports them, to ``$NIXDEPLOY_BENCH_RSS``, one line a
run. ``nix_wrapper`` is one for ``nix`` (a ``nix_bin``), ``usages`` and
``peak_mb`` read the lines. tests/lab/heavy.py measures with it too.
"""

import os
import sys

WRAPPER = """#!%(python)s -IS
import os, sys
argv = %(prefix)r + sys.argv[1:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_pid, status, usage = os.wait4(pid, 0)
target = os.environ.get('NIXDEPLOY_BENCH_RSS')
if target:
    with open(target, 'a') as handle:
        handle.write('%%d %%.6f\\n' %% (usage.ru_maxrss, usage.ru_utime + usage.ru_stime))
sys.exit(os.waitstatus_to_exitcode(status) %% 256)
"""


def wrapper(folder, prefix=(), name='own-usage'):
    """The path of an executable that runs ``prefix`` + its arguments and
    reports that process's own usage."""
    path = os.path.join(folder, name)
    with open(path, 'w') as handle:
        handle.write(WRAPPER % {'python': sys.executable, 'prefix': list(prefix)})
    os.chmod(path, 0o755)
    return path


def nix_wrapper(folder):
    """The path of a ``nix_bin`` that reports nix's own peak RSS."""
    return wrapper(folder, ['nix'], 'nix-rss')


def usages(path):
    """[(peak RSS KB, CPU seconds)] of each run the wrapper wrote to ``path``."""
    try:
        with open(path) as handle:
            lines = [line.split() for line in handle]
    except OSError:
        return []
    return [(int(words[0]), float(words[1])) for words in lines if len(words) == 2]


def peak_mb(path):
    """The largest peak RSS the wrapper wrote to ``path`` (MB), None if none."""
    found = usages(path)
    return max(kb for kb, _cpu in found) / 1024.0 if found else None
