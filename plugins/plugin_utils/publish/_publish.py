# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Put the systems of a play batch in a binary cache, signed, and prove it.

One publish of a batch, in as few Nix processes as the work needs:

1. the systems' closures in the controller's store: ``nix path-info --json``
   of the systems (validity), then ``-r`` of the valid ones;
2. what the cache lacks: ONE ``nix path-info --store <cache> --json`` of every
   closure path (not ``-r``: Nix 2.8 fails a whole ``-r`` query on a cache
   that lacks one path). A path counts as there only with a signature of our
   key, since hosts substitute nothing else;
3. ONE ``nix copy --to <cache>`` of the systems missing something, signed on
   the way: a binary cache (file://, s3://, http(s)://) gets ``secret-key=``
   in its URI, so the controller's store needs no trusted user; any other
   store is sent paths signed first in the controller's store (``nix store
   sign``). Paths the cache already holds without our signature are signed
   there (``nix store sign --store <cache>``);
4. the same query again for what was missing: a system is published only when
   every path of its closure is in the cache, signed.

A second publish of the same systems finds everything in step 2 and runs no
copy: nothing changes.

An http(s) cache's login (``https://user:PASSWORD@cache``) is in no argv:
every step names the cache without it, and Nix reads it from a private netrc
file named in its environment (plugin_utils/nix/_netrc.py).
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _closure
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _netrc
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixCommand, NixError, NixOptions)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import serves

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 controllers are not supported
    from urllib import quote


# Task arguments that may differ per host, and their host var counterparts.
PER_HOST_ARGS = {'path': 'nix_out_path'}

# stores that are binary caches: they sign what they receive with secret-key=
BINARY_CACHE_SCHEMES = ('file', 's3', 'http', 'https')
# how many paths an error message names
SHOWN_PATHS = 5


class PublishError(NixdeployError):
    """The publish cannot start (no key, bad arguments); the text says why."""


# ------------------------------------------------------------------ keys, URIs
def key_name(secret_key_file):
    """The name of a Nix secret key (``name:base64``), read from its file.

    Only the name leaves this function; the secret itself is never returned
    nor put in a message.
    """
    try:
        with open(secret_key_file) as handle:
            text = handle.read(4096)
    except (IOError, OSError) as exc:
        raise PublishError('cannot read the signing key file: %s' % (exc.strerror or exc))
    name, colon, secret = text.strip().partition(':')
    if not colon or not name or not secret or any(c.isspace() for c in name):
        raise PublishError('the signing key file does not hold a Nix secret key '
                           '(name:base64, from nix-store --generate-binary-cache-key)')
    return name


def scheme(uri):
    head, sep, _rest = uri.partition('://')
    return head.lower() if sep else ''


def is_binary_cache(uri):
    return scheme(uri) in BINARY_CACHE_SCHEMES


def signing_uri(uri, secret_key_file):
    """``uri`` with ``secret-key=`` (percent-encoded) unless it has one."""
    if 'secret-key=' in uri:
        return uri
    sep = '&' if '?' in uri else '?'
    return '%s%ssecret-key=%s' % (uri, sep, quote(secret_key_file, safe='/'))


# ------------------------------------------------------------------ closures
def signed_by(info, name):
    """Whether a path info carries a signature of the key ``name``."""
    return any((u'%s' % sig).partition(':')[0] == name
               for sig in (info or {}).get('signatures') or [])


def cache_gaps(closure, cached, name):
    """(missing, unsigned) paths of ``closure``: not in the cache at all, or
    there without a signature of ``name``."""
    missing = sorted(p for p in closure if not cached.get(p))
    unsigned = sorted(p for p in closure if cached.get(p) and not signed_by(cached[p], name))
    return missing, unsigned


def describe(paths):
    shown = ', '.join(sorted(paths)[:SHOWN_PATHS])
    more = len(paths) - SHOWN_PATHS
    return shown + (' and %d more' % more if more > 0 else '')


