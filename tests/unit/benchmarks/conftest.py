"""The benchmarks' own tests. The benchmarks are tools of the project that
run on this machine's stack (`make bench`, docs/benchmarks.md), not part of
the collection a user runs: the current stack skips their tests (marker
here_only, pytest.ini)."""

import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if str(item.path).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.here_only)
