"""The project's test fleet: real sshd and real, separate Nix stores per host."""

from .lab import Lab, LabError, PERSONAS  # noqa: F401