# ------------------------------------------------------------------ running
class Publisher:
    """Publishes systems to one cache with one key; counts its Nix processes."""

    def __init__(self, opts, cache, secret_key_file, timeout=None):
        if not cache or cache.startswith('-'):
            raise PublishError('cache %r is not a store URI' % (_redact.url(cache),))
        try:
            # the login of an http(s) cache goes to Nix in a private netrc,
            # never in argv: self.cache is the address without it
            self._cache = _netrc.split(cache)
        except _netrc.CacheAddressError as exc:
            raise PublishError(u'%s' % exc)
        self.runner = NixCommand(opts, timeout)
        self.cache = self._cache.uri
        self.key_file = secret_key_file
        self.key = key_name(secret_key_file)

    @property
    def processes(self):
        return self.runner.processes

    def _nix(self, sub, args, what):
        return self.runner.check(sub, args, what)

    def publish(self, systems, check_mode=False):
        """``systems``: store paths. Returns {system: result}; a result has
        ``error`` when the system is not (or would not be) in the cache.
        The cache's login (if any) is in a private netrc while it runs."""
        given_opts = self.runner.opts
        with _netrc.nix_options(given_opts, [self._cache]) as opts:
            self.runner.opts = opts
            try:
                return self._publish(systems, check_mode)
            finally:
                # the netrc is gone after the block: no call may name it then
                self.runner.opts = given_opts

    def _infos(self, paths, store=None, recursive=False):
        """{path: info or None}: ``nix path-info --json``, read for every Nix."""
        args = ['-r'] if recursive else []
        if store:
            args += ['--store', store]
        where = store or "the controller's store"
        return self.runner.path_infos(sorted(paths), args, 'reading paths in %s' % where)

    def _publish(self, systems, check_mode):
        results = dict((s, {'signed_by': self.key, 'copied': False}) for s in systems)
        bad = [s for s in systems if not is_store_path(s)]
        for system in bad:
            results[system]['error'] = '%r is not a store path' % (system,)
        here = self._infos([s for s in systems if s not in bad]) if len(bad) < len(systems) else {}
        valid = sorted(s for s in systems if here.get(s))
        for system in systems:
            if system in bad or system in valid:
                continue
            if check_mode:
                # check mode built nothing: a real run builds it, then copies it
                results[system].update(would_build=True, changed=True)
            else:
                results[system]['error'] = ("%s is not in the controller's store (its build "
                                            "did not run or failed)" % system)
        if not valid:
            return results
        local = self._infos(valid, recursive=True)
        closures = dict((s, _closure.walk(local, s)) for s in valid)
        every = set().union(*closures.values())
        cached = self._infos(every, store=self.cache)
        gaps = dict((s, cache_gaps(closures[s], cached, self.key)) for s in valid)
        for system in valid:
            missing, unsigned = gaps[system]
            results[system].update(
                closure_paths=len(closures[system]),
                closure_bytes=sum(int(local[p].get('narSize') or 0) for p in closures[system]
                                  if local.get(p)),
                missing_paths=len(missing),
                missing_bytes=sum(int(local[p].get('narSize') or 0) for p in missing
                                  if local.get(p)),
                unsigned_paths=len(unsigned),
                changed=bool(missing or unsigned))
        to_copy = sorted(s for s in valid if gaps[s][0])
        to_sign = sorted(set(p for s in valid for p in gaps[s][1]))
        if check_mode or not (to_copy or to_sign):
            return results
        problems = self._send(to_copy, sorted(set(p for s in to_copy for p in gaps[s][0])),
                              to_sign)
        # the proof: ask the cache again about everything that was not there
        recheck = set(p for s in valid for p in gaps[s][0] + gaps[s][1])
        after = dict(cached)
        after.update(self._infos(recheck, store=self.cache))
        for system in valid:
            missing, unsigned = cache_gaps(closures[system], after, self.key)
            results[system]['copied'] = bool(gaps[system][0])
            if missing or unsigned:
                why = '; '.join(problems) or 'no error from Nix'
                results[system]['error'] = (
                    'not published: %s%s%s (%s)' % (
                        'missing from %s: %s' % (self.cache, describe(missing)) if missing else '',
                        '; ' if missing and unsigned else '',
                        'not signed by %s: %s' % (self.key, describe(unsigned)) if unsigned else '',
                        why))
        return results

    def _send(self, systems, missing, unsigned):
        """Copy ``systems`` (whose closures miss ``missing``) and sign
        ``unsigned`` in the cache. Returns Nix's messages of what failed:
        the check after it decides which systems made it."""
        problems = []
        if systems:
            uri = self.cache
            try:
                if is_binary_cache(self.cache):
                    uri = signing_uri(self.cache, self.key_file)
                else:
                    self._nix('store sign', ['-k', self.key_file] + missing,
                              "signing in the controller's store (needs a trusted user there; "
                              "a binary cache URI signs on upload instead)")
                self._nix('copy', ['--to', uri] + systems, 'copying to %s' % self.cache)
            except NixError as exc:
                problems.append(u'%s' % exc)
        if unsigned:
            try:
                self._nix('store sign', ['--store', self.cache, '-k', self.key_file] + unsigned,
                          'signing the paths %s holds unsigned' % self.cache)
            except NixError as exc:
                problems.append(u'%s' % exc)
        return problems


@serves
def serve_publish(context, requests, put):
    """nix_publish's batch work (``SERVE``): one publish of the systems
    ``requests`` ({host: system}). ``context``: {options (``options_of``),
    cache, signing_key, timeout, check_mode}."""
    publisher = Publisher(NixOptions.from_params(context['options']), context['cache'],
                          context['signing_key'], context['timeout'])
    answers = publisher.publish(sorted(set(requests.values())), context['check_mode'])
    shared = {'hosts': len(requests), 'processes': publisher.processes}
    for name, path in requests.items():
        put(name, {'answer': answers[path], 'batch': shared})


# the name nix_publish's BatchWork gives its serve function
SERVE = '%s:serve_publish' % __name__
