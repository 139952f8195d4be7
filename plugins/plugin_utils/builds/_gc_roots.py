# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's GC roots of the deployed systems: one per fleet and host.

A root is ``<gc_root_dir>/<fleet>/<host>``, a symlink to the host's system.
The fleet is the flake the host's system comes from, as the user names it
(``nix_flake``, resolved as the evaluation resolves it), without what picks
a commit in it (``rev``, ``ref``, ``narHash`` ...): two flakes (or two
checkouts) with a host ``web1`` keep one root each, and deploying another
commit or branch of the same flake replaces that flake's root.

The folder's name (``fleet_name``) is short, stable and safe as one file
name: the last part of the flake's path (or of its ``dir``), reduced to
[A-Za-z0-9_.-], then the first 12 hex digits of the sha256 of the whole
reference: ``infra-3f2a9c0d1b7e``.

Roots written before this layout lie directly in ``gc_root_dir``
(``<gc_root_dir>/<host>``); writing a host's root in its fleet's folder
removes that old one (``write_root``).

After a rollback the host runs another system than the one its root holds:
``follow_rollback`` points the root at what the host now runs, or removes
it when the controller's store does not hold that system.
"""

import hashlib
import os
import re
import unicodedata

from urllib.parse import parse_qsl, quote

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (
    file_name, is_store_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import flake_ref
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError

# query arguments that pick a commit or a branch of a flake, not the flake
PIN_ARGUMENTS = frozenset(('rev', 'ref', 'narHash', 'lastModified', 'lastModifiedDate',
                           'revCount'))
# flake types written <type>:<owner>/<repo>[/<commit or branch>]
FORGES = ('github', 'gitlab', 'sourcehut')
HASH_DIGITS = 12
MAX_LABEL = 40
_UNSAFE = re.compile(r'[^A-Za-z0-9_.-]+')
_SCHEME = re.compile(r'^([A-Za-z][A-Za-z0-9+.-]*):(.*)$', re.S)


def fleet_reference(reference):
    """``reference`` (a flake reference with a scheme) without what picks a
    commit in it: no ``#attribute``, no ``rev``/``ref``/``narHash``/
    ``lastModified``/``revCount`` arguments, no commit or branch after a
    forge's ``owner/repo``, no user or password in a URL, no trailing
    ``/``; the other arguments (``dir``) sorted."""
    text = u'%s' % reference
    text = text.split('#', 1)[0]
    path, _sep, query = text.partition('?')
    arguments = sorted((k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                       if k not in PIN_ARGUMENTS)
    match = _SCHEME.match(path)
    if match and match.group(1) in FORGES:
        path = '%s:%s' % (match.group(1), '/'.join(match.group(2).split('/')[:2]))
    else:
        # git+https://user:token@host/o/r: the same flake with or without them
        path = re.sub(r'^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', r'\1', path)
    while path.endswith('/') and not path.endswith(('://', ':/')):
        path = path[:-1]
    if arguments:
        path += '?' + '&'.join('%s=%s' % (quote(k, safe=''), quote(v, safe='/'))
                               for k, v in arguments)
    return path


def _label(reference):
    """The last part of the flake's path (of its ``dir`` when it has one),
    as [A-Za-z0-9_.-] only; ``flake`` when nothing is left."""
    path, _sep, query = reference.partition('?')
    folder = dict(parse_qsl(query, keep_blank_values=True)).get('dir') or ''
    match = _SCHEME.match(path)
    rest = match.group(2) if match else path
    parts = [p for p in (folder or rest).split('/') if p not in ('', '.', '..')]
    last = parts[-1] if parts else ''
    # accents dropped (flöte -> flote), every other character outside the set -> _
    last = unicodedata.normalize('NFKD', last).encode('ascii', 'ignore').decode('ascii')
    last = _UNSAFE.sub('_', last).strip('._-')[:MAX_LABEL].strip('._-')
    return last or 'flake'


def fleet_name(reference):
    """The folder of the fleet of ``reference`` (a flake reference with a
    scheme, as ``flake_ref`` makes it) under ``gc_root_dir``:
    ``<label>-<12 hex digits>``, the same for every commit of the flake."""
    canonical = fleet_reference(reference)
    digest = hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:HASH_DIGITS]
    return '%s-%s' % (_label(canonical), digest)


def fleet_of(flake, base_dir=None):
    """The fleet of a host whose flake is ``flake`` (``nix_flake``, or the
    task's ``flake``; a path is read from ``base_dir`` as the evaluation
    reads it); None when no flake is given."""
    if not flake:
        return None
    return fleet_name(flake_ref(flake, base_dir))


def root_path(gc_root_dir, host, fleet=None):
    """The GC root of ``host``: ``<gc_root_dir>/<fleet>/<host>``, or the old
    flat ``<gc_root_dir>/<host>`` when the fleet is not known (a build given
    a derivation and no flake). The host's file name comes from
    ``_store.file_name``: a host name is data, it never places the root
    elsewhere."""
    if fleet is None:
        return os.path.join(gc_root_dir, file_name(host))
    return os.path.join(gc_root_dir, fleet, file_name(host))


def write_root(builder, gc_root_dir, fleet, host, path):
    """Point the root of ``host`` in ``fleet`` at ``path`` (``builder``: a
    ``_build.Builder``); then remove the host's old flat root, if any.
    Returns (root, warning or None). NixError when the root cannot be
    written."""
    root = root_path(gc_root_dir, host, fleet)
    try:
        # exist_ok: the builders' threads may get here at once
        os.makedirs(os.path.dirname(root), 0o755, exist_ok=True)
    except OSError as exc:
        raise NixError('adding the GC root %s: %s' % (root, exc))
    builder.add_root(root, path)
    return root, remove_flat_root(gc_root_dir, fleet, host)


def remove_flat_root(gc_root_dir, fleet, host):
    """Remove the root ``<gc_root_dir>/<host>`` written before roots had a
    fleet folder (a symlink only: a folder of that name is a fleet's).
    Returns a warning when it stays, else None."""
    if fleet is None:
        return None
    flat = root_path(gc_root_dir, host)
    if not os.path.islink(flat):
        return None
    try:
        os.unlink(flat)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return 'the old GC root %s could not be removed (%s): it still holds its system' % (
            flat, exc)
    return None


def follow_rollback(builder, gc_root_dir, fleet, host, running):
    """After ``host`` rolled back: its root points at ``running`` (the
    system it now runs) when the controller's store holds it, else the root
    is removed (the rolled-back system is not kept for it). Nothing happens
    when the controller has no root for the host (it was built on itself,
    or the root was removed). Returns (what happened: ``moved``,
    ``removed`` or ``none``; the root; a warning or None). NixError when
    the root cannot be written."""
    root = root_path(gc_root_dir, host, fleet)
    flat = root_path(gc_root_dir, host)
    has_root = os.path.lexists(root) or (fleet is not None and os.path.islink(flat))
    if not has_root:
        return 'none', root, None
    if running and is_store_path(running) and not builder.invalid([running]):
        root, warning = write_root(builder, gc_root_dir, fleet, host, running)
        return 'moved', root, warning
    for link in ((root, flat) if fleet is not None else (root,)):
        try:
            if os.path.islink(link):
                os.unlink(link)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise NixError('removing the GC root %s: %s' % (link, exc))
    return 'removed', root, None


def running_after_rollback(state, outcome):
    """The system a host runs after the nix_activate result ``outcome`` of
    a task with ``state`` when that task rolled it back, else None:
    state=rolled_back that went to another generation (its ``new``), or an
    activation rolled back on the host (a failed activation, health check
    or confirmation: its ``previous``)."""
    if state == 'rolled_back':
        if outcome.get('failed') or not outcome.get('changed') or outcome.get('state') != 'done':
            return None
        return (outcome.get('new') or {}).get('path') or None
    if state == 'activated' and outcome.get('rolled_back') and \
            outcome.get('state') == 'rolled_back':
        return (outcome.get('previous') or {}).get('path') or None
    return None
