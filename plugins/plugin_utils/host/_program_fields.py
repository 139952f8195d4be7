# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What target programs report, as types: the one rule for target data.

A target is untrusted: whoever controls it (or, on home-manager and
nix-on-droid hosts, any process of the deploy user) chooses every byte its
programs print, and the files they read (a profile's generation links, a
run's status file). So no value a target program reports is used as text:
a table of fields names, for each program file, each key it emits and its
kind (a ``ValueKind``), and ``read`` parses every value into that kind
before the controller sees it. The kinds are here; each stage's table sits
beside the code that renders its programs and is given to
``_script.render`` (activation's in plugin_utils/activation/_activation_fields.py,
the copy probe's in copy/_copy.py, the keys' in keys/_keys_target.py, the
builder probe's in builds/_builders.py); ``FIELDS`` here holds lib.sh's.

- a store path is checked as one (``/nix/store/<hash>-<name>``, nothing
  else: not an installable, a flake, a path outside the store, a ``-`` option);
- a number is digits only, then an ``int``; a flag is ``0`` or ``1``, then a
  ``bool``; a word of a set (a state, a cause) is one of its words;
- a folder or file on the target is an absolute path with no control
  character and no ``..`` step; a boot id, a user or a system name
  matches its pattern;
- free text (a reason, what a command said) is kept only ``printable``
  (every control character escaped, plugin_utils/common/_printable.py) and
  shortened to ``TEXT_LIMIT`` characters.

A value that fails its type is dropped (the key is absent, as if the target
had said nothing) and said so in ``Values.dropped`` ("prev_path: not a store
path: 'github:x/y#z'"), which the caller shows as a warning naming the host.
A key the program does not report (an extra line in a status file) is
dropped the same way. An empty value is absent, and not a drop.
"""

import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidValue
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import (
    is_printable, printable)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path

# longer free text is cut (a reason carries a command's words, not its log)
TEXT_LIMIT = 4096
# how much of a dropped value a note shows
_SHOWN = 80


class ValueKind:
    """The kind of a value a target program reports: ``what`` it must be
    (for the note) and ``parse(text)`` -> the value, or ValueError."""

    def __init__(self, what, parse):
        self.what = what
        self.parse = parse

    def __repr__(self):
        return 'ValueKind(%s)' % self.what


def matching(pattern, what, convert=None):
    """Text that matches ``pattern``, as ``convert`` makes it (when given)."""
    compiled = re.compile(pattern)

    def parse(text):
        if not compiled.match(text):
            raise InvalidValue(what)
        return convert(text) if convert else text
    return ValueKind(what, parse)


def _text(text):
    return printable(text)[:TEXT_LIMIT]


def _flag(text):
    if text not in ('0', '1'):
        raise InvalidValue('0 or 1')
    return text == '1'


def _path(text):
    if not text.startswith('/') or not is_printable(text) or '/../' in text + '/' \
            or '/./' in text + '/':
        raise InvalidValue('an absolute path')
    return text


def _store_path(text):
    if not is_store_path(text):
        raise InvalidValue('a store path')
    return text


def _store_file(text):
    """A file in the store (``/nix/store/<hash>-<name>[/...]``)."""
    top = '/'.join(text.split('/')[:4])
    if not is_store_path(top) or (text != top and not _path_ok(text)):
        raise InvalidValue('a path in the store')
    return text


def _path_ok(text):
    try:
        _path(text)
    except ValueError:
        return False
    return True


def one_of(*words):
    """A word of ``words``."""
    choices = frozenset(words)

    def parse(text):
        if text not in choices:
            raise InvalidValue('one of %s' % ', '.join(sorted(choices)))
        return text
    return ValueKind('one of %s' % ', '.join(sorted(choices)), parse)


def list_of(kind, sep=None):
    """Items of ``kind`` separated by blanks (or ``sep``); one bad item drops
    the value."""
    def parse(text):
        return [kind.parse(item) for item in text.split(sep) if item]
    return ValueKind('a list of %s' % kind.what, parse)


TEXT = ValueKind('text', _text)
FLAG = ValueKind('0 or 1', _flag)
INT = matching(r'\A[0-9]{1,18}\Z', 'a number', int)
PATH = ValueKind('an absolute path', _path)
STORE_PATH = ValueKind('a store path', _store_path)
STORE_FILE = ValueKind('a path in the store', _store_file)
BOOT_ID = matching(r'\A[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z', 'a boot id')
# a POSIX user or group name (and Nix's @group / * in trusted-users)
NAME = matching(r'\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z', 'a user or group name')
# an entry of Nix's trusted-users: a user, @group or *
TRUSTED = matching(r'\A(\*|@?[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})\Z', 'a user, @group or *')
SYSTEM = matching(r'\A[A-Za-z0-9_]+(-[A-Za-z0-9_]+){1,3}\Z', 'a Nix system (cpu-os)')
FEATURE = matching(r'\A[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}\Z', 'a system feature')

# program file -> {key: ValueKind}: lib.sh's. Each stage's programs have
# their table beside the code that renders them (a module ``FIELDS``)
FIELDS = {
    'lib.sh': {'error': TEXT},
}


class Values(dict):
    """A program's values, each of its type; ``dropped``: the notes of the
    values that were not (key, what it must be, the value shown escaped)."""

    def __init__(self, *args, **kwargs):
        super(Values, self).__init__(*args, **kwargs)
        self.dropped = []


def fields_of(names, table=None):
    """The keys and kinds of a program made of the files ``names``: each
    file's in ``table`` (its stage's {file: {key: kind}}) or in ``FIELDS``."""
    fields = {}
    for name in names:
        fields.update(FIELDS.get(name) or (table or {}).get(name) or {})
    return fields


def _kind(fields, key):
    if key in fields:
        return fields[key]
    family = key.split('_')
    for cut in range(len(family) - 1, 0, -1):
        kind = fields.get('_'.join(family[:cut]) + '_*')
        if kind is not None:
            return kind
    return None


def read(raw, fields):
    """``raw`` ({key: text}, as the program printed them) as ``Values``:
    each key of ``fields`` parsed into its kind; anything else dropped."""
    values = Values()
    for key, text in raw.items():
        kind = _kind(fields, key)
        if kind is None:
            values.dropped.append(_note(key, 'not a value of this program', text))
            continue
        if text == '':
            continue
        try:
            values[key] = kind.parse(text)
        except ValueError:
            values.dropped.append(_note(key, 'not %s' % kind.what, text))
    return values


def _note(key, why, text):
    shown = printable(text)
    if len(shown) > _SHOWN:
        shown = shown[:_SHOWN] + '...'
    return u"%s: %s: '%s'" % (printable(key)[:_SHOWN], why, shown)


def dropped_warning(host, notes, what='the target'):
    """One warning naming ``host`` for the dropped values' ``notes`` (a list,
    or the ``Values`` that dropped them), or None when there are none."""
    notes = getattr(notes, 'dropped', notes)
    if not notes:
        return None
    return u'%s: %s reported values that are not what they must be; dropped: %s' % (
        printable(host), what, '; '.join(notes))
