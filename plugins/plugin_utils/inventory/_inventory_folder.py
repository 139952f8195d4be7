# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run started outside the fleet's folder, and the folder to ``cd`` to.

Ansible reads ``ansible.cfg`` from the folder it runs in; run elsewhere, it
reads none (or another project's) and so has no inventory of the fleet.
What the user sees then is about something else: the playbook's ``hosts:``
selecting nothing, or another project's inventory failing (a clone's demo
flake). The words here say that the folder is wrong and, when fleet folders
are near (the one the run is in or above, else up to two folders below
it), which ones: a few at most, every one found, for the user to choose. A
fleet's folder is one with an ``ansible.cfg`` and an ``inventory/``
holding a file of this plugin (``*.nix.yml``), as the quickstart lays it
out. Only names are read, of a bounded number of folders.

Two places below the run are never looked into: a folder every user
writes in (sticky and world-writable, as ``/tmp``: what lies below it is
other people's or other sessions' work, not this user's fleet), and a
collection's own ``examples/`` (beside its ``galaxy.yml``: a clone's demos,
not the fleet the user made elsewhere). Nor is such a clone's own folder,
laid out as a fleet's for its demo, ever named.
"""

import os
import stat

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_config import (
    CONFIG_SUFFIXES)

# folders below the run's that are never a fleet's, and the most entries of
# one folder looked at (a home folder can hold thousands)
_SKIPPED = ('.git', 'node_modules', '.cache', '.venv', '.direnv', 'result', 'reports')
_MAX_ENTRIES = 400
_DEPTH = 2
# the most fleet folders a hint names
_MOST = 3


def is_fleet_folder(folder):
    """Whether ``folder`` is laid out as a fleet's: ansible.cfg and an
    inventory/ folder with a ``*.nix.yml`` (or ``.nix.yaml``) file; a
    collection's own source (its ``galaxy.yml``: a clone's demo) is not."""
    inventory = os.path.join(folder, 'inventory')
    if not os.path.isfile(os.path.join(folder, 'ansible.cfg')) or not os.path.isdir(inventory) \
            or os.path.isfile(os.path.join(folder, 'galaxy.yml')):
        return False
    try:
        return any(name.endswith(CONFIG_SUFFIXES) for name in os.listdir(inventory))
    except OSError:
        return False


def _shared(folder):
    """Whether every user writes in ``folder`` (sticky and world-writable)."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return True
    return bool(mode & stat.S_ISVTX) and bool(mode & stat.S_IWOTH)


def _children(folder):
    """The folders below ``folder`` that may hold the user's fleet."""
    if _shared(folder):
        return []
    try:
        names = sorted(os.listdir(folder))[:_MAX_ENTRIES]
    except OSError:
        return []
    collection = os.path.isfile(os.path.join(folder, 'galaxy.yml'))
    return [os.path.join(folder, name) for name in names
            if name not in _SKIPPED and not (collection and name == 'examples')
            and os.path.isdir(os.path.join(folder, name))]


def fleet_folders(start, besides=()):
    """The fleet folders nearest ``start``: ``start`` itself or the one above
    it (a run from inside the fleet's ``inventory/``: that one only), else
    those up to two folders below it, nearest first, by name, _MOST at
    most; [] when there is none. ``besides``: folders that do not count
    (the one whose inventory just failed)."""
    skip = set(os.path.realpath(f) for f in besides)
    folder = os.path.abspath(start)
    while True:
        if os.path.realpath(folder) not in skip and is_fleet_folder(folder):
            return [folder]
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    found, level = [], [os.path.abspath(start)]
    for _depth in range(_DEPTH):
        level = [child for parent in level for child in _children(parent)]
        found += [child for child in level
                  if os.path.realpath(child) not in skip and is_fleet_folder(child)]
    return found[:_MOST]


def _shown(found, start):
    # relative when below the run's folder, else whole
    rel = os.path.relpath(found, start)
    return rel if not rel.startswith(os.pardir) else found


def cd_hint(start, besides=()):
    """``cd FOLDER`` for the fleet folder nearest ``start`` (relative when it
    is below it), the choice when there are several, or the words for the
    folder to look for."""
    found = fleet_folders(start, besides)
    if not found:
        return "cd to your fleet's folder (the one with ansible.cfg and inventory/) and run again"
    if len(found) == 1:
        return 'cd %s and run again' % _shown(found[0], start)
    return "cd to your fleet's folder and run again: %s or %s" % (
        ', '.join(_shown(f, start) for f in found[:-1]), _shown(found[-1], start))


def is_fleet_source(source):
    """Whether one inventory source (an ``-i`` value or ansible.cfg's
    ``inventory``) is, or is a folder holding, a file of this plugin."""
    if source.endswith(CONFIG_SUFFIXES):
        return True
    if os.path.isdir(source):
        try:
            return any(name.endswith(CONFIG_SUFFIXES) for name in os.listdir(source))
        except OSError:
            return False
    return False


def elsewhere(config_path, start):
    """For an inventory config whose flake is not there: the words naming
    the fleet folders nearest ``start`` (the run's folder) when they are
    another project's than the config's, else ''."""
    project = os.path.dirname(os.path.dirname(os.path.abspath(config_path)))
    found = fleet_folders(start, [project])
    if not found:
        return ''
    if len(found) == 1:
        return ('; this inventory is not the one of the fleet folder %s: if that is your fleet, %s'
                % (found[0], cd_hint(start, [project])))
    return ('; this inventory is not the one of the fleet folders %s: if one is your fleet, %s'
            % (', '.join(found), cd_hint(start, [project])))
