# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every reason a flake's hosts are neither reused nor recorded, one row
each (docs/eval-cache.md, "When nothing is reused").

A row has its name, the check that finds it (``check(facts)``: None where
it does not apply, else the detail the run says) and the sentence the run
says once for the flake, in ``<flake>: no host is reused across commits
(<sentence>)``. Rows are tried in order; the first that applies decides.
What a row needs to know is read once, and only when a row asks for it
(``Facts``): the strace probe runs only where no row before it applied. One
exception saves a Nix start a run: the probe of Nix's flake call is asked
beside the flake's attributes, the row just before it, which it needs
nothing of (where that row applies, its answer is waited for and unused).
"""

import threading

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record import _trace
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import IFD_SETTING
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError


class Rule(object):
    def __init__(self, name, check, says):
        self.name, self.check, self.says = name, check, says

    def reason(self, facts):
        """The sentence the run says, or None where the row does not apply."""
        detail = self.check(facts)
        if detail is None or detail is False:
            return None
        return self.says.format(detail=detail)


class Facts(object):
    """What the rows read of one run and one flake. ``trace()``,
    ``info()`` and ``call()`` are asked of the caller's functions once, when
    first needed."""

    def __init__(self, opts, features, source, distrust, trace, info, call):
        self.opts, self.source = opts, source
        self._features, self._distrust, self._trace, self._info = features, distrust, trace, info
        self._call = call
        self._asked = {}
        # {name: _Asking} asked ahead of the row that needs it (``info``)
        self._started = {}

    def _once(self, name, ask):
        if name not in self._asked:
            started = self._started.pop(name, None)
            self._asked[name] = started.answer() if started is not None else ask()
        return self._asked[name]

    def finish(self):
        """Wait for what was asked ahead and no row needed (a row before
        it applied): nothing of this flake's facts outlives its decision,
        and what it said decides nothing."""
        started, self._started = self._started, {}
        for asking in started.values():
            try:
                asking.answer()
            except Exception:  # pylint: disable=broad-except
                pass

    def features(self):
        """``NixFeatures``, or the error text of asking Nix."""
        def ask():
            try:
                return self._features()
            except NixError as exc:
                return u'%s' % exc
        return self._once('features', ask)

    def like(self):
        found = self.features()
        return _nix_output.like_nix(found.flavour, found.version)

    def trace(self):
        return self._once('trace', self._trace)

    def distrusted(self):
        return self._once('distrust', self._distrust)

    def info(self):
        """{'info': ..., 'refused': [...]} or the error text. The flake
        call's probe, which the next row needs and which needs nothing of
        this answer, is asked of Nix beside it."""
        if 'call' not in self._asked and 'call' not in self._started:
            self._started['call'] = _Asking(self._call)
        return self._once('info', self._info)

    def call(self):
        """What this Nix's flake call puts last on each node
        (``record/_flake_call.ask``: {'flake': [...], 'plain': [...]}) or why it
        cannot be recorded (a text)."""
        return self._once('call', self._call)


class _Asking(object):
    """``ask()`` run in a thread of its own from now on; ``answer`` waits
    for what it gave (or raises what it raised)."""

    def __init__(self, ask):
        self._ask = ask
        self._value = self._error = None
        self._thread = threading.Thread(target=self._run, name='nixdeploy-facts')
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        try:
            self._value = self._ask()
        except BaseException as exc:  # pylint: disable=broad-except
            self._error = exc

    def answer(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _ifd(facts):
    value = facts.opts.options.get(IFD_SETTING)
    return value not in (None, False) and u'%s' % value not in ('false', '0', 'no', '')


def _nix_unknown(facts):
    found = facts.features()
    return found if isinstance(found, str) else None


def _info_missing(facts):
    asked = facts.info()
    if isinstance(asked, dict) and isinstance(asked.get('info'), dict):
        return None
    return asked if isinstance(asked, str) and asked else 'no answer'


def _call_unknown(facts):
    found = facts.call()
    return found if isinstance(found, str) else None


def _misplaced(facts):
    found = facts.call()
    said = found.get('placed') if isinstance(found, dict) else None
    return said if said and placed_nodes(facts.source) else None


def placed_nodes(source):
    """The names of the lock graph's nodes whose place Nix's call derives
    from another node's (docs/eval-cache.md): a relative `path:` input, a
    non-flake input with a `dir`."""
    locks = (source.identity or {}).get('locks')
    nodes = locks.get('nodes') if isinstance(locks, dict) else None
    found = []
    for name, node in sorted((nodes or {}).items()):
        locked = node.get('locked') if isinstance(node, dict) else None
        if not isinstance(locked, dict):
            continue
        path = u'%s' % locked.get('path', '/')
        if (locked.get('type') == 'path' and not path.startswith('/')) or (
                node.get('flake') is False and locked.get('dir')):
            found.append(name)
    return found


def _dirty_subflake(facts):
    source = facts.source
    return bool(source.sub and source.root and not facts.features().path_dir)


def _subflake_2_20(facts):
    return bool(facts.source.sub and facts.like() >= (2, 20) and not facts.features().path_dir)


RULES = (
    Rule('import-from-derivation', _ifd,
         'import-from-derivation is allowed: an evaluation may read what it builds'),
    Rule('nix-not-asked', _nix_unknown, '{detail}'),
    Rule('determinate-nix', lambda f: f.features().flavour == _nix_output.DETERMINATE,
         'Determinate Nix reads a flake through its lazy trees, which strace cannot see'),
    Rule('no-tracing', lambda f: f.trace(), '{detail}'),
    Rule('not-pinned', lambda f: bool(f.source.reason or f.source.identity is None
                                      or not f.source.store_path),
         'its content is not pinned to a store copy'),
    Rule('lock-resolved', lambda f: bool(f.source.lock_file),
         'its lock graph was resolved by the run'),
    Rule('distrusted', lambda f: f.distrusted() or None,
         'a spot check found a reused answer Nix does not give; reuse stays off for this flake '
         'until {detail} is removed'),
    Rule('no-attributes', _info_missing, "Nix did not give the flake's attributes ({detail})"),
    Rule('unknown-call', _call_unknown, '{detail}'),
    Rule('misplaced-input', _misplaced,
         'it has a relative or ?dir= input, and {detail}'),
    Rule('dirty-subflake', _dirty_subflake,
         'a subflake of a tree with uncommitted changes is not read as one locked content by '
         'Nix before 2.25'),
    Rule('subflake-nix-2.20', _subflake_2_20, 'a subflake on Nix 2.20-2.24'),
    Rule('no-nar-hash', lambda f: not f.source.provenance.get('nar_hash'),
         'its content has no narHash'),
)


def why_not(facts):
    """The first row's sentence that applies to ``facts``, or None: its
    hosts may be reused and recorded."""
    try:
        for rule in RULES:
            found = rule.reason(facts)
            if found:
                return found
        return None
    finally:
        facts.finish()


def strace_problem(sources, strace, nix_bin, key):
    """None when strace can trace ``nix_bin`` here, else why not; asked once
    a run (``sources.once``)."""
    return sources.once('trace-%s' % key, lambda: _trace.probe(strace, nix_bin or 'nix'))
