# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Nix's own flake call (its ``call-flake.nix``) puts last on every
node of a lock graph, asked of the Nix in use (docs/eval-cache.md, "self and
every input as Nix gives them").

Nix ends a flake's result with names of its own (``inputs``, ``outputs``,
``sourceInfo``, and ``_type`` from some version on) that win over whatever
the flake's outputs define, and ends a non-flake input's result with what
that version adds to its source. ``record.nix`` must end each node the same
way. Which names, and with what, is not inferred from one flake (what its
outputs happen to lack): ``ask`` evaluates a probe flake of its own whose
outputs define every such name with a sentinel, beside a non-flake input,
and reads back which names Nix replaced and by what. A name Nix replaces
with anything ``record.nix`` cannot give makes ``ask`` answer with the
reason instead: nothing of that Nix is recorded (its hosts are evaluated,
never reused).

Where Nix (2.25+) makes a node's outPath its flake's folder, a second probe
flake has the inputs whose place Nix's call derives from another node's (a
relative ``path:`` input, one relative to that, a relative non-flake input,
a non-flake input with ``?dir=``), and ``misplaced`` compares the outPath
of each, and of its source, with where ``record.nix`` puts it
(``PLACES``). Nix's calls differ there from version to version (relative
inputs came in 2.26, and until a later fix a nested one repeated its
parent's folder), so the answer's ``placed`` is None where they agree, else
why not: only a flake whose lock graph has such an input is then not
recorded (``reuse/_rules``), and every other flake of that Nix is.
"""

import os
import shutil
import tempfile

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, nix_string)

# the names record.nix gives a flake's result last, each with what Nix's
# call gives it: the node's inputs, its outputs, its source, the string "flake"
FLAKE_NAMES = {'inputs': 'inputs', 'outputs': 'outputs', 'sourceInfo': 'sourceInfo',
               '_type': 'flake'}
# the names record.nix gives a non-flake input last: its source
PLAIN_NAMES = {'sourceInfo': 'sourceInfo'}

# the probe's outputs: every name a flake call may replace, and one it must
# not (``probe``), each with this sentinel
SENTINEL = 'nixdeploy-probe-own-value'
CANDIDATES = ('_type', 'inputs', 'outPath', 'outputs', 'sourceInfo', 'narHash', 'probe')

PROBE_FLAKE = '''{
  inputs.dep = { url = "path:%(dep)s"; flake = false; };
%(more)s  outputs = { self, ... }: {
%(own)s
  };
}
'''
# the probe's inputs whose place Nix's call derives from another node's,
# where it makes a node's outPath its folder (a relative input, or `?dir=`
# on a `path:` input, is refused or placed otherwise before)
PLACED_INPUTS = '''  inputs.rel.url = "path:./rel";
  inputs.raw = { url = "path:./raw"; flake = false; };
  inputs.sub = { url = "path:%(dep)s?dir=sub"; flake = false; };
'''
REL_FLAKE = '''{
  inputs.grand.url = "path:./grand";
  outputs = { self, grand }: { where = self.outPath; };
}
'''
GRAND_FLAKE = '{ outputs = { self }: { where = self.outPath; }; }\n'

# where record.nix puts each of those in the folder layout, the probe's
# source written <src> and the non-flake source <dep>, as the call-flake.nix
# of Nix 2.34 does
PLACES = {
    'root': '<src>',
    'rel': '<src>/./rel', 'relSource': '<src>', 'relSelf': '<src>/./rel',
    'grand': '<src>/./rel/./grand', 'grandSource': '<src>', 'grandSelf': '<src>/./rel/./grand',
    'raw': '<src>/./raw', 'rawSource': '<src>',
    'sub': '<dep>/sub', 'subSource': '<dep>',
}

# What each name of the result is, by its value: the outputs' own value
# ("own"), or which of the call's parts it is. Names of the source itself
# (narHash, lastModified, outPath...) are the source's in every Nix, and
# record.nix gives them as the source has them: they are left out.
PROBE_EXPRESSION = '''let
  flake = builtins.getFlake %(ref)s;
  dep = flake.inputs.dep or { };
  source = if builtins.isAttrs (flake.sourceInfo or null) then flake.sourceInfo else { };
  kind = v:
    if v == %(sentinel)s then "own"
    else if v == "flake" then "flake"
    else if builtins.isAttrs v && builtins.attrNames v == [ "dep" ] then "inputs"
    else if builtins.isAttrs v && (v.probe or null) == %(sentinel)s then "outputs"
    else if builtins.isAttrs v && v ? narHash && !(v ? probe) then "sourceInfo"
    else "unknown";
  kinds = value: names: builtins.listToAttrs
    (map (name: { inherit name; value = kind value.${name}; }) names);
  # the names that are not the source's own (a name the outputs define
  # is one of them, whoever's value it has)
  notSource = builtins.filter (n: !(source ? ${n})) (builtins.attrNames flake);
  # a non-flake input's source attributes are scalars; what a call adds to
  # it is a set
  added = builtins.filter (n: builtins.isAttrs dep.${n}) (builtins.attrNames dep);
in {
  flake = kinds flake notSource;
  plain = kinds dep added;
}'''

# each placed input's outPath and its source's, with the probe's source
# and the non-flake source written as <src> and <dep> (``source`` is the
# probe's sourceInfo)
PLACES_EXPRESSION = '''  places = let
    inherit (flake.inputs) rel raw sub;
    grand = rel.inputs.grand;
    at = value: builtins.replaceStrings [ source.outPath sub.sourceInfo.outPath or "-" ]
      [ "<src>" "<dep>" ] (builtins.unsafeDiscardStringContext (toString value));
  in builtins.mapAttrs (_: at) {
    root = flake.outPath;
    rel = rel.outPath; relSource = rel.sourceInfo.outPath; relSelf = rel.where;
    grand = grand.outPath; grandSource = grand.sourceInfo.outPath; grandSelf = grand.where;
    raw = raw.outPath; rawSource = raw.sourceInfo.outPath or "-";
    sub = sub.outPath; subSource = sub.sourceInfo.outPath or "-";
  };
'''


def probe_files(folder, placed):
    """Write the probe flake and its non-flake input into ``folder`` (with
    the inputs of ``PLACES`` where ``placed``); the flake's path."""
    top = os.path.join(folder, 'probe')
    dep = os.path.join(folder, 'dep')
    files = {os.path.join(dep, 'file'): 'a non-flake input of the probe\n'}
    if placed:
        files.update({os.path.join(dep, 'sub', 'file'): 'its folder\n',
                      os.path.join(top, 'raw', 'file'): 'a relative non-flake input\n',
                      os.path.join(top, 'rel', 'flake.nix'): REL_FLAKE,
                      os.path.join(top, 'rel', 'grand', 'flake.nix'): GRAND_FLAKE})
    own = '\n'.join('    %s = "%s";' % (name, SENTINEL) for name in CANDIDATES)
    more = PLACED_INPUTS % {'dep': dep} if placed else ''
    files[os.path.join(top, 'flake.nix')] = PROBE_FLAKE % {'dep': dep, 'own': own, 'more': more}
    for path, text in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(text)
    return top


