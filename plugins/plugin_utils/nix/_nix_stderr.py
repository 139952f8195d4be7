# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One reader per thing Nix says on stderr, for every Nix the collection meets.

Beside ``_nix_output`` (what Nix prints as its answer: JSON, versions, path
lists, closure diffs), the same rule for what it writes while it works and
when it fails: each function takes what one command wrote to stderr and
returns ONE shape, whatever the version (Nix 2.8 to 2.34, Lix, Determinate
Nix), so no caller checks versions. Pure functions: nothing here runs a
process.

- the paths an error calls not valid  -> ``not_valid``
- ``nix copy`` progress               -> ``sent_paths``
- an error without the progress noise -> ``error_message``
- ``builtins.trace`` lines            -> ``traces``
- ``nix build`` errors                -> ``build_failures``; ``--dry-run`` -> ``dry_run``;
  a derivation for a system this machine does not build -> ``platform_mismatch``
- ``nix copy`` to a store that checks signatures -> ``unsigned``
- a target's store refusing work (full disk, read-only store, no daemon), in
  what Nix, sqlite or the shell said -> ``store_fault``
- a flake's ``nixConfig`` settings Nix ignored (``accept-flake-config =
  false``) -> ``refused_flake_settings``
"""

import json
import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_output import strip_ansi


# "error: path '/nix/store/...' is not valid" (every version)
_NOT_VALID = re.compile(r"path '(/nix/store/[^']+)' is not valid")


def not_valid(stderr):
    """The set of store paths an error of Nix names as not valid."""
    return set(_NOT_VALID.findall(strip_ansi(stderr)))


# ------------------------------------------------------------------ nix copy
_COPYING = re.compile(r"^copying path '(/nix/store/[^']+)' to ")
_COPYING_N = re.compile(r'^copying (\d+) paths')


def sent_paths(stderr):
    """``nix copy`` stderr -> the paths it reported sending, from its progress
    lines; None when it did not say (e.g. ``--quiet`` in nix_args)."""
    told, sent = False, []
    for line in strip_ansi(stderr).splitlines():
        line = line.strip()
        if _COPYING_N.match(line):
            told = True
        match = _COPYING.match(line)
        if match:
            told = True
            sent.append(match.group(1))
    return sent if told else None


# ------------------------------------------------------------------ a flake's nixConfig
# "warning: ignoring untrusted flake configuration setting 'pure-eval'" (2.8),
# with ".\nPass '--accept-flake-config' to trust it" after it on later Nix
# Nix's own warning line only: a flake's builtins.trace ("trace: ...") cannot
# make the run name a setting
_REFUSED_SETTING = re.compile(
    r"^warning: ignoring untrusted flake configuration setting '([^'\n]{1,200})'", re.MULTILINE)
# a setting's name as Nix spells them; anything else a flake wrote is not shown
_SETTING = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]*\Z')


def refused_flake_settings(stderr):
    """The sorted names of the flake's ``nixConfig`` settings Nix ignored
    (the collection's ``accept-flake-config = false``), from its warnings;
    names that are no setting name (the flake chose them) are left out."""
    found = set()
    for name in _REFUSED_SETTING.findall(strip_ansi(stderr or '')):
        if _SETTING.match(name):
            found.add(name)
    return sorted(found)


# ------------------------------------------------------------------ errors and traces
def error_message(stderr):
    """Nix's own error text in ``stderr``, without the progress noise before
    it: from the first line with ``error:`` on (else the last 40 lines)."""
    lines = [ln for ln in (stderr or '').splitlines() if ln.strip()]
    # Nix prints its error last, starting at the line with "error:".
    for idx, line in enumerate(lines):
        if line.lstrip().startswith('error:') or 'error:' in line[:20]:
            return '\n'.join(lines[idx:])
    return '\n'.join(lines[-40:])


def traces(stderr, marker):
    """``builtins.trace`` lines ``trace: <marker><index> <JSON>`` in ``stderr``
    -> ({index: the JSON, read}, the rest of stderr as text)."""
    found, rest = {}, []
    prefix = 'trace: ' + marker
    # '\n' only: the flake's own traces may hold \r, \x85 or \u2028
    for line in (stderr or '').split('\n'):
        if line.startswith(prefix):
            index, _sep, payload = line[len(prefix):].partition(' ')
            try:
                found[int(index)] = json.loads(payload)
            except ValueError:
                rest.append(line)
        else:
            rest.append(line)
    return found, '\n'.join(rest)


# ------------------------------------------------------------------ nix build
# Up to 2.28 and in Lix: "error: builder for '/nix/store/x.drv' failed with exit code 1;"
_BUILDER_FAILED = re.compile(r"builder for '(/[^']+\.drv)' failed")
# Up to 2.28 and in Lix: a platform or feature this machine lacks
_REQUIRED_TO_BUILD = re.compile(r"is required to build '(/[^']+\.drv)'")
# 2.29+: "error: Cannot build '/nix/store/x.drv'." then "Reason: builder failed ..."
_CANNOT_BUILD = re.compile(r"Cannot build '(/[^']+\.drv)'")
_REASON = re.compile(r'^\s*Reason:\s*(.*)$', re.MULTILINE)
# a derivation that did not build because another one failed says nothing of its own
_DEPENDENCY_FAILED = re.compile(r'^\d+ dependenc(?:y|ies) failed')
_SECTION = re.compile(r'^(?:this|these \d+) (derivations?|paths?) will be (built|fetched)')


def build_failures(stderr):
    """``nix build`` stderr -> ({drv that failed: its error block}, [other
    error blocks]).

    A derivation is named when its own build failed (its builder, or no
    machine for its platform); a derivation that only waited for a failed
    one ("N dependencies of derivation ... failed", 2.29+ "Reason: 1
    dependency failed") and every other error stay in the second list.
    A block is an ``error:`` line and the indented lines after it (the log
    tail of the builder).
    """
    blocks, current = [], []
    for line in strip_ansi(stderr).splitlines():
        if line.startswith('error:') and current:
            blocks.append(current)
            current = []
        if line.startswith('error:') or current:
            current.append(line)
    if current:
        blocks.append(current)
    by_drv, other = {}, []
    for block in blocks:
        text = '\n'.join(block).rstrip()
        drv = _failed_drv(block[0], text)
        if drv and drv not in by_drv:
            by_drv[drv] = text
        else:
            other.append(text)
    return by_drv, other


def _failed_drv(first, text):
    match = _BUILDER_FAILED.search(first) or _REQUIRED_TO_BUILD.search(first)
    if match:
        return match.group(1)
    match = _CANNOT_BUILD.search(first)
    if match:
        reason = _REASON.search(text)
        if reason and _DEPENDENCY_FAILED.match(reason.group(1).strip()):
            return None
        return match.group(1)
    return None


# A derivation for a system the machine neither builds nor has a builder for.
# Up to 2.28 and in Lix: "error: a 'aarch64-linux' with features {} is
# required to build '/nix/store/x.drv', but I am a 'x86_64-linux' with
# features {...}"; 2.29+: "Reason: platform mismatch", then "Required system:
# 'aarch64-linux'" and "Current system: 'x86_64-linux'" on lines of their own.
_REQUIRED_SYSTEM = re.compile(r"a '([^']+)' with features \{[^}]*\} is required to build "
                              r"'[^']+', but I am a '([^']+)'")
_PLATFORM_MISMATCH = re.compile(r'^\s*Reason:\s*platform mismatch', re.MULTILINE)
_NAMED_SYSTEM = re.compile(r"^\s*(Required|Current) system:\s*'([^']+)'", re.MULTILINE)


def platform_mismatch(text):
    """(required system, this machine's system) when ``text`` (an error
    block of ``build_failures``) says a derivation needs another platform,
    else None."""
    text = strip_ansi(text)
    match = _REQUIRED_SYSTEM.search(text)
    if match:
        return match.group(1), match.group(2)
    if _PLATFORM_MISMATCH.search(text):
        named = dict(_NAMED_SYSTEM.findall(text))
        if 'Required' in named:
            return named['Required'], named.get('Current')
    return None


def dry_run(stderr):
    """``nix build --dry-run`` stderr -> (drvs to build, paths to fetch).
    The same words in every version."""
    build, fetch, current = [], [], None
    for line in strip_ansi(stderr).splitlines():
        text = line.strip()
        match = _SECTION.match(text)
        if match:
            current = build if match.group(2) == 'built' else fetch
            continue
        if current is not None and line.startswith('  ') and text.startswith('/'):
            current.append(text)
        elif text:
            current = None
    return build, fetch


# ------------------------------------------------------------------ signatures
# Nix 2.8-2.11: "cannot add path '...' because it lacks a valid signature";
# 2.12+ and Lix: "... because it lacks a signature by a trusted key".
UNSIGNED_MARKERS = ('lacks a valid signature', 'lacks a signature')


def unsigned(stderr):
    """Whether a store refused a path for want of a trusted signature."""
    text = strip_ansi(stderr)
    return any(marker in text for marker in UNSIGNED_MARKERS)


# ------------------------------------------------------------------ store faults
# What a target's store says when it cannot take work, in every Nix's words
# (and sqlite's and the shell's: a full disk reaches Nix's database too):
# the kind, the marker, and our words for it.
NO_SPACE = 'no_space'
READ_ONLY = 'read_only'
NO_DAEMON = 'no_daemon'
_STORE_FAULTS = (
    (NO_SPACE, re.compile(r'No space left on device|database or disk is full|[Dd]isk quota exceeded')),
    (READ_ONLY, re.compile(r'Read-only file system')),
    # "cannot connect to socket at '/nix/var/nix/daemon-socket/socket':
    # Connection refused" (2.8 to 2.34; "No such file or directory" once the
    # socket is gone)
    (NO_DAEMON, re.compile(r"cannot connect to (?:socket|daemon) at '([^']*)'")),
)


def store_fault(text):
    """(kind, line) of the first store fault ``text`` tells of (NO_SPACE,
    READ_ONLY, NO_DAEMON and the line that says it), else (None, None)."""
    lines = strip_ansi(text).splitlines()
    for kind, marker in _STORE_FAULTS:
        for line in lines:
            found = marker.search(line)
            if found:
                # from Nix's own "error:" on, without what a wrapper added after it
                start = line.rfind('error:', 0, found.start())
                said = line[start if start >= 0 else found.start():]
                cut = said.find(' (', found.end() - (start if start >= 0 else found.start()))
                return kind, (said[:cut] if cut >= 0 else said).strip()
    return None, None
