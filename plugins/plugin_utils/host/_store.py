# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Store paths (their check, the top-level path of a file inside one and
``StorePathError`` for a path that is none, a host name as one file name)
and the remote program of a target's store. How a target is reached (its
ssh options, its store URI, ``AddressError`` when its connection vars cannot
say) is plugin_utils/host/_host.py's ``Host``.
"""

import hashlib
import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError

try:
    from urllib.parse import quote as _url_quote
except ImportError:  # pragma: no cover - Python 2 controllers are not supported
    from urllib import quote as _url_quote

STORE_DIR = '/nix/store'
# /nix/store/<32 base32 chars>-<name>; the name alphabet is Nix's own.
_STORE_PATH = re.compile(r'^/nix/store/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]+\Z')

# longest file name made of a host name (file systems allow 255 bytes)
MAX_NAME = 200


def file_name(name):
    """``name`` (an inventory host name: data) as ONE file name, on the
    controller (nix_build's GC roots) and on a target (the copy's GC root):
    '/' or a leading '.' ('..') must not place it elsewhere, so they are
    %-escaped like every character outside [A-Za-z0-9_.~-]."""
    text = _url_quote(u'%s' % name, safe='')
    if text.startswith('.'):
        text = '%2E' + text[1:]
    if len(text) > MAX_NAME:
        # file names stop at 255 bytes; a digest keeps long names apart
        digest = hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]
        text = '%s-%s' % (text[:MAX_NAME - 17], digest)
    return text


class StorePathError(NixdeployError):
    """A path given as a system is not in the Nix store (``store_path_of``)."""


def is_store_path(path):
    """Whether ``path`` is a top-level store path (not a file inside one)."""
    return bool(path) and bool(_STORE_PATH.match(str(path)))


def store_path_of(path):
    """The top-level store path of ``path`` (which may point inside one)."""
    text = str(path or '')
    parts = text.split('/')
    if len(parts) >= 4 and text.startswith(STORE_DIR + '/'):
        candidate = '/'.join(parts[:4])
        if is_store_path(candidate):
            return candidate
    raise StorePathError('not a Nix store path: %r' % (text,))


def remote_program(nix_dir, via_sudo=False, become_user=None):
    daemon = '%s/nix-daemon' % nix_dir.rstrip('/')
    if not via_sudo:
        return [daemon]
    words = ['sudo', '-n']
    if become_user and become_user != 'root':
        words += ['-u', become_user]
    return words + ['--', daemon]
