# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a host's system names the flake's own store path (docs/eval-cache.md,
"Why a reuse cannot be wrong"). ``toString ./.`` or ``self.outPath`` with
its context dropped read nothing, yet name the content: such a host's answer
changes with every commit, whatever its reads, and is never reused."""

import os
import re

_DRV = re.compile(r'/nix/store/[0-9a-z]{32}-[^"/\\]*\.drv')
MAX_DRV = 64 * 2 ** 20
# a source (all its files together) read past this is taken to name the
# flake's content: nothing is kept of a host that takes one
MAX_SOURCE = 64 * 2 ** 20
_STORE_PATH = re.compile(r'/nix/store/[0-9a-z]{32}-[^"/\\]*')
# the shortest part of the source's hash that counts as naming it: 32^8
# values, so no other text of a derivation matches it by chance
WINDOW = 8


def mentions(drv, needle, memo):
    """Whether the derivation ``drv``, one it needs, or a source it takes
    (``builtins.toFile``, a copied path) holds ``needle`` (the hash part of
    the flake's store copy), or any WINDOW characters of it, in its text: a
    host that made a string of the source's own path without reading it
    (``toString ./.``, ``self.outPath`` with its context discarded, a
    substring of either, a file written from one) has an answer that
    changes with every content, whatever its reads. ``memo``: {path: bool}
    shared by the hosts of a run (a nixpkgs' derivations are read once).
    True too where a derivation or source cannot be read: nothing is kept
    then."""
    pieces = [needle[at:at + WINDOW] for at in range(max(1, len(needle) - WINDOW + 1))]
    todo, order = [drv], []
    while todo:
        path = todo.pop()
        if path in memo:
            continue
        try:
            with open(path, 'rb') as handle:
                text = handle.read(MAX_DRV + 1).decode('utf-8', 'replace')
        except OSError:
            memo[path] = True
            continue
        if len(text) > MAX_DRV or any(piece in text for piece in pieces):
            memo[path] = True
            continue
        needs = [p for p in set(_DRV.findall(text)) if p != path]
        sources = input_sources(text)
        memo[path] = None  # being decided: its inputs first
        order.append((path, needs + sources))
        todo.extend(p for p in needs if p not in memo)
        for source in sources:
            if source not in memo:
                memo[source] = _source_holds(source, pieces)
    # a derivation holds it when one it needs does: until nothing changes
    changed = True
    while changed:
        changed = False
        for path, needs in order:
            if memo[path] is not True and any(memo.get(p) is True for p in needs):
                memo[path] = True
                changed = True
    for path, _needs in order:
        if memo[path] is None:
            memo[path] = False
    return memo.get(drv) is True


def input_sources(text):
    """The store paths a derivation's text lists as its input sources (the
    third list of ``Derive(...)``)."""
    depth, start, fields = 0, None, []
    idx, size = text.find('('), len(text)
    if idx < 0:
        return []
    while idx < size and len(fields) < 3:
        char = text[idx]
        if char == '"':
            # a string: skip to its closing quote, past escaped ones
            idx += 1
            while idx < size and text[idx] != '"':
                idx += 2 if text[idx] == '\\' else 1
        elif char in '([':
            depth += 1
            if depth == 2 and char == '[':
                start = idx
        elif char in ')]':
            if depth == 2 and char == ']' and start is not None:
                fields.append(text[start:idx + 1])
                start = None
            depth -= 1
        idx += 1
    if len(fields) < 3:
        return []
    return [p for p in _STORE_PATH.findall(fields[2]) if not p.endswith('.drv')]


def _source_holds(path, pieces):
    """Whether a source in the store holds one of ``pieces`` in a file's
    content, a link's target or a name; True past MAX_SOURCE bytes or
    where it cannot be read (nothing is kept then)."""
    left = [MAX_SOURCE]

    def holds(data):
        left[0] -= len(data)
        text = data.decode('utf-8', 'replace')
        return left[0] < 0 or any(piece in text for piece in pieces)

    try:
        if os.path.islink(path):
            return holds(os.fsencode(os.readlink(path)))
        if os.path.isfile(path):
            with open(path, 'rb') as handle:
                return holds(handle.read(MAX_SOURCE + 1))
        for top, dirs, files in os.walk(path):
            for name in dirs + files:
                here = os.path.join(top, name)
                if holds(os.fsencode(name)):
                    return True
                if os.path.islink(here):
                    if holds(os.fsencode(os.readlink(here))):
                        return True
                elif name in files:
                    with open(here, 'rb') as handle:
                        if holds(handle.read(MAX_SOURCE + 1)):
                            return True
        return False
    except OSError:
        return True


def hash_part(store_path):
    """The 32 characters that name a store path's content."""
    return os.path.basename(store_path)[:32]
