# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the evaluation cache's files (``_cache``) are named and what
each may hold, and how a stored answer is tied to its derivation.

The folder holds five kinds of file, each a JSON document:

- a plain entry (``<key>.json``): the three fields of one answer
  (``drv_path``, ``out_path``, ``system``; ``checked``);
- a reuse entry (also ``<key>.json``): the three fields, plus the record
  chain its evaluation read, how far along it, and where its content came
  from (``reuse_entry``);
- a record chain (``chain-<id>.json``): what one evaluation read, usable
  only when it checks something (``whole_chain``);
- a distrust mark (``distrust-<sha256 of the flake>.json``): reuse is off
  for that flake while it is there;
- a spot-check time (``checked-<key>.json``): when a spot check last found
  a reused answer right, and how many batches have reused it since.

A stored answer is given only when its derivation is in the store the task
evaluates for, with that output and system (``tied``, ``matches``): one
``nix derivation show`` for all the answers of a call.

Every check here is of arguments only; reading and writing the files is
``_folder``'s.
"""

import hashlib
import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import SYSTEM_NAME
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._folder import (
    SUFFIX)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError

FIELDS = ('drv_path', 'out_path', 'system')
# an entry is a few hundred bytes (a reuse entry with its origin and
# signature, under a kilobyte); anything larger is not ours
MAX_ENTRY = 64 * 1024
# a distrust mark holds what Nix answered (its error text too)
MAX_MARK = 2 ** 20
# a record chain (what one evaluator read, record/_record): its paths and digests
CHAIN_PREFIX = 'chain-'
# when a spot check last found a reused answer right (last_checked)
CHECKED_PREFIX = 'checked-'
MAX_CHAIN = 64 * 2 ** 20
# why a signed chain is refused (ignored_note): it would hold for any content
DEGENERATE = 'degenerate'

_KEY = re.compile(r'[0-9a-f]{64}')


# ------------------------------------------------------------------ names
def is_key(value):
    """Whether ``value`` is a key (or a chain's id): 64 lowercase hex digits."""
    return bool(_KEY.fullmatch(str(value)))


def entry_name(key):
    """The file of the entry (plain or reuse) of ``key``."""
    return key + SUFFIX


def chain_name(found):
    """The file of the record chain whose id is ``found``."""
    return CHAIN_PREFIX + found + SUFFIX


def checked_name(key):
    """The file of the spot-check time of the reuse entry ``key``."""
    return CHECKED_PREFIX + key + SUFFIX


def distrust_name(flake):
    """The file of ``flake``'s distrust mark."""
    return 'distrust-%s%s' % (hashlib.sha256((u'%s' % flake).encode('utf-8')).hexdigest(), SUFFIX)


def is_entry_name(name):
    """Whether file ``name`` is an entry, a chain or a spot-check time: what
    goes when it is not used for long (a distrust mark stays)."""
    return name.endswith(SUFFIX) and bool(_KEY.fullmatch(re.sub(
        '^(%s|%s)' % (CHAIN_PREFIX, CHECKED_PREFIX), '', name)[:-len(SUFFIX)]))


# ------------------------------------------------------------------ content
def checked(entry):
    """``entry`` when it is exactly the three fields of a good shape."""
    if not isinstance(entry, dict) or set(entry) != set(FIELDS):
        return None
    drv, out, system = entry['drv_path'], entry['out_path'], entry['system']
    if not all(isinstance(v, str) for v in (drv, out, system)):
        return None
    if not (is_store_path(drv) and drv.endswith('.drv') and is_store_path(out)
            and not out.endswith('.drv') and SYSTEM_NAME.match(system)):
        return None
    return {'drv_path': drv, 'out_path': out, 'system': system}


def fields_of(result):
    """The three fields of an evaluation's ``result`` (a dict) when they
    are of a good shape (``checked``), else None."""
    return checked(dict((field, (result or {}).get(field)) for field in FIELDS)
                   if isinstance(result, dict) else None)


def reuse_entry(entry):
    """``entry`` as read from a reuse entry's file ({the three fields,
    chain, upto, origin, and cost where known}) when every part of it is of
    a good shape, else None."""
    if not isinstance(entry, dict):
        return None
    fields = checked(dict((field, entry.get(field)) for field in FIELDS))
    chain, upto, origin = entry.get('chain'), entry.get('upto'), entry.get('origin')
    if fields is None or not is_key(chain) or not isinstance(upto, int) \
            or isinstance(upto, bool) or upto < 0 or not isinstance(origin, dict):
        return None
    found = dict(fields, chain=chain, upto=upto, origin=origin)
    cost = entry.get('cost')
    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0:
        found['cost'] = cost
    return found


def whole_chain(chain):
    """Whether ``chain`` has segments, its first holding a read of the
    flake's own flake.nix (``dir/flake.nix`` for a ``?dir=`` subflake)."""
    segments = chain.get('segments') if isinstance(chain, dict) else None
    if not isinstance(segments, list) or not segments or not isinstance(segments[0], dict):
        return False
    reads = segments[0].get('reads')
    return isinstance(reads, dict) and any(
        (rel == 'flake.nix' or rel.endswith('/flake.nix')) and isinstance(value, list)
        and value[:1] == ['read'] for rel, value in reads.items())


# ------------------------------------------------------------------ the store
def tied(runner, drvs):
    """{drv: {'outputs': set of its output paths, 'system'}} of the ``drvs``
    that are derivations in the store ``runner`` evaluates for (its own
    store arguments), from one ``nix derivation show`` (one per drv when a
    drv of them is gone); None when Nix cannot answer at all."""
    sub = 'derivation show' if runner.features().derivation_show else 'show-derivation'

    def show(paths):
        data = runner.json(sub, list(paths), 'reading cached derivations')
        outputs = _nix_output.derivations(data)
        needs = _nix_output.derivation_needs(data)
        return dict((drv, {'outputs': set(p for p in info['outputs'].values() if p),
                           'system': (needs.get(drv) or {}).get('system')})
                    for drv, info in outputs.items())

    try:
        try:
            return show(drvs)
        except NixError:
            pass
        found = {}
        for drv in drvs:
            try:
                found.update(show([drv]))
            except NixError:
                continue
        # not one shown: the store may not open at all (keep the entries)
        return found or None
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None


def matches(shown, result):
    """Whether ``result``'s derivation is among ``shown`` (what ``tied``
    gave), with ``result``'s output among its outputs and its system."""
    drv = shown.get(result['drv_path'])
    return drv is not None and result['out_path'] in drv['outputs'] \
        and result['system'] == drv['system']
