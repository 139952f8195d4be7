# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options every plugin that runs nix on the controller shares (see _nix.NixOptions)."""


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  nix_bin:
    description:
      - The C(nix) executable on the controller, a name on E(PATH) or an absolute path.
    type: str
    default: nix
  nix_args:
    description:
      - Extra arguments passed to every C(nix) call verbatim, each list item one argument.
      - They never pass through a shell.
    type: list
    elements: str
    default: []
  nix_options:
    description:
      - Nix settings for every Nix process on the controller, for example C(substituters) or
        C(max-jobs), passed as C(NIX_CONFIG) lines in its environment (never on its command
        line, which C(ps) shows); a value with a line break or C(#) is refused.
      - Booleans become C(true)/C(false); lists are joined with spaces.
      - Every controller Nix process also gets C(accept-flake-config = false) after the user's own
        configuration (C(nix.conf), C(NIX_CONFIG)), so a flake's own C(nixConfig) changes no
        setting; Nix warns, naming each setting it ignored. C(accept-flake-config) set to V(true) here
        (or C(--accept-flake-config) in O(nix_args)) applies the flake's settings,
        import-from-derivation and C(pure-eval = false) among them, so the flake is then trusted
        with the job's secrets at evaluation, and nothing of it is cached.
    type: dict
    default: {}
  impure:
    description:
      - Pass C(--impure) so evaluation may read the environment and unlocked paths.
    type: bool
    default: false
  show_trace:
    description:
      - Pass C(--show-trace) so evaluation errors carry the full Nix trace.
    type: bool
    default: false
  override_inputs:
    description:
      - Flake inputs to override, input name to flake reference (C(--override-input NAME REF)).
    type: dict
    default: {}
'''
