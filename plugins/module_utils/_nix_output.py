# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One reader per Nix output, for every Nix the collection meets.

Nix changed the shape of what it prints several times between 2.8 (Debian
12) and 2.34, Lix (forked from Nix 2.18, numbered 2.90 and up) kept older
shapes, and Determinate Nix prints upstream's. Each function here takes what
one command printed (text, or its parsed JSON) and returns ONE shape, so no
caller checks versions. Pure functions: nothing here runs a process.

- ``nix --version``                -> ``nix_version``
- ``nix path-info --json``         -> ``path_infos``; the paths an error calls
  not valid -> ``not_valid``
- ``nix-store --check-validity --print-invalid`` (a path a line) -> ``listed_paths``
- ``nix copy`` progress            -> ``sent_paths``
- ``builtins.trace`` lines          -> ``traces``; an error without the noise -> ``error_message``
- ``nix show-derivation`` / ``nix derivation show`` -> ``derivations``
- ``nix build`` errors             -> ``build_failures``; ``--dry-run`` -> ``dry_run``
- ``nix store diff-closures``      -> ``diff_closures``
- ``nix copy`` to a store that checks signatures -> ``unsigned``
- ``nix flake metadata --json``    -> ``flake_metadata``
- a target's store refusing work (full disk, read-only store, no daemon), in
  what Nix, sqlite or the shell said -> ``store_fault``
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils._data import to_int

STORE_DIR = '/nix/store'

NIX = 'nix'
LIX = 'lix'
DETERMINATE = 'determinate'

# Lix branched off Nix 2.18 and numbers its releases 2.90 and up: for what
# the command line understands it is a 2.18.
LIX_IS_LIKE = (2, 18, 0)

# colours (CSI ... m) and hyperlinks (OSC 8): Nix may colour even a pipe
_ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)')


def strip_ansi(text):
    return _ANSI.sub('', text or '')


def full_path(path, store_dir=STORE_DIR):
    """A store path as a full path: Nix 2.32+ writes bare names in some JSON."""
    if not path:
        return None
    text = u'%s' % (path,)
    return text if text.startswith('/') else '%s/%s' % (store_dir.rstrip('/'), text)


# ------------------------------------------------------------------ nix --version
# "nix (Nix) 2.8.0", "nix (Lix, like Nix) 2.93.0" (more lines follow),
# "nix (Determinate Nix 3.8.2) 2.31.1", "nix (Nix) 2.35.0pre20260101_abc"
_VERSION = re.compile(r'\(([^)]*)\)\s+v?(\d+)\.(\d+)(?:\.(\d+))?')


def nix_version(text):
    """``nix --version`` -> (flavour, (major, minor, patch)); flavour is
    ``nix``, ``lix`` or ``determinate`` (whose numbers are the upstream Nix
    it is built on). ValueError when the text names no version."""
    for line in strip_ansi(text).splitlines():
        match = _VERSION.search(line)
        if match:
            brand = match.group(1).lower()
            flavour = LIX if 'lix' in brand else DETERMINATE if 'determinate' in brand else NIX
            return flavour, (int(match.group(2)), int(match.group(3)), int(match.group(4) or 0))
    raise ValueError('no Nix version in %r' % (text or '')[:200])


def like_nix(flavour, version):
    """The upstream Nix version whose command line ``flavour``/``version`` has."""
    return LIX_IS_LIKE if flavour == LIX else tuple(version)


