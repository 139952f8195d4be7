# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's fleet flake with each host's system in a file of its own, as a
fleet owner keeps one: fleet.json says which hosts exist (the inventory
plugin reads it through the flake's ``inventory``) and each configuration's
platform; hosts/<name>.nix, which reads hosts/<name>.json, holds everything
else of that configuration (its version, behaviour, cost knobs), read only by
that system's evaluation. A
one-host commit then changes one file that one system reads, and reuse
across commits (docs/eval-cache.md) keeps every other host's answer.

The flake is tests/lab/try_folder.py's TRY_FLAKE (lib.nix called once per
system, with only that configuration); the knobs are JSON data that each
host's module reads, never Nix text.
"""

import json
import os

from tests.lab.fixtures import FleetFlake
from tests.lab.try_folder import TRY_FLAKE

# each host's module: its knobs, as data (never Nix text made of them)
HOST_MODULE = """\
# the system of %s: its knobs are %s.json beside this file
builtins.fromJSON (builtins.readFile ./%s.json)
"""

# what stays in fleet.json: the output a configuration lands in
SHARED_KNOBS = ('platform',)


class OwnFilesFlake(FleetFlake):
    """A FleetFlake whose configurations' knobs live in hosts/<name>.json;
    set_config and set_all write only the files whose content changes."""

    @classmethod
    def adopt(cls, flake):
        """The same flake on disk, rewritten into this shape."""
        own = cls(flake.path, flake.data)
        with open(os.path.join(own.path, 'flake.nix'), 'w') as handle:
            handle.write(TRY_FLAKE)
        own.save()
        return own

    def save(self):
        shared = dict(self.data)
        shared['configurations'] = dict(
            (name, dict((k, v) for k, v in config.items() if k in SHARED_KNOBS))
            for name, config in self.data['configurations'].items())
        with open(os.path.join(self.path, 'fleet.json'), 'w') as handle:
            json.dump(shared, handle, indent=2, sort_keys=True)
        folder = os.path.join(self.path, 'hosts')
        os.makedirs(folder, exist_ok=True)
        for name, config in self.data['configurations'].items():
            own = dict((k, v) for k, v in config.items() if k not in SHARED_KNOBS)
            self._write_if_changed(os.path.join(folder, '%s.nix' % name),
                                   HOST_MODULE % (name, name, name))
            self._write_if_changed(os.path.join(folder, '%s.json' % name),
                                   json.dumps(own, indent=2, sort_keys=True) + '\n')

    @staticmethod
    def _write_if_changed(path, text):
        # a file left as it was is what a commit of another host leaves
        try:
            with open(path) as handle:
                if handle.read() == text:
                    return
        except OSError:
            pass
        with open(path, 'w') as handle:
            handle.write(text)
