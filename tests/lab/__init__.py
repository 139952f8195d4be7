"""The project's test fleet: real sshd and real, separate Nix stores per host.

A host given ``'nix': 'other'`` runs the other stack's Nix (Debian 12's 2.8 or
the current-stack tree's 2.34) for everything on it: see lab.py's ``other_nix``."""

from .lab import Lab, LabError, PERSONAS  # noqa: F401
