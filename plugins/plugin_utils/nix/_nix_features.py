# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the command line of one nix binary understands (``NixFeatures``),
by the upstream Nix version it behaves like: each form that differs between
the Nix versions in use is one attribute here. ``_nix.nix_features`` asks a
binary its version once per process and makes one.
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output


class NixFeatures:
    """What the command line of one nix binary understands.

    ``flavour`` and ``version`` as ``_nix_output.nix_version`` reads them;
    the decisions use the upstream Nix version the binary behaves like (Lix
    branched off 2.18)."""

    def __init__(self, flavour, version):
        self.flavour = flavour
        self.version = tuple(version)
        like = _nix_output.like_nix(flavour, version)
        # 2.15 renamed show-derivation (kept as an alias that warns, then
        # deprecated); 2.8 knows only the old name
        self.derivation_show = like >= (2, 15)
        # `X.drv^*` (all outputs) exists since 2.13; from 2.15 a bare `X.drv`
        # names the file itself, while up to 2.14 it names its outputs
        self.all_outputs = like >= (2, 13)
        # 2.33+ warn that `path-info --json` without --json-format is
        # deprecated (to become an error); the flag does not exist before.
        # Format 1 is the map every 2.19+ prints.
        self.json_format = like >= (2, 33)
        # `<flake>#.` is the outputs set itself from 2.19 and in every Lix;
        # older Nix has only the empty fragment (see NixCommand.outputs)
        self.outputs_fragment = flavour == _nix_output.LIX or like >= (2, 19)
        # `nix config show` (2.20 renamed show-config, kept as an alias that warns)
        self.config_show = like >= (2, 20)
        # a path: flake takes `?dir=` (2.8 refuses it as a parameter of the
        # path fetcher; 2.25 parses a flake reference's own parameters apart)
        self.path_dir = like >= (2, 25)
        # `--reference-lock-file FILE`: the top flake's lock graph read from
        # FILE instead of its flake.lock (2.8 has no such flag; checked in
        # 2.34's `nix eval --help`, taken from 2.25 on, the oldest Nix this
        # collection tries it with; Lix is like 2.18: not taken)
        self.reference_lock_file = flavour != _nix_output.LIX and like >= (2, 25)

    def __repr__(self):
        return 'NixFeatures(%r, %r)' % (self.flavour, self.version)
