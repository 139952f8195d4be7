"""Inputs whose place Nix's call derives from another node's: a `path:`
input relative to its parent flake (and one relative to that), a relative
non-flake input, and a non-flake input with `?dir=`. Every host's answer
is what a plain `nix eval` of the commit gives (``Flake.run`` checks it),
on the first (recording) run and on reused runs. Real Nix, git and
strace."""

import os
import sys

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.evaluation import test_eval_reuse
from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse import MK, how
from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse_shapes import (
    Shape, record_then_reuse)

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402

# the same tools as test_eval_reuse: nix, git and strace
pytestmark = test_eval_reuse.pytestmark

# the root: a relative flake input (which has a relative input of its own),
# a relative non-flake input (no `sourceInfo` before Nix 2.25) and a
# non-flake input of another source's folder; each host reads one place
# Nix's call gives
ROOT = '''{
  inputs.child.url = "path:./child";
  inputs.raw = { url = "path:./rawdir"; flake = false; };
  inputs.nfdir = { url = "%(nfdir)s"; flake = false; };
  outputs = { self, child, raw, nfdir }:
    let
      lib = import ./lib/mk.nix;
      host = name: v: { config.system.build.toplevel = lib.mk {
        inherit name; args.v = builtins.toJSON v; }; };
    in {
      nixosConfigurations = {
        a = host "a" child.sourceInfo.outPath;
        b = host "b" child.outPath;
        c = host "c" child.where;
        d = host "d" [ child.gg child.inputs.grand.outPath child.inputs.grand.where ];
        e = host "e" [ raw.outPath (raw.sourceInfo.outPath or "none") ];
        f = host "f" (builtins.readFile (raw + "/file"));
        g = host "g" nfdir.outPath;
        h = host "h" (builtins.readFile (nfdir + "/file"));
        i = host "i" "plain";
      };
    };
}
'''
CHILD = '''{
  inputs.grand.url = "path:./grand";
  outputs = { self, grand }: { gg = grand.g; where = self.outPath; };
}
'''
GRAND = '{ outputs = { self }: { g = "grand"; where = self.outPath; }; }\n'


def nf_source(base):
    """A non-flake source whose top and `sub` folders both hold a `file`,
    and its reference with `?dir=sub` where this Nix takes one on a `path:`
    input (2.25+; 2.8 refuses it)."""
    nf = os.path.join(base, 'nf')
    os.makedirs(os.path.join(nf, 'sub'))
    for rel, text in (('file', 'the top file\n'), ('sub/file', 'the sub file\n')):
        with open(os.path.join(nf, rel), 'w') as handle:
            handle.write(text)
    features = _nix.NixCommand(_nix.NixOptions(options={'substituters': ''})).features()
    return 'path:%s%s' % (nf, '?dir=sub' if features.path_dir else '')


def test_relative_and_dir_inputs_are_where_nix_s_call_puts_them(tmp_path):
    """Nix 2.25+ gives a relative input its parent's whole source as
    `sourceInfo` and `<parent's outPath>/./child` as `outPath` (and so as
    `self.outPath` inside it), a nested relative input its place under
    its parent's, and a non-flake input with `?dir=` its folder. The
    recorded call gave `<src>//./child`, the child's folder as its source,
    failed on the nested input, and read the source's top `file` where
    Nix reads `sub/file`: wrong answers stored on the first run."""
    base = str(tmp_path)
    files = {'flake.nix': ROOT % {'nfdir': nf_source(base)}, 'lib/mk.nix': MK,
             'child/flake.nix': CHILD, 'child/grand/flake.nix': GRAND,
             'rawdir/file': 'raw\n'}
    flake = Shape(base, files, 'abcdefghi')
    # nix writes the lock of the inputs; commit it
    flake.truth()
    flake.git('add', '-A')
    flake.commit('lock')
    runs = record_then_reuse(flake)
    assert how(runs[0]) == dict.fromkeys('abcdefghi', 'evaluated')
    for entries in runs[1:]:
        # hosts that name a path of the commit's own source (the relative
        # inputs are in it) are evaluated again at every commit; the others
        # are reused
        assert set(how(entries).values()) <= {'reused', 'evaluated'}
        assert dict((k, how(entries)[k]) for k in 'ghi') == dict.fromkeys('ghi', 'reused')