# ------------------------------------------------------------------ path-info
def path_infos(data, store_dir=STORE_DIR):
    """``nix path-info --json`` (parsed) -> {full store path: info or None}.

    None: the path is not valid in that store. Accepts the list of Nix < 2.19
    and Lix (``valid: false`` for a missing path), the map of 2.19+ (``null``
    for a missing path, absent fields as ``null`` from 2.23, ``storeDir`` and
    ``version`` inside each info from 2.33) and the ``--json-format 2``/``3``
    wrapper ``{version, storeDir, info}`` with bare names and structured
    signatures. Each info has ``path``, ``references`` (full paths),
    ``narSize`` (int), ``signatures`` (``name:base64`` strings) and
    ``deriver`` (full path or None) besides what Nix wrote.
    """
    if isinstance(data, dict) and isinstance(data.get('info'), dict) and 'version' in data:
        store_dir = data.get('storeDir') or store_dir
        data = data['info']
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = []
        for item in data:
            if not isinstance(item, dict):
                raise ValueError('a path-info list holds %r' % (item,))
            items.append((item.get('path'), None if item.get('valid', True) is False else item))
    else:
        raise ValueError('not path-info JSON: %s' % type(data).__name__)
    found = {}
    for path, info in items:
        if not path:
            continue
        path = full_path(path, store_dir)
        if not isinstance(info, dict):
            found[path] = None
            continue
        info = dict(info)
        info.pop('valid', None)
        info['path'] = path
        info['references'] = [full_path(r, store_dir) for r in info.get('references') or []]
        info['narSize'] = int(info.get('narSize') or 0)
        info['signatures'] = [_signature(s) for s in info.get('signatures') or []]
        info['deriver'] = full_path(info.get('deriver'), store_dir)
        found[path] = info
    return found


def _signature(sig):
    # --json-format 3 (Nix 2.35) writes {"keyName": ..., "sig": ...}
    if isinstance(sig, dict):
        return u'%s:%s' % (sig.get('keyName', ''), sig.get('sig', ''))
    return u'%s' % (sig,)


# "error: path '/nix/store/...' is not valid" (every version)
_NOT_VALID = re.compile(r"path '(/nix/store/[^']+)' is not valid")


def not_valid(stderr):
    """The set of store paths an error of Nix names as not valid."""
    return set(_NOT_VALID.findall(strip_ansi(stderr)))


def listed_paths(text):
    """The set of store paths a command printed one a line (``nix-store
    --check-validity --print-invalid``)."""
    return set(ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip())


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
    for line in (stderr or '').splitlines():
        if line.startswith(prefix):
            index, _sep, payload = line[len(prefix):].partition(' ')
            try:
                found[int(index)] = json.loads(payload)
            except ValueError:
                rest.append(line)
        else:
            rest.append(line)
    return found, '\n'.join(rest)


# ------------------------------------------------------------------ derivation show
def derivations(data, store_dir=STORE_DIR):
    """``nix show-derivation`` / ``nix derivation show`` (parsed) ->
    {full drv path: {'outputs': {name: full path or None}, 'input_drvs':
    [full drv paths, sorted]}}.

    Accepts: ``inputDrvs`` values as a list of outputs (Nix < 2.18) or as
    ``{outputs, dynamicOutputs}`` (2.18+, Lix); bare store names in keys and
    paths (2.32+); the ``{version: 4, derivations: ...}`` wrapper with
    ``inputs: {srcs, drvs}`` (2.33+). An output without a path (floating
    content-addressed) maps to None.
    """
    store_dir, entries = _derivation_entries(data, store_dir)
    graph = {}
    for drv_path, drv in entries:
        inputs = drv.get('inputs')
        if isinstance(inputs, dict) and 'drvs' in inputs:
            input_drvs = inputs.get('drvs') or {}
        else:
            input_drvs = drv.get('inputDrvs') or {}
        outputs = {}
        for name, output in (drv.get('outputs') or {}).items():
            outputs[name] = full_path(output.get('path'), store_dir) \
                if isinstance(output, dict) else None
        graph[full_path(drv_path, store_dir)] = {
            'outputs': outputs,
            'input_drvs': sorted(full_path(d, store_dir) for d in input_drvs),
        }
    return graph


def derivation_needs(data, store_dir=STORE_DIR):
    """The same JSON (every shape ``derivations`` reads) -> {full drv path:
    {'system': str, 'features': [str]}}: what a machine must be to build it.

    ``requiredSystemFeatures`` is an ``env`` string (space-separated), a list
    in the structured attributes (``env.__json`` up to 2.32, the
    ``structuredAttrs`` object from 2.33)."""
    store_dir, entries = _derivation_entries(data, store_dir)
    needs = {}
    for drv_path, drv in entries:
        env = drv.get('env') if isinstance(drv.get('env'), dict) else {}
        structured = drv.get('structuredAttrs')
        if not isinstance(structured, dict) and env.get('__json'):
            try:
                structured = json.loads(env['__json'])
            except ValueError:
                structured = None
        if isinstance(structured, dict):
            features = structured.get('requiredSystemFeatures') or []
        else:
            features = env.get('requiredSystemFeatures') or ''
        if isinstance(features, str):
            features = features.split()
        system = drv.get('system') or env.get('system') or (
            structured.get('system') if isinstance(structured, dict) else None)
        needs[full_path(drv_path, store_dir)] = {
            'system': u'%s' % (system or ''), 'features': sorted(u'%s' % f for f in features)}
    return needs


