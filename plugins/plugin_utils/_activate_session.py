# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What nix_activate's controller parts share: the timing of a look at the
target, the lost connection."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# A look at a run waits on the target up to POLL_WAIT s for it to move on (one
# session instead of a poll every half second); it may take LOOK_TIMEOUT s
# more before the connection counts as lost (a mux session over a dead link
# never ends). The launch waits up to 10 s for the runner's first status,
# then up to LAUNCH_WAIT s for the run to end or await its confirmation.
POLL_WAIT = 5
RETRY_INTERVAL = 2.0
LOOK_TIMEOUT = 10
LAUNCH_TIMEOUT = 30
LAUNCH_WAIT = 10
# While a host reboots: seconds between looks for its new boot id.
BOOT_LOOK_INTERVAL = 2.0


class ConnectionLost(Exception):
    """The host gave no answer (a dead link, a reboot): the run goes on."""
