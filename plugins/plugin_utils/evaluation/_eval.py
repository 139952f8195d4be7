# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evaluate the systems of many hosts in as few Nix processes as possible.

One ``nix eval --json <flake>#. --apply F`` per chunk: the installable is
the flake's outputs attribute set itself (``<flake>#.`` from Nix 2.19 and in
Lix, the empty fragment on older Nix: ``NixCommand.outputs``; either way Nix
locks the flake as usual, and a flake's ``packages.<system>`` is not taken
for its outputs), and ``F`` walks every requested attribute path inside that
one evaluation. This costs
no ``--impure`` (``builtins.getFlake`` would need it for unlocked ``path:``
refs) and no second process to lock the flake first. Shared libraries (a
nixpkgs) are evaluated once per process, which is where batching pays.

A Nix evaluation error aborts the whole process, and ``builtins.tryEval``
cannot catch a missing attribute. So ``F`` forces the hosts one after the
other and ``builtins.trace``-s each result with a marker as soon as it is
known: when the process fails, the traced hosts keep their results, the
first untraced one gets Nix's error, and only the hosts after it are
evaluated again (in one process). k broken systems in a chunk cost k + 1
processes, not one per host.

An evaluation never builds: ``allow-import-from-derivation = false`` for
every Nix process of an ``Evaluator`` (and of the inventory plugin, through
``evaluation_options``) unless the operator's ``nix_options`` set it. With
import-from-derivation, evaluating a flake builds and runs the derivations
its expressions import, as the job's user beside its keys; ``ee/nix.conf``
turns it off in the execution environment, this on any controller (a
workstation's or CI's nix.conf allows it by default).
"""

import dataclasses
import json
import re
import secrets
import typing

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import (
    OUTPUT_PLATFORM, attr_string, system_attr_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_stderr
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixOptions, NixCommand, nix_list, nix_string)

# colmena's rule of thumb: one configuration needs about 512 MB, keep 1 GB.
MB_PER_SYSTEM = 512
RESERVED_MB = 1024
MAX_DEFAULT_CHUNK = 256

# The start of the marker of the traced results. The flake's own code can
# call builtins.trace too, so each evaluation's marker ends in 128 random
# bits (``trace_marker``) that exist only in its --apply expression: a trace
# line of the flake's never reads as a result.
TRACE_MARKER = 'nixdeploy-eval-result:'


# The Nix setting that lets an evaluation build what it imports; off for
# evaluations unless nix_options name it (docs/security.md)
IFD_SETTING = 'allow-import-from-derivation'


def evaluation_options(nix_options):
    """``nix_options`` for an evaluation: import-from-derivation off, unless
    they set it themselves (``allow-import-from-derivation: true`` is the
    operator's explicit choice). Like every nix_options value it reaches Nix
    as a NIX_CONFIG line after the user's own, so it wins over nix.conf."""
    options = dict(nix_options or {})
    options.setdefault(IFD_SETTING, False)
    return options


def evaluation_opts(opts):
    """A copy of ``opts`` (NixOptions) whose options are
    ``evaluation_options``."""
    return NixOptions(nix_bin=opts.nix_bin, extra_args=opts.extra_args,
                      options=evaluation_options(opts.options), impure=opts.impure,
                      show_trace=opts.show_trace, override_inputs=opts.override_inputs)


def trace_marker():
    """A marker for one evaluation's traces, nobody can guess."""
    return '%s%s:' % (TRACE_MARKER, secrets.token_hex(16))


_APPLY = u'''outputs:
let
  marker = %(marker)s;
  paths = [ %(paths)s ];
  get = shown: path: builtins.foldl'
    (value: name:
      if builtins.isAttrs value && value ? ${name} then value.${name}
      else throw "nixdeploy: the flake has no attribute ${shown} (no '${name}')")
    outputs path;
  one = index: path:
    let
      shown = builtins.concatStringsSep "." path;
      x = get shown path;
      # not named outPath: toJSON would print such a set as that path
      result =
        if builtins.isAttrs x && x ? drvPath
        then { drv = x.drvPath; out = x.outPath; system = x.system or null; }
        else throw "nixdeploy: ${shown} is not a derivation";
    in builtins.trace (marker + toString index + " " + builtins.toJSON result) result;
  # list elements are thunks evaluated (and traced) once each
  results = builtins.genList (index: one index (builtins.elemAt paths index)) (builtins.length paths);
  # Force the hosts in order so a failure names the first untraced one.
  forced = builtins.foldl' (acc: result: builtins.seq result.drv acc) true results;
in builtins.seq forced %(value)s
'''


# Nix's system names: x86_64-linux, aarch64-darwin, armv7l-linux, ...
SYSTEM_NAME = re.compile(r'[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)+\Z')


class EvalError(NixdeployError):
    """A host's request cannot even be formed (no flake, no attribute)."""


def parse_attr(value):
    """An attribute path given as ``a.b."c.d"`` (Nix quoting) or a list."""
    if value is None or value == '' or value == []:
        return None
    if isinstance(value, (list, tuple)):
        return [u'%s' % v for v in value]
    text = u'%s' % value
    parts, current, idx, quoted, had_quotes = [], [], 0, False, False
    while idx < len(text):
        char = text[idx]
        if quoted:
            if char == '\\' and idx + 1 < len(text):
                idx += 1
                current.append(text[idx])
            elif char == '"':
                quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted, had_quotes = True, True
        elif char == '.':
            parts.append(u''.join(current))
            current, had_quotes = [], False
        else:
            current.append(char)
        idx += 1
    if quoted:
        raise EvalError('unbalanced quote in attribute path %r' % text)
    parts.append(u''.join(current))
    if any(p == '' for p in parts) and not had_quotes:
        raise EvalError('empty name in attribute path %r' % text)
    return parts


def default_chunk_size(meminfo='/proc/meminfo'):
    """How many systems one Nix process may evaluate: (free MB - 1 GB) / 512 MB."""
    available_kb = None
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith('MemAvailable:'):
                    available_kb = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        available_kb = None
    if available_kb is None:
        return 8
    chunk = (available_kb // 1024 - RESERVED_MB) // MB_PER_SYSTEM
    return int(max(1, min(MAX_DEFAULT_CHUNK, chunk)))


def platform_of(attr_path, platform=None):
    """The host's platform: given, or read from the attribute's flake output."""
    if platform:
        return platform
    if attr_path:
        return OUTPUT_PLATFORM.get(attr_path[0])
    return None


@dataclasses.dataclass(frozen=True)
class EvalRequest:
    """What one host asks its evaluation, built by ``for_host``; ``data()``
    is the form that crosses processes (a batch server's ``request``, and
    the one foreseen for the host, which the server compares with the
    host's own; ``request_key``: the hosts that share one evaluation).

    ``flake``: the flake reference, resolved (a relative path made
    absolute); ``attr``: the attribute path, one name an item;
    ``attr_string``: that path as Nix writes it (``a."b.c"``), for messages;
    ``platform``: the host's platform (given, or read from the attribute's
    flake output), None when neither says."""

    flake: str
    attr: tuple
    attr_string: str
    platform: typing.Optional[str]

    @classmethod
    def for_host(cls, host, args, hostvars, resolve_flake):
        """What to evaluate for ``host``.

        ``args``: the host's arguments (``flake`` and ``attr`` filled from
        its variables nix_flake and nix_attr when its task left them unset,
        as the option table says: module_utils/_role_vars.py),
        ``hostvars``: the host's variables, for its platform and
        ``nix_configuration``. Without ``attr``, the platform's system
        attribute of nix_configuration (or the host name). EvalError when
        no flake or no attribute can be formed.
        """
        flake = args.get('flake')
        if not flake:
            raise EvalError('no flake: set the flake option or the host var nix_flake')
        platform = args.get('platform') or _role_vars.host_value('platform', hostvars)
        attr = parse_attr(args.get('attr'))
        if not attr:
            if not platform:
                raise EvalError('no attribute: set attr, the host var nix_attr or nix_platform')
            try:
                attr = system_attr_path(platform, hostvars.get('nix_configuration') or host)
            except ValueError as exc:
                raise EvalError(u'%s' % exc)
        return cls(flake=resolve_flake(flake), attr=tuple(attr), attr_string=attr_string(attr),
                   platform=platform_of(attr, platform))

    def data(self):
        """{flake, attr (a list), attr_string, platform}, in this order: the
        keys and values a run before this type wrote, so batch entries and
        ``request_key`` still match theirs."""
        return {'flake': self.flake, 'attr': list(self.attr), 'attr_string': self.attr_string,
                'platform': self.platform}


def host_request(host, args, hostvars, resolve_flake):
    """``EvalRequest.for_host(...).data()``: for callers that only pass the
    data on (benchmarks, tests/evaldiff)."""
    return EvalRequest.for_host(host, args, hostvars, resolve_flake).data()


def request_key(request):
    """Hosts with equal keys share one evaluation."""
    return json.dumps([request['flake'], request['attr']])


def apply_expression(paths, marker=None, whole=True):
    """The ``--apply`` function for a list of attribute paths (all quoted),
    tracing each result with ``marker`` (a new ``trace_marker`` if None).
    Its value is the list of results, or (``whole`` False: the traces say it
    all) just ``true``."""
    return _APPLY % {
        'marker': nix_string(marker or trace_marker()),
        'paths': ' '.join('(%s)' % nix_list(p) for p in paths),
        'value': 'results' if whole else 'true',
    }


def result_of(raw):
    """A host's answer from its traced (or printed) result, or {error}.

    The flake decides what its attribute is: a set with a ``drvPath`` that
    names a flake, a path outside the store or an option is not a system.
    Its paths must be store paths (a .drv and an output) and its system a
    plain Nix system name before the build, the copy, the facts or the cache
    take them."""
    drv, out, system = raw.get('drv'), raw.get('out'), raw.get('system')
    if not (isinstance(drv, str) and is_store_path(drv) and drv.endswith('.drv')
            and isinstance(out, str) and is_store_path(out) and not out.endswith('.drv')):
        return {'error': 'the attribute is not a derivation of the Nix store: its drvPath %s, '
                         'its outPath %s' % (printable(u'%s' % (drv,))[:300],
                                             printable(u'%s' % (out,))[:300])}
    if system is not None and not (isinstance(system, str) and SYSTEM_NAME.match(system)):
        return {'error': 'the derivation\'s system %s is not a Nix system name'
                         % printable(u'%s' % (system,))[:100]}
    return {'drv_path': drv, 'out_path': out, 'system': system}


class Evaluator:
    """Evaluates requests; counts its Nix processes (``processes``). Its Nix
    runs with import-from-derivation off unless ``opts`` turn it on
    (``evaluation_opts``)."""

    def __init__(self, opts, chunk_size=None, timeout=None):
        self.runner = NixCommand(evaluation_opts(opts), timeout)
        self.chunk_size = max(1, int(chunk_size or default_chunk_size()))

    @property
    def processes(self):
        return self.runner.processes

    def evaluate(self, requests):
        """``requests``: {host: request}. Returns {host: result | {'error': text}}.

        Equal requests are evaluated once; each flake gets its own chunks.
        """
        by_key = {}
        for host, request in requests.items():
            by_key.setdefault(request_key(request), request)
        by_flake = {}
        for key in sorted(by_key):
            by_flake.setdefault(by_key[key]['flake'], []).append(key)
        answers = {}
        for flake, keys in sorted(by_flake.items()):
            for start in range(0, len(keys), self.chunk_size):
                chunk = keys[start:start + self.chunk_size]
                answers.update(self._chunk(flake, [(k, by_key[k]['attr']) for k in chunk]))
        return dict((host, answers[request_key(req)]) for host, req in requests.items())

    def _chunk(self, flake, items):
        """Evaluate [(key, attr path)] of one flake; isolate failures."""
        answers = {}
        while items:
            marker = trace_marker()
            argv, rc, out, err = self.runner.run(
                'eval', ['--json'] + self.runner.outputs(flake)
                + ['--apply', apply_expression([p for _k, p in items], marker)], flake_command=True)
            traced, rest = _nix_stderr.traces(err, marker)
            if rc == 0:
                try:
                    values = json.loads(out)
                except ValueError as exc:
                    values = None
                    rest = 'error: nix eval printed no JSON (%s): %s' % (exc, out[-500:])
                if values is not None and len(values) == len(items):
                    for (key, _path), raw in zip(items, values):
                        answers[key] = result_of(raw)
                    return answers
            for index, raw in traced.items():
                if index < len(items):
                    answers[items[index][0]] = result_of(raw)
            failed = min(set(range(len(items))) - set(traced)) if len(traced) < len(items) else None
            if failed is None:
                # every host traced a result, yet nix failed: report to all
                error = NixError('nix eval failed', argv=argv, rc=rc, stderr=rest)
                for key, _path in items:
                    answers.setdefault(key, {'error': u'%s' % error})
                return answers
            error = NixError('evaluating %s#%s failed' % (flake, attr_string(items[failed][1])),
                             argv=argv, rc=rc, stderr=rest)
            answers[items[failed][0]] = {'error': u'%s' % error,
                                         'nix_message': error.nix_message()}
            items = items[failed + 1:]
        return answers


# ------------------------------------------------------------------ arguments


def normalised(data):
    """``data`` as it reads back from JSON (for comparing with batch files)."""
    return json.loads(json.dumps(data))