def _derivation_entries(data, store_dir):
    """(store dir, [(drv path as printed, derivation)]) of derivation JSON,
    unwrapped from the ``{version, storeDir, derivations}`` of 2.33+."""
    if isinstance(data, dict) and isinstance(data.get('derivations'), dict) and 'version' in data:
        store_dir = data.get('storeDir') or store_dir
        data = data['derivations']
    if not isinstance(data, dict):
        raise ValueError('not derivation JSON: %s' % type(data).__name__)
    for drv_path, drv in data.items():
        if not isinstance(drv, dict):
            raise ValueError('derivation %s is %r' % (drv_path, drv))
    return store_dir, sorted(data.items())


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


# ------------------------------------------------------------------ diff-closures
EMPTY = u'\u2205'  # how diff-closures writes "no version": the package is new or gone
ARROW = u' \u2192 '
# Up to 2.32: "%+.1f KiB" ("+52.6 KiB", "-32.3 KiB"); from 2.33 the unit grows
# with the size and growth has no sign ("52.6 KiB", "1.2 MiB").
_SIZE = re.compile(r'(?:^|,\s*)([+-]?)(\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB|PiB|EiB)$')
_UNITS = {'B': 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30, 'TiB': 1 << 40,
          'PiB': 1 << 50, 'EiB': 1 << 60}


def diff_closures(text):
    """``nix store diff-closures`` output -> (lines, summary).

    ``lines`` are Nix's lines without colours; ``summary`` is {added,
    removed, changed: [package names], size_change_bytes, lines}. A package
    is added when it had no version before (``∅ → 1.0``), removed when it
    has none after (``1.0 → ∅``), changed otherwise (other versions or only
    its size).
    """
    lines = [strip_ansi(line).rstrip() for line in (text or '').splitlines() if line.strip()]
    added, removed, changed, size = [], [], [], 0
    for line in lines:
        name, _sep, change = line.partition(': ')
        match = _SIZE.search(change)
        if match:
            amount = int(float(match.group(2)) * _UNITS[match.group(3)])
            size += -amount if match.group(1) == '-' else amount
            change = change[:match.start()]
        before, arrow, after = change.partition(ARROW.strip())
        if arrow and before.strip() == EMPTY:
            added.append(name)
        elif arrow and after.strip() == EMPTY:
            removed.append(name)
        else:
            changed.append(name)
    return lines, {'added': added, 'removed': removed, 'changed': changed,
                   'size_change_bytes': size, 'lines': lines}


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


# ------------------------------------------------------------------ flake metadata
def flake_metadata(data):
    """``nix flake metadata --json`` (parsed) -> {url, revision, dirty,
    dirty_revision, type, nar_hash, last_modified, path}; None values when
    Nix did not say.

    The keys Nix writes are the same from 2.8 to 2.34 and in Lix; what
    differs: ``dirtyRevision`` (2.18+) on a git tree with uncommitted
    changes, which older ones show only by a missing ``revision``; the
    ``url`` writes the ref as ``main`` or ``refs/heads/main``. ``dirty`` is
    None for a flake that is not locked at all.
    """
    data = data if isinstance(data, dict) else {}
    locked = data.get('locked') if isinstance(data.get('locked'), dict) else {}
    revision = data.get('revision') or locked.get('rev')
    dirty_revision = data.get('dirtyRevision') or locked.get('dirtyRev')
    if dirty_revision:
        dirty = True
    elif locked:
        # a git tree with uncommitted changes has no revision to name
        dirty = locked.get('type') == 'git' and not revision
    else:
        dirty = None
    return {
        'url': data.get('url') or data.get('lockedUrl'),
        'revision': revision or None,
        'dirty': dirty,
        'dirty_revision': dirty_revision or None,
        'type': locked.get('type'),
        'nar_hash': locked.get('narHash'),
        'last_modified': to_int(data.get('lastModified', locked.get('lastModified'))),
        'path': data.get('path'),
    }
