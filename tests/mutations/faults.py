"""The deliberate faults of faults.yml: what each changes and how it is put in.

A fault names a file, a text that must occur in it exactly once, and what
replaces it. A text found twice or not at all is refused (``FaultError``), so
that a fault never silently stops applying when the code around it changes,
and never lands in a place nobody meant.
"""

import os

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
FAULTS_FILE = os.path.join(HERE, 'faults.yml')
KEYS = ('id', 'what', 'file', 'find', 'replace', 'tests')
OPTIONAL = ('k', 'timeout')


class FaultError(Exception):
    """A fault that cannot be applied as written."""


class Fault(object):
    """One deliberate fault: ``file``'s text ``find`` becomes ``replace``;
    ``tests`` (pytest node ids or paths) and ``k`` (a -k expression, or
    None) select the tests that must fail while it is in."""

    def __init__(self, id, what, file, find, replace, tests, k=None, timeout=None):
        # pylint: disable=redefined-builtin,too-many-arguments
        self.id = id
        self.what = what
        self.file = file
        self.find = find
        self.replace = replace
        self.tests = list(tests)
        self.k = k
        self.timeout = timeout

    def pytest_args(self):
        """The selection, as pytest's command line takes it."""
        return self.tests + (['-k', self.k] if self.k else [])

    def text(self, root):
        """The file's text in the checkout at ``root``, checked: FaultError
        unless ``find`` occurs in it exactly once. Nothing is written."""
        try:
            with open(os.path.join(root, self.file), encoding='utf-8') as handle:
                text = handle.read()
        except OSError as err:
            raise FaultError('%s: cannot read %s: %s' % (self.id, self.file, err)) from err
        count = text.count(self.find)
        if count != 1:
            where = 'not found' if count == 0 else 'found %d times' % count
            raise FaultError('%s: its text is %s in %s (it must occur exactly once): %r'
                             % (self.id, where, self.file, self.find))
        return text

    def apply(self, root):
        """Put the fault into the checkout at ``root``; returns the file's
        text before it, for ``revert``."""
        text = self.text(root)
        # written in place: the file keeps its mode (a target program its x bit)
        with open(os.path.join(root, self.file), 'w', encoding='utf-8') as handle:
            handle.write(text.replace(self.find, self.replace))
        return text

    def revert(self, root, original):
        with open(os.path.join(root, self.file), 'w', encoding='utf-8') as handle:
            handle.write(original)


def _fault(entry, number):
    if not isinstance(entry, dict):
        raise FaultError('fault %d is not a mapping' % number)
    name = entry.get('id', 'fault %d' % number)
    missing = [key for key in KEYS if key not in entry]
    unknown = sorted(set(entry) - set(KEYS) - set(OPTIONAL))
    if missing or unknown:
        raise FaultError('%s: missing %s, unknown %s' % (name, missing or 'nothing',
                                                         unknown or 'nothing'))
    if entry['find'] == entry['replace']:
        raise FaultError('%s: its replacement is the text itself' % name)
    if not entry['tests'] or isinstance(entry['tests'], str):
        raise FaultError('%s: tests must be a list of pytest node ids or paths' % name)
    return Fault(**entry)


def load(path=FAULTS_FILE):
    """The faults of ``path``, in its order; FaultError if one is malformed
    or two share an id."""
    with open(path, encoding='utf-8') as handle:
        entries = yaml.safe_load(handle) or []
    faults = [_fault(entry, number) for number, entry in enumerate(entries, 1)]
    seen = set()
    for fault in faults:
        if fault.id in seen:
            raise FaultError('%s: two faults share this id' % fault.id)
        seen.add(fault.id)
    return faults