def probe_expression(ref, placed):
    """The expression that reads the probe flake at ``ref`` back: the names
    its call puts last, or (``placed``) only where it puts its inputs."""
    if placed:
        return 'let\n  flake = builtins.getFlake %s;\n  source = flake.sourceInfo;\nin {\n%s}' % (
            nix_string(ref), PLACES_EXPRESSION)
    return PROBE_EXPRESSION % {'ref': nix_string(ref), 'sentinel': nix_string(SENTINEL)}


def judge(answer):
    """{'flake': [names], 'plain': [names]} that record.nix gives last, from
    the probe's ``answer``; or the reason this Nix's call cannot be made
    the same (a text)."""
    if not isinstance(answer, dict) or not isinstance(answer.get('flake'), dict) \
            or not isinstance(answer.get('plain'), dict):
        return "the probe of Nix's flake call gave no answer"
    found = {}
    for part, known in (('flake', FLAKE_NAMES), ('plain', PLAIN_NAMES)):
        given = answer[part]
        if part == 'flake' and given.get('probe') != 'own':
            return "Nix's flake call does not keep the outputs' own attributes"
        added = dict((name, kind) for name, kind in given.items() if kind != 'own')
        wrong = sorted(name for name, kind in added.items() if known.get(name) != kind)
        if wrong:
            return ("this Nix's flake call gives %s %s that the recorded call cannot give"
                    % ('self' if part == 'flake' else 'a non-flake input', ', '.join(wrong)))
        found[part] = sorted(added)
    return found


def misplaced(answer):
    """Why the outPaths Nix's call gave the placed inputs of the probe's
    ``answer`` are not where record.nix puts them, or None."""
    places = answer.get('places') if isinstance(answer, dict) else None
    if not isinstance(places, dict):
        return "the probe of where Nix's flake call places inputs gave no answer"
    for name in sorted(PLACES):
        if places.get(name) != PLACES[name]:
            return ("this Nix's flake call places %s at %s where the recorded call places it at %s"
                    % (name, places.get(name), PLACES[name]))
    return None


def ask(runner, folder):
    """What Nix's flake call of ``runner``'s Nix puts last on each node
    (``judge``) and ``placed``: None, or why it places the inputs of
    ``PLACES`` otherwise than record.nix (asked where Nix has the folder
    layout); or the reason nothing of it can be recorded. Two Nix
    processes for each probe (its lock, then its call) in a private folder
    under ``folder``, removed after; never raises."""
    found = _probe(runner, folder, False)
    if isinstance(found, str):
        return found
    found = judge(found)
    if isinstance(found, dict):
        found['placed'] = None
        # the folder layout of record.nix (reuse/_reuse's spec) goes with
        # this feature: the places are asked where it is used
        if runner.features().path_dir:
            answer = _probe(runner, folder, True)
            found['placed'] = answer if isinstance(answer, str) else misplaced(answer)
    return found


def _probe(runner, folder, placed):
    """The answer of the probe flake (``placed``: the one of ``PLACES``),
    or why there is none (a text)."""
    what = "where Nix's flake call places inputs" if placed else "Nix's flake call"
    place = tempfile.mkdtemp(prefix='flake-call-', dir=folder)
    try:
        top = probe_files(place, placed)
        ref = 'path:%s' % top
        runner.check('flake lock', [ref], 'locking the probe flake', flake_command=True)
        return runner.json('eval', ['--json', '--impure', '--expr', probe_expression(ref, placed)],
                           'asking %s' % what, flake_command=True)
    except NixError as exc:
        return "the probe of %s failed: %s" % (what, exc.nix_message() or exc.message)
    except (OSError, ValueError) as exc:
        return "the probe of %s could not be made: %s" % (what, exc)
    finally:
        shutil.rmtree(place, ignore_errors=True)
