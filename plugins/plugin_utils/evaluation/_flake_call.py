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
  outputs = { self, dep }: {
%(own)s
  };
}
'''

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


def probe_files(folder):
    """Write the probe flake and its non-flake input into ``folder``; the
    flake's path."""
    top = os.path.join(folder, 'probe')
    dep = os.path.join(folder, 'dep')
    os.mkdir(top)
    os.mkdir(dep)
    with open(os.path.join(dep, 'file'), 'w') as handle:
        handle.write('a non-flake input of the probe\n')
    own = '\n'.join('    %s = "%s";' % (name, SENTINEL) for name in CANDIDATES)
    with open(os.path.join(top, 'flake.nix'), 'w') as handle:
        handle.write(PROBE_FLAKE % {'dep': dep, 'own': own})
    return top


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


def ask(runner, folder):
    """What Nix's flake call of ``runner``'s Nix puts last on each node
    (``judge``), or the reason it cannot be recorded. Two Nix processes (the
    probe's lock, then its call) in a private folder under ``folder``,
    removed after; never raises."""
    place = tempfile.mkdtemp(prefix='flake-call-', dir=folder)
    try:
        top = probe_files(place)
        ref = 'path:%s' % top
        runner.check('flake lock', [ref], 'locking the probe flake', flake_command=True)
        expr = PROBE_EXPRESSION % {'ref': nix_string(ref), 'sentinel': nix_string(SENTINEL)}
        answer = runner.json('eval', ['--json', '--impure', '--expr', expr],
                             "asking Nix's flake call", flake_command=True)
    except NixError as exc:
        return "the probe of Nix's flake call failed: %s" % (exc.nix_message() or exc.message)
    except (OSError, ValueError) as exc:
        return "the probe of Nix's flake call could not be made: %s" % exc
    finally:
        shutil.rmtree(place, ignore_errors=True)
    return judge(answer)
