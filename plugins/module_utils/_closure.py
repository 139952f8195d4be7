# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The closure difference between two systems (``nix store diff-closures``),
as lines for people and a summary for programs.

Computed on the controller, which must hold both closures: the running
system was deployed from it, the new one was built there (check mode builds
it too when diff mode asks for the difference).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _nix

# Nix colours sizes even when writing to a pipe
_ANSI = re.compile(r'\x1b\[[0-9;]*m')
_SIZE = re.compile(r'([+-])([0-9.]+) (B|KiB|MiB|GiB|TiB)\s*$')
_UNITS = {'B': 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30, 'TiB': 1 << 40}
EMPTY = u'\u2205'  # how diff-closures writes "no version": the package is new or gone


def parse(text):
    """``diff-closures`` output -> (lines, summary dict)."""
    lines = [_ANSI.sub('', line).rstrip() for line in text.splitlines() if line.strip()]
    added, removed, changed, size = [], [], [], 0
    for line in lines:
        name, _sep, change = line.partition(': ')
        versions = change.split(',')[0]
        if versions.startswith(EMPTY):
            added.append(name)
        elif versions.rstrip().endswith(EMPTY):
            removed.append(name)
        else:
            changed.append(name)
        match = _SIZE.search(line)
        if match:
            amount = float(match.group(2)) * _UNITS[match.group(3)]
            size += int(amount) if match.group(1) == '+' else -int(amount)
    return lines, {'added': added, 'removed': removed, 'changed': changed,
                   'size_change_bytes': size, 'lines': lines}


def diff_closures(opts, before, after):
    """(lines, summary) of the difference from ``before`` to ``after``; a
    difference that cannot be computed is one line saying why, summary None."""
    try:
        out = _nix.nix(opts, 'store diff-closures', [before, after],
                       'the closure difference', flake_command=False)
    except _nix.NixError as exc:
        return ['closure difference unavailable: %s' % (exc.nix_message() or exc)], None
    return parse(out)
