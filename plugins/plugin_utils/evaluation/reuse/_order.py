# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where each host a commit sends back is evaluated: first or last in its
evaluator, or in an evaluator of its own (docs/eval-cache.md, "Exact
records"). Only the cost depends on it, never whether an answer is reused:
that is ``record/_record.valid_upto``'s alone. ``_reuse.Reuse`` asks
``ReuseOrder.order`` once a look-up.
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record import (
    _record, _trace)


class ReuseOrder(object):
    """Orders the hosts a look-up sends back, reading chains through
    ``cache`` (the ``EvalCache``) and paths through ``describer(root)``
    (the ``record/_record.Describer`` of a flake's root)."""

    def __init__(self, cache, describer):
        self.cache = cache
        self._describer = describer

    def order(self, back, chains, roots):
        """Where each host sent back is evaluated: (rank, alone), ``rank``:
        {key: 0 first .. 3 last}; ``alone``: the keys to evaluate in a
        process of their own. Only cost depends on it, never whether an
        answer is reused.

        A host whose own reads changed goes last, and last of all one that
        used the flake's revision (it changes on every commit) or has no
        reuse entry (``entry`` None: a new host, or one whose system names
        the source, which is never kept): its
        neighbours' new records then leave out what changes. A host sent
        back by a neighbour's reads goes first, and alone where that is
        sure: a later host's own segment failed, or the first segment
        (which also holds what every host of the process shares) failed
        on a path that not every record of the flake reads in its first
        segment, so not a part every host shares (a role's module, the
        first host's own file). Evaluated alone, its new record is its
        own, and that neighbour's next change leaves it reused
        (docs/eval-cache.md, "Exact records")."""
        local = self._local_changes(chains, roots)
        rank, alone = {}, set()
        for key, entry, spec, valid in back:
            if entry is None:
                # no reuse entry: a new host, or one whose system names the
                # source (never kept). What it reads is unknown, or changes
                # with every commit: after the others, out of their records
                rank[key] = 3
            elif valid >= entry['upto']:
                own = self._own_segment(entry)
                rank[key] = 3 if own is not None and own.get('self') else 2
            elif valid >= 1 or entry['chain'] in local:
                rank[key] = 0
                alone.add(key)
            else:
                rank[key] = 2 if self._touches_change(entry, spec) else 0
        return rank, alone

    def _local_changes(self, chains, roots):
        """The chains whose first segment failed on a path that another
        chain of the same source (``roots``: {chain: its source's root})
        does not read the same way in its first segment (``_how_read``):
        a part every host shares is read alike before every first answer;
        a file one first host reads on its own and another copies with its
        folder (``builtins.path`` of ``./bin``) is two hosts' own."""
        firsts = {}
        for name, root in roots.items():
            chain = self.cache.get_chain(name)
            if isinstance(chain, dict) and chain.get('segments'):
                firsts.setdefault(root, {})[name] = chain
        local = set()
        for root, named in firsts.items():
            if len(named) < 2:
                continue
            reads = dict((name, chain['segments'][0].get('reads') or {})
                         for name, chain in named.items())
            for name, chain in named.items():
                if chains[name][0] != 0:
                    continue
                try:
                    changed = _record.changed_paths(chain, self._describer(root), 0)
                except (OSError, ValueError, TypeError, AttributeError):
                    continue
                if any(_how_read(others, rel) != _how_read(reads[name], rel) for rel in changed
                       for other, others in reads.items() if other != name):
                    local.add(name)
        return local

    def _touches_change(self, entry, spec):
        """Whether the host's own segment names a path that changed, even
        only by looking at it (Nix 2.8 looks at a file it imports again from
        its cache): likely one of the hosts that read the change, so it is
        evaluated after the others and stays out of their new records. Only
        the order depends on it, never whether an answer is reused."""
        own = self._own_segment(entry)
        chain = self.cache.get_chain(entry['chain'])
        if own is None or chain is None:
            return False
        try:
            changed = _record.changed_paths(chain, self._describer(spec.root),
                                            entry['upto'] - 1)
        except (OSError, ValueError, TypeError, AttributeError):
            return False
        return bool(changed & set(own.get('reads') or ()))

    def _own_segment(self, entry):
        """The host's own segment of its chain: what it read after the host
        before it answered (None where the chain cannot be read)."""
        chain = self.cache.get_chain(entry['chain'])
        try:
            segment = chain['segments'][entry['upto']]
        except (TypeError, KeyError, IndexError):
            return None
        return segment if isinstance(segment, dict) else None


def _how_read(reads, rel):
    """How a segment's ``reads`` ({path: [kind, description]}) hold
    ``rel``: not at all (None), with a folder above it that the segment
    lists (``folder``: a copy of that folder, or a listing that reads what
    it found), or on its own (``own``)."""
    if rel not in reads:
        return None
    parts = rel.split('/')
    for depth in range(len(parts)):
        above = reads.get('/'.join(parts[:depth]))
        if isinstance(above, list) and above[:1] == [_trace.LIST]:
            return 'folder'
    return 'own'
