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
- ``nix path-info --json``         -> ``path_infos``
- ``nix-store --check-validity --print-invalid`` (a path a line) -> ``listed_paths``
- ``nix show-derivation`` / ``nix derivation show`` -> ``derivations``
- ``nix store diff-closures``      -> ``diff_closures``
- ``nix flake metadata --json``    -> ``flake_metadata``

What Nix writes on stderr (errors, progress, traces) is read by
``_nix_stderr``, by the same rule.
"""

import json
import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidValue
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import to_int

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
    raise InvalidValue('no Nix version in %r' % (text or '')[:200])


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
                raise InvalidValue('a path-info list holds %r' % (item,))
            items.append((item.get('path'), None if item.get('valid', True) is False else item))
    else:
        raise InvalidValue('not path-info JSON: %s' % type(data).__name__)
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


def listed_paths(text):
    """The set of store paths a command printed one a line (``nix-store
    --check-validity --print-invalid``)."""
    return set(ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip())


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
        raise InvalidValue('not derivation JSON: %s' % type(data).__name__)
    for drv_path, drv in data.items():
        if not isinstance(drv, dict):
            raise InvalidValue('derivation %s is %r' % (drv_path, drv))
    return store_dir, sorted(data.items())


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
