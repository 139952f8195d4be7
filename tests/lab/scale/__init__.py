"""The scale lab: up to 1,000 light NixOS hosts (lab.py), each with its own
network namespace, address, mount namespace, /nix and sshd, for the scale
benchmark (benchmarks/scale.py). ``python -m tests.lab.scale up|down|status``."""

from .lab import ScaleLab  # noqa: F401
