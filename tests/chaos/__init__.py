"""Random faults at random moments, round after round (docs/faults.md,
"Chaos campaign"): ``python -m tests.chaos --rounds N --seed S``."""
