# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's config file and the flake it names, checked before Nix runs.

A new user's first mistakes (a typo'd key, a wrong ``flake:`` path, a
``flake.nix`` git does not track, no ``nix`` on the controller) reach Nix as
something else: a typo'd ``flake`` key leaves the default ``.``, and Nix then
says ``getting status of '/nix/store/...-source/flake.nix'``, a path the user
never wrote. Each is named here in the user's words (the key, the folder, the
config file) with its fix. Everything here reads only the controller's file
system, git's index and PATH. ``nix_error`` shortens what Nix does say: the
frames of the plugin's own ``--apply`` expression out.
"""

import difflib
import os
import re
import shutil
import subprocess

import yaml

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_error import (
    InventoryError)

GIT_FILE = 'git+file://'
# how long git may take to list a work tree's tracked files (a big checkout
# on a slow disk); on a timeout the check is skipped, Nix still speaks
GIT_TIMEOUT = 30
# Nix's words for a file missing from the copy of the flake it evaluates: a
# git flake's copy holds only the files git tracks
_STORE_SOURCE = re.compile(r"getting status of '/nix/store/[a-z0-9]{32}-source/([^']+)'")
_NOT_TRACKED = re.compile(r"Path '([^']+)' in the repository \"([^\"]+)\" is not tracked by Git")
# Nix's words for a flake.nix with an attribute beside outputs (the
# inventory set put at the flake's top level)
_UNSUPPORTED = re.compile(r"has an unsupported attribute '([^']+)'")
# a frame of Nix's trace (2.13+: `… while evaluating ...` and its location)
# that points into the plugin's own --apply expression, which Nix calls «string»
_FRAME = re.compile(r'^\s*… ')


def nix_error(text):
    """Nix's message without the frames of the plugin's own ``--apply``
    expression (``… while calling the 'seq' builtin at «string»:196:1``),
    which say nothing about the user's flake; the user's own frames stay."""
    frames, current = [], []
    for line in (text or '').splitlines():
        if _FRAME.match(line) or line.lstrip().startswith(('error:', '(stack trace truncated')):
            frames.append(current)
            current = []
        current.append(line)
    frames.append(current)
    ours = [f for f in frames if f and _FRAME.match(f[0]) and '«string»' in '\n'.join(f)]
    kept = [f for f in frames if f and not any(f is o for o in ours)]
    if ours and not any(_FRAME.match(f[0]) for f in kept):
        # only the plugin's frames were cut short: --show-trace would show only more of them
        kept = [f for f in kept if not f[0].lstrip().startswith('(stack trace truncated')]
    if (len(kept) > 1 and [ln.strip() for ln in kept[0]] == ['error:']
            and kept[1][0].lstrip().startswith('error:')):
        # nothing was left between Nix's opening `error:` and the message
        kept = [[kept[1][0].lstrip()] + kept[1][1:]] + kept[2:]
    return '\n'.join(line for frame in kept for line in frame).strip()


def outside_outputs(nix_message):
    """The line that says where an attribute Nix refused at the top of
    flake.nix belongs (inside ``outputs``), or ''."""
    said = _UNSUPPORTED.search(nix_message or '')
    if not said:
        return ''
    return ('\n%s sits beside outputs in flake.nix; it must sit inside: outputs = { self, ... }: '
            '{ %s = ...; nixosConfigurations = ...; }' % (said.group(1), said.group(1)))


# the names a config file of the plugin must have (its verify_file)
CONFIG_SUFFIXES = ('.nix.yml', '.nix.yaml')
# what a file may be named that someone meant as the plugin's config file,
# and the most of it that is read to tell
_CONFIG_LIKE = ('.yml', '.yaml', '.json')
_CONFIG_MAX_BYTES = 64 * 1024
PLUGIN_NAME = 'nixdeploy.fleet.nix'


def misnamed_config(path):
    """The sentence with the fix when ``path`` is a YAML (or JSON) file whose
    ``plugin:`` is this plugin but whose name does not end in ``.nix.yml``
    or ``.nix.yaml`` (ansible-core then only says it could not parse it, the
    reason at -vvv), else None. Reads at most 64 KiB of the file."""
    name = os.path.basename(path)
    if name.endswith(CONFIG_SUFFIXES) or not name.endswith(_CONFIG_LIKE):
        return None
    try:
        if os.path.getsize(path) > _CONFIG_MAX_BYTES:
            return None
        with open(path, 'rb') as handle:
            text = handle.read(_CONFIG_MAX_BYTES).decode('utf-8')
        data = yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or data.get('plugin') != PLUGIN_NAME:
        return None
    stem = name.rsplit('.', 1)[0]
    return ('%s names plugin: %s, but the plugin reads only files whose name ends in .nix.yml or '
            '.nix.yaml, so nothing read it: rename it to %s.nix.yml' % (path, PLUGIN_NAME, stem))


def check_keys(config, known, path):
    """Refuse a key of the config file that is no option of the plugin: a
    typo (``flak``) would leave the option at its default, silently."""
    for key in sorted(str(k) for k in config if k not in known):
        near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = ('did you mean %s?' % near[0]) if near else \
            'the options: ansible-doc -t inventory nixdeploy.fleet.nix'
        raise InventoryError('unknown option %s in %s; %s' % (key, path, hint))


def check_nix(nix_bin, path):
    """The nix program the evaluation runs is there: one sentence naming the
    option and the fix, never a Python error of a missing file."""
    nix_bin = nix_bin or 'nix'
    if shutil.which(nix_bin):
        return
    if os.sep in nix_bin:
        raise InventoryError('nix_bin %s in %s is no program on this controller: set nix_bin to the '
                             'path of nix (command -v nix), or remove it to use nix from PATH'
                             % (nix_bin, path))
    raise InventoryError('%s is not on the PATH of this controller: install Nix here, or set nix_bin '
                         'in %s to the path of the nix program' % (nix_bin, path))


def flake_folder(value, ref, base_dir):
    """The folder a path-like ``flake`` option names (as ``flake_ref`` read
    it: relative to ``base_dir``), or None for a flake reference with a scheme
    (``github:``, ``path:``), whose errors Nix words well enough."""
    text = str(value or '')
    if ref == text or not ref.startswith((GIT_FILE, 'path:')):
        return None
    folder = os.path.expanduser(text)
    if base_dir and not os.path.isabs(folder):
        folder = os.path.join(base_dir, folder)
    return os.path.abspath(folder)


def git_top(ref):
    """The top of the git work tree of a ``git+file://`` reference, or None."""
    if not ref.startswith(GIT_FILE):
        return None
    return ref[len(GIT_FILE):].split('?', 1)[0]


