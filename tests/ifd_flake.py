"""A flake that imports from a derivation (IFD), for the tests of
``allow-import-from-derivation = false`` in the inventory's and nix_eval's
evaluations (plugin_utils/evaluation/_eval.py ``evaluation_options``).

Its ``inventory`` output and its ``system`` attribute both come from
``import`` of a derivation's output: evaluating either one builds that
derivation first, unless Nix refuses to. The derivation's name is a needle
of the caller's, so a test can tell whether its output was ever built here
(``built``): a refused evaluation leaves its ``.drv`` in the store (it was
instantiated), never its output.
"""

import os
import secrets
import shutil

from tests.lab.fixtures import BUSYBOX

FLAKE = r'''
{
  outputs = { self }:
    let
      # busybox picks the applet from argv[0]'s name: it must be "busybox"
      sh = "${./busybox}/busybox";
      made = derivation {
        name = "@NEEDLE@";
        system = "@SYSTEM@";
        builder = sh;
        args = [ "sh" "-c" "echo '{ inventory = { @HOST@ = { targetHost = \"192.0.2.7\"; }; }; tag = \"ifd\"; }' > $out" ];
      };
      data = import made;
    in {
      inventory = data.inventory;
      system = derivation {
        name = "nixdeploy-ifd-system-${data.tag}";
        system = "@SYSTEM@";
        builder = sh;
        args = [ "sh" "-c" "echo system > $out" ];
      };
    };
}
'''


def needle():
    """A derivation name no other test run uses."""
    return 'nixdeploy-ifd-%d-%s' % (os.getpid(), secrets.token_hex(4))


# what a flake sets for itself: Nix applies it after every configuration file
# and NIX_CONFIG wherever accept-flake-config is on
NIX_CONFIG = '''
  nixConfig.allow-import-from-derivation = true;
  nixConfig.pure-eval = false;'''


def write(folder, name, system, host='ifdhost', nix_config=False):
    """The flake in ``folder`` (made), whose imported derivation is called
    ``name``; its inventory holds ``host``; with ``nix_config`` the flake
    allows import-from-derivation itself (its ``nixConfig``). Returns its
    ``path:`` reference."""
    os.makedirs(os.path.join(folder, 'busybox'), exist_ok=True)
    shutil.copy(BUSYBOX, os.path.join(folder, 'busybox', 'busybox'))
    text = FLAKE.replace('@NEEDLE@', name).replace('@SYSTEM@', system).replace('@HOST@', host)
    if nix_config:
        text = text.replace('{\n  outputs', '{%s\n  outputs' % NIX_CONFIG, 1)
        assert 'nixConfig' in text
    with open(os.path.join(folder, 'flake.nix'), 'w') as handle:
        handle.write(text)
    return 'path:%s' % folder


def built(name, store='/nix/store'):
    """Whether the output of the derivation ``name`` is in the store (its
    ``.drv`` does not count: evaluating instantiates it)."""
    return any(entry.split('-', 1)[-1] == name for entry in os.listdir(store))
