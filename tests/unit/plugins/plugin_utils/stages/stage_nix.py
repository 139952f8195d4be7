"""What the stages' unit tests share on the controller's side: a tiny flake
whose systems (good, other, bad, and slow: once the test opens its gate)
build with /bin/sh in the controller's real store (new ones each test: a
fresh tag), the batch folder and evaluation cache in the test's own folder,
and Nix's options with no substituter (no network)."""

import subprocess
import sys
import uuid

from ansible import constants as C

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402

NIX_OPTIONS = {'substituters': ''}

FLAKE = r'''{
  outputs = { self }: let
    sh = name: script: derivation { inherit name; system = "@SYSTEM@";
                                    builder = "/bin/sh"; args = [ "-c" script ]; };
  in {
    good = sh "stage-good-@TAG@" "echo good > $out";
    other = sh "stage-other-@TAG@" "echo other > $out";
    bad = sh "stage-bad-@TAG@" "echo broken on purpose >&2; exit 1";
    # an evaluation of minutes (10^10 additions; Nix ignores SIGTERM meanwhile)
    stuck = builtins.seq (builtins.foldl' (a: _: builtins.foldl' (b: _: b + 1) a
      (builtins.genList (x: x) 100000)) 0 (builtins.genList (x: x) 100000))
      (sh "stage-stuck-@TAG@" "echo stuck > $out");
    # built once the test opens its gate (at most 60 s: 20 s was once too
    # short on a busy CI machine, where the test only opens it when its
    # other host is answered; a builder's PATH
    # holds nothing: the host's sleep). It sees neither the gate nor sleep
    # in a sandbox, where it would be built at once (the current stack's
    # Nix sandboxes; this one's falls back): build it with SANDBOX_OFF
    slow = sh "stage-slow-@TAG@" ''
      [ -x /bin/sleep ] || { echo "slow needs Nix's sandbox off (SANDBOX_OFF)" >&2; exit 1; }
      n=0
      while [ ! -e "@GATE@" ] && [ $n -lt 1200 ]; do /bin/sleep 0.05; n=$((n + 1)); done
      echo slow > $out'';
  };
}
'''


# what the slow system needs to see its gate and the host's sleep
SANDBOX_OFF = {'sandbox': 'false'}


def options(extra=None):
    """The Nix options of every stage test (no substituter: no network),
    and ``extra``."""
    return _nix.NixOptions(options=dict(NIX_OPTIONS, **(extra or {})))


class Flake:
    """A flake in ``folder`` with the systems good, other and bad, new ones
    (a fresh tag in their names); ``drv(name)`` instantiates one; slow
    is built once ``open_gate`` adds the store path ``gate``."""

    def __init__(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:12]
        # the gate: a store path (builders may not see the test's folder),
        # known before it exists: added once for its name, then deleted
        self._gate = folder / ('stage-gate-%s' % tag)
        self._gate.write_text('open\n')
        self.gate = self.open_gate()
        subprocess.run(['nix-store', '--delete', self.gate], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (folder / 'flake.nix').write_text(FLAKE.replace('@SYSTEM@', _nix.native_system())
                                          .replace('@TAG@', tag).replace('@GATE@', self.gate))
        self.ref = 'path:%s' % folder
        self._drvs = {}

    def open_gate(self):
        """Let the slow system be built; its path."""
        return subprocess.run(['nix-store', '--add', str(self._gate)], check=True,
                              stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()

    def request(self, name):
        """A nix_eval request for the system ``name``."""
        return {'flake': self.ref, 'attr': [name], 'attr_string': name, 'platform': 'nixos'}

    def drv(self, name):
        """The derivation of ``name`` in the controller's store."""
        if name not in self._drvs:
            self._drvs[name] = _nix.NixCommand(options()).json(
                'eval', ['--json', '%s#%s.drvPath' % (self.ref, name)], 'eval')
        return self._drvs[name]


def controller_folders(tmp_path, monkeypatch):
    """The batch folder (Ansible's local tmp) and the evaluation cache in
    ``tmp_path``: a test touches nothing of the user's."""
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path / 'local-tmp'))
    monkeypatch.setenv('NIXDEPLOY_EVAL_CACHE', str(tmp_path / 'eval-cache'))
