"""Deliberate faults in the collection's code and the tests that catch them
(``python -m tests.mutations.run``; docs/lab.md, "Deliberate faults")."""
