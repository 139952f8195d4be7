# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The closure difference between two systems (``nix store diff-closures``),
as lines for people and a summary for programs.

Computed on the controller, which must hold both closures: the running
system was deployed from it, the new one was built there (check mode builds
it too when diff mode asks for the difference). Nix's lines are read by
``_nix_output.diff_closures`` (the size format changed in Nix 2.33).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _nix, _nix_output


def diff_closures(opts, before, after):
    """(lines, summary) of the difference from ``before`` to ``after``; a
    difference that cannot be computed is one line saying why, summary None."""
    try:
        out = _nix.nix(opts, 'store diff-closures', [before, after],
                       'the closure difference', flake_command=False)
    except _nix.NixError as exc:
        return ['closure difference unavailable: %s' % (exc.nix_message() or exc)], None
    return _nix_output.diff_closures(out)
