# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The keys of the evaluation cache (``_cache``): what goes into one,
and which evaluations get none.

A key is the hex sha256 of the canonical JSON of everything an answer
depends on: the flake's pinned identity, the attribute path, Nix's flavour
and version, and the evaluation's options. Anything different is another
key, so a miss. An evaluation whose options are not all known to be pure
(``uncacheable``) gets no key and is never cached.

Here apart from the cache's folder and entries because it reads nothing on
disk: only the arguments it is given.
"""

import hashlib
import json

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixFeatures, NixOptions)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_config import (
    accepts_flake_config)

# the layout of a key's parts and of an entry; another number, other keys
FORMAT = 1

# nix_args an evaluation may carry and still be cached: flags that change
# how Nix reports or fetches, never what it evaluates (the key holds them
# all the same). Anything else (--impure, --expr, --file, -I, --arg,
# --override-input, --option pure-eval false, ...) is never cached.
PURE_FLAGS = frozenset(['--show-trace', '--offline', '--refresh', '--no-write-lock-file',
                        '--no-update-lock-file', '-L', '--print-build-logs', '-v',
                        '--verbose', '--quiet', '--keep-going', '-k', '--no-registries'])
PURE_WITH_VALUE = frozenset(['--store', '--max-jobs', '-j', '--cores', '--log-format',
                             '--builders'])
# settings ``--option NAME VALUE`` may set and still be cached
PURE_SETTINGS = frozenset(['substituters', 'extra-substituters', 'trusted-public-keys',
                           'extra-trusted-public-keys', 'max-jobs', 'cores', 'builders',
                           'connect-timeout', 'warn-dirty', 'eval-cache', 'show-trace',
                           'narinfo-cache-negative-ttl', 'narinfo-cache-positive-ttl',
                           'allow-import-from-derivation'])
_FALSE = ('false', '0', 'no', 'off', '')


def canonical(value):
    """``value`` as JSON text with sorted keys and no spaces: the same data
    always gives the same text (and so the same digest or signature)."""
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=True)


def uncacheable(opts):
    """Why an evaluation with ``opts`` (NixOptions) may not be cached: a
    reason, or None when every argument and setting is known to be pure."""
    if opts.impure:
        return '--impure reads the environment'
    if opts.override_inputs:
        return 'overridden inputs are not the flake\'s own'
    if accepts_flake_config(opts.options, opts.extra_args):
        # the flake's nixConfig then sets what it likes (pure-eval = false,
        # import-from-derivation), and `nix config show` cannot see it
        return 'accept-flake-config lets the flake\'s nixConfig set pure-eval'
    pure_eval = opts.options.get('pure-eval')
    if pure_eval is not None and (pure_eval is False or u'%s' % pure_eval in _FALSE):
        return 'pure-eval = false in nix_options'
    args = list(opts.extra_args)
    idx = 0
    while idx < len(args):
        arg = u'%s' % args[idx]
        if arg in PURE_FLAGS:
            idx += 1
        elif arg in PURE_WITH_VALUE and idx + 1 < len(args):
            idx += 2
        elif arg == '--option' and idx + 2 < len(args) and \
                u'%s' % args[idx + 1] in PURE_SETTINGS:
            idx += 3
        else:
            return 'nix_args holds %s, not known to be pure' % arg
    return None


def cache_key(fingerprint, attr, nix_version, options):
    """The hex sha256 of everything an answer depends on, or None (the
    arguments of ``EvalCache.key``, which says what each may be)."""
    if fingerprint is None:
        return None
    if isinstance(options, NixOptions) and uncacheable(options):
        return None
    if isinstance(attr, (list, tuple)):
        path = [u'%s' % part for part in attr]
    else:
        path = [u'%s' % attr]
    if isinstance(nix_version, NixFeatures):
        version = [nix_version.flavour, list(nix_version.version)]
    elif isinstance(nix_version, (list, tuple)):
        version = [u'%s' % nix_version[0], [u'%s' % v for v in nix_version[1]]] \
            if len(nix_version) == 2 and isinstance(nix_version[1], (list, tuple)) \
            else [u'%s' % v for v in nix_version]
    else:
        version = u'%s' % (nix_version,)
    if isinstance(options, NixOptions):
        settings = {'config': options.config_lines(), 'args': list(options.extra_args),
                    'impure': bool(options.impure)}
    else:
        settings = {'config': sorted([u'%s' % k, _value(v)]
                                     for k, v in (options or {}).items())}
    parts = [FORMAT, fingerprint, path, version, settings]
    return hashlib.sha256(canonical(parts).encode('utf-8')).hexdigest()


def _value(value):
    """A setting's value as text (a list as a list of texts), so that equal
    settings give equal keys."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return [u'%s' % v for v in value]
    return u'' if value is None else u'%s' % (value,)