class NoFlakeError(InventoryError):
    """A path flake without flake.nix: often a run in another project's
    folder, whose inventory names a flake that is not there."""


def check_flake_folder(value, ref, path):
    """A path flake has a flake.nix, and git tracks it when the folder is in
    a git work tree (Nix copies only the tracked files of a git flake)."""
    folder = flake_folder(value, ref, os.path.dirname(os.path.abspath(path)))
    if folder is None:
        return
    if not os.path.isfile(os.path.join(folder, 'flake.nix')):
        where = 'in' if os.path.isabs(os.path.expanduser(str(value))) else 'relative to'
        raise NoFlakeError('no flake.nix in %s (flake: %s %s %s)' % (folder, value, where, path))
    top = git_top(ref)
    if top is not None:
        rel = os.path.relpath(os.path.join(folder, 'flake.nix'), top)
        if tracked(top, rel) is False:
            raise InventoryError(untracked_message(top, rel))


def untracked_message(top, rel):
    return ('%s is not tracked by git in %s: git add %s (Nix reads only the files git tracks)'
            % (rel, top, rel))


def tracked(top, rel):
    """Whether git's index in ``top`` holds ``rel``; None when git cannot say
    (no git, not a work tree git reads, a timeout): then Nix speaks."""
    git = shutil.which('git')
    if git is None:
        return None
    try:
        # controller-only code reading the user's checkout
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
            [git, '-C', top, 'ls-files', '-z', '--', rel], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return bool(proc.stdout.strip(b'\0'))


def untracked_source(nix_message, ref):
    """When Nix could not find a file in the copy of a git flake and that file
    is in the work tree but untracked: the sentence saying so, else None.
    Nix 2.20 and later say it themselves (``Path 'hosts.nix' in the repository
    "..." is not tracked by Git``), under frames of the plugin's own
    expression: the same sentence then."""
    said = _NOT_TRACKED.search(nix_message or '')
    if said:
        return untracked_message(said.group(2), said.group(1))
    top = git_top(ref)
    if top is None:
        return None
    for rel in _STORE_SOURCE.findall(nix_message or ''):
        rel = rel.rstrip('/')
        if os.path.lexists(os.path.join(top, rel)) and tracked(top, rel) is False:
            return untracked_message(top, rel)
    return None
