# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the evaluators may use, and what they are measured to use.

How many evaluators a run starts (``default_workers``: as many as cores, as
the free memory less ``RESERVED_MB`` allows at ``max_memory_mb`` each, and
as hosts), the heap each Nix starts with (``initial_heap_bytes``) and the
marker threads its collector may use (``gc_markers``), a process's resident
memory (``rss_mb``), and the usual time of the hosts the pool has measured
(``median``). The pool's accounting, kept apart from its queue and its
processes (``_pool``).
"""

import os

# nix-eval-jobs' default --max-memory-size
DEFAULT_MAX_MEMORY_MB = 4096
RESERVED_MB = 1024


def rss_mb(pid):
    """A process's resident memory in MB (0 when it is gone)."""
    try:
        with open('/proc/%d/status' % pid) as handle:
            for line in handle:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) // 1024
    except (OSError, IOError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid):
    """The CPU seconds (user and system) a process has used so far, or
    None where the system does not tell (no /proc, or it is gone)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            text = handle.read()
        # its name, in parentheses, may hold spaces: the fields follow the last one
        fields = text[text.rindex(')') + 2:].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))
    except (OSError, IOError, ValueError, IndexError):
        return None


def initial_heap_bytes(max_memory_mb):
    """The heap an evaluator starts with: three quarters of its memory
    bound, at least Nix's own 384 MiB."""
    return max(384, int(max_memory_mb) * 3 // 4) * 2 ** 20


def gc_markers(workers, cpus=None):
    """The marker threads each evaluator's collector may use: the cores
    shared among the evaluators, at least one."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, int(workers)))


def available_mb(meminfo='/proc/meminfo'):
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) // 1024
    except (OSError, IOError, ValueError, IndexError):
        pass
    return None


def default_workers(hosts, max_memory_mb, cpus=None, free_mb=None):
    """As many evaluators as cores, as the memory budget (free memory less
    1 GB, ``max_memory_mb`` each) and as hosts allow (``hosts`` None: any
    number); at least one."""
    cpus = cpus or os.cpu_count() or 1
    free_mb = available_mb() if free_mb is None else free_mb
    by_memory = cpus if free_mb is None else (free_mb - RESERVED_MB) // max(1, max_memory_mb)
    return int(max(1, min(cpus, by_memory, cpus if hosts is None else hosts)))


def median(values):
    return sorted(values)[len(values) // 2] if values else 0.0
