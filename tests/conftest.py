"""Fixtures shared by every test: labs that always come down."""

import os

import pytest

from tests import stacks
from tests.lab import Lab
from tests.lab.lab import KEX_ENV

# The suite's labs offer the cheap key exchange (tests/lab/lab.py, KEX_ENV):
# thousands of logins, none of whose checks depends on the exchange.
os.environ.setdefault(KEX_ENV, 'curve25519-sha256')


# Watches the tests of the modules only this stack runs (tests/stacks.py).
_guard = stacks.ProgramGuard()


# First: `-m 'not here_only'` deselects by the marks this adds.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # The modules whose outcome no stack changes run on this one only.
    stacks.mark(items)
    # Lab tests need root (namespaces, mounts); say so instead of failing
    # deep inside `ip netns add`.
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason='lab tests need root')
    for item in items:
        if 'lab' in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # from its fixtures' setup to their teardown
    if stacks.module_path(item) in stacks.ONE_STACK:
        _guard.watch(item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield
    if _guard.watched == item.nodeid:
        _guard.check()


@pytest.fixture(scope='module')
def make_lab():
    """Factory: make_lab(name, hosts, personas) -> a running Lab, downed after
    the module's tests."""
    labs = []

    def factory(name, hosts=4, personas=None):
        lab = Lab(name).up(hosts, personas=personas)
        labs.append(lab)
        return lab

    yield factory
    for lab in labs:
        lab.down()
