# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's one error, in a file of its own: every file of the
inventory raises it, the sources' table and the Nix evaluation included,
so it may import none of them."""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError


class InventoryError(NixdeployError):
    """The inventory data cannot be mapped (bad option or bad data)."""
