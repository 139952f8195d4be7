# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What nix_status's one read of a host found (``Look``).

The read is the activation stage's own program
(plugin_utils/activation/target/status-read.sh, ``_programs.status_script``:
the state folder is that stage's); each value it reports was checked for
its kind on the way (plugin_utils/activation/_activation_fields.py, the run
lines word by word), so nothing a target prints becomes a value it is not.
"""

from collections import namedtuple

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import platform_spec
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_fields import (
    RUN)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._reboot_rules import (
    RUNNING_NEEDS_BOOT)

# One run nix_activate kept (its status file, activate-runner.sh): ``new``
# the system it activated (or rolled back to), ``prev`` what ran before it,
# ``started`` and ``updated`` epoch seconds.
Run = namedtuple('Run', ['id', 'state', 'mode', 'new', 'prev', 'rolled_back', 'activated',
                         'started', 'updated'])


class Look:
    """What one read of a host found: ``values`` (the program's, each of its
    kind) and ``runs`` (``Run``s, oldest first); ``has_link``: the platform
    names what runs with a link (NixOS, nix-darwin)."""

    @classmethod
    def of(cls, platform, values):
        return cls(values, bool(platform_spec(platform)['activation'].get('current_link')))

    def __init__(self, values, has_link):
        self.values = values
        self.has_link = has_link
        runs = []
        for key, parsed in values.items():
            if not key.startswith('run_'):
                continue
            run_id = key[len('run_'):]
            try:
                RUN.parse(run_id)
            except ValueError:
                continue
            runs.append(Run(id=run_id, **parsed))
        # a run's id starts with its epoch: the same order as its start
        self.runs = sorted(runs, key=lambda r: (r.started or 0, r.id))

    def get(self, key):
        return self.values.get(key)

    def current(self):
        """What runs now: the platform's link where it has one, else the
        system the profile's current generation names (home-manager,
        nix-on-droid: their activation sets the profile)."""
        if self.has_link:
            return self.values.get('current')
        return self.values.get('generation_path')

    def boot_parts(self, which):
        """{part: file} of ``which`` ('booted' or 'current')."""
        return dict((part, self.values.get('%s_%s' % (which, part)))
                    for part in RUNNING_NEEDS_BOOT)
