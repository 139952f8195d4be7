# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A flake given as a path, turned into the flake reference Nix would read.

Apart from ``_nix`` (which runs Nix) because it reads only the controller's
file system: whether a folder is inside a git work tree decides between a
``git+file://`` flake (tracked files only, a commit publish can pin) and a
``path:`` flake.
"""

import os

from urllib.parse import quote

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError


def flake_ref(flake, base_dir=None):
    """Turn a path-like flake (relative to ``base_dir``) into a flake ref, as
    Nix reads a path given on its command line.

    Flake refs with a scheme (``github:``, ``git+https://``, ``path:``) pass
    through untouched. A folder inside a git work tree (``.git`` a folder, or
    a file in a worktree or submodule) at it or above it is that git flake,
    with ``?dir=`` for a folder below the top: Nix then sees tracked files
    only, and publish can pin the commit. Any other folder is a ``path:``
    flake.
    """
    if not flake:
        raise NixError('no flake given')
    text = str(flake)
    if ':' in text.split('#', 1)[0] and not text.startswith(('/', '.', '~')):
        return text
    path = os.path.expanduser(text)
    if base_dir and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    path = os.path.abspath(path)
    top = _git_top(path)
    if top is None:
        return 'path:' + path
    below = os.path.relpath(path, top)
    return 'git+file://' + top + ('' if below == '.' else '?dir=' + quote(below, safe='/'))


def _git_top(path):
    """The nearest folder at or above ``path`` that holds ``.git``, or None."""
    current = path
    while True:
        if os.path.exists(os.path.join(current, '.git')):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
