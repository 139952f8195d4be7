# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one loader of the POSIX sh programs that run on targets, and the one
reader of what they print.

Every program that runs on a target is a real ``.sh`` file in
``module_utils/target/`` (so shellcheck checks it and diffs read as shell).
``render`` builds the text sent over the connection: the values as quoted
assignments (nothing from a task or the inventory is ever pasted into the
program text), then ``lib.sh``, then the named files in order. ``parse``
reads the one output format every program uses (``emit`` in lib.sh).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import KNOWN_NIX_DIRS

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'target')
MARK = '@@nixdeploy '
LOG_MARK = '@@nixdeploy-log'
LIBRARY = 'lib.sh'

_NAME = re.compile(r'^[A-Z_][A-Z0-9_]*$')
_CACHE = {}


def source(name):
    """The text of ``target/<name>`` (read once per process)."""
    if name not in _CACHE:
        with open(os.path.join(FOLDER, name)) as handle:
            _CACHE[name] = handle.read()
    return _CACHE[name]


def word(value):
    """One sh word for ``value``: None -> '', booleans -> 1/0."""
    if value is None:
        value = ''
    elif isinstance(value, bool):
        value = '1' if value else '0'
    return shlex.quote(str(value))


def assignments(values):
    """``NAME='value'`` lines, in a stable order."""
    lines = []
    for name in sorted(values):
        if not _NAME.match(name):
            raise ValueError('not a shell variable name: %r' % (name,))
        value = values[name]
        if isinstance(value, (list, tuple, dict)):
            raise ValueError('%s: pass text, a number or a boolean, not %s'
                             % (name, type(value).__name__))
        lines.append('%s=%s\n' % (name, word(value)))
    return ''.join(lines)


def render(names, values=None):
    """The program: quoted ``values``, lib.sh, then the files ``names``.
    ``NIX_DIRS`` (the known nix locations) is always set."""
    all_values = {'NIX_DIRS': ' '.join(KNOWN_NIX_DIRS)}
    all_values.update(values or {})
    if isinstance(names, str):
        names = [names]
    return assignments(all_values) + ''.join(source(n) for n in [LIBRARY] + list(names))


def parse(output):
    """(values, log): the ``@@nixdeploy key=value`` lines and the text after
    the log mark."""
    values, log, in_log = {}, [], False
    for line in (output or '').splitlines():
        if line.startswith(MARK):
            key, _sep, value = line[len(MARK):].partition('=')
            values[key.strip()] = value
        elif line.startswith(LOG_MARK):
            in_log = True
        elif in_log:
            log.append(line)
    return values, '\n'.join(log)


def df_space(line):
    """(available KiB, mount point) from a POSIX ``df -Pk`` data line (GNU,
    busybox, macOS), (None, None) when unreadable. The file system's name may
    hold spaces: the value is the one before the capacity (``NN%``), the
    mount point what follows it."""
    fields = (line or '').split()
    for idx in range(len(fields) - 1, 0, -1):
        if fields[idx].endswith('%') and fields[idx][:-1].isdigit():
            value = fields[idx - 1]
            mount = ' '.join(fields[idx + 1:]) or None
            return (int(value) if value.isdigit() else None), mount
    return None, None
