# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each target program reports, as types: the one rule for target data.

A target is untrusted: whoever controls it (or, on home-manager and
nix-on-droid hosts, any process of the deploy user) chooses every byte its
programs print, and the files they read (a profile's generation links, a
run's status file). So no value a target program reports is used as text:
``FIELDS`` names, for each program file of ``target/``, each key it emits
and its type, and ``read`` parses every value into that type before the
controller sees it:

- a store path is checked as one (``/nix/store/<hash>-<name>``, nothing
  else: not an installable, a flake, a path outside the store, a ``-`` option);
- a number is digits only, then an ``int``; a flag is ``0`` or ``1``, then a
  ``bool``; a state, a cause or a way of detaching is one of its words;
- a folder or file on the target is an absolute path with no control
  character and no ``..`` step; a run, a boot id, a user or a system name
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


class Kind:
    """A type of target value: ``what`` it must be (for the note) and
    ``parse(text)`` -> the value, or ValueError."""

    def __init__(self, what, parse):
        self.what = what
        self.parse = parse

    def __repr__(self):
        return 'Kind(%s)' % self.what


def _matching(pattern, what, convert=None):
    compiled = re.compile(pattern)

    def parse(text):
        if not compiled.match(text):
            raise InvalidValue(what)
        return convert(text) if convert else text
    return Kind(what, parse)


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
    return Kind('one of %s' % ', '.join(sorted(choices)), parse)


def list_of(kind, sep=None):
    """Items of ``kind`` separated by blanks (or ``sep``); one bad item drops
    the value."""
    def parse(text):
        return [kind.parse(item) for item in text.split(sep) if item]
    return Kind('a list of %s' % kind.what, parse)


TEXT = Kind('text', _text)
FLAG = Kind('0 or 1', _flag)
INT = _matching(r'\A[0-9]{1,18}\Z', 'a number', int)
PATH = Kind('an absolute path', _path)
STORE_PATH = Kind('a store path', _store_path)
STORE_FILE = Kind('a path in the store', _store_file)
# a run of nix_activate: '<epoch>-<8 hex>' (_detached_run.DetachedRun)
RUN = _matching(r'\A[0-9]{1,20}-[0-9a-f]{1,32}\Z', 'a run id')
BOOT_ID = _matching(r'\A[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z', 'a boot id')
# a POSIX user or group name (and Nix's @group / * in trusted-users)
NAME = _matching(r'\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z', 'a user or group name')
# an entry of Nix's trusted-users: a user, @group or *
TRUSTED = _matching(r'\A(\*|@?[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})\Z', 'a user, @group or *')
SYSTEM = _matching(r'\A[A-Za-z0-9_]+(-[A-Za-z0-9_]+){1,3}\Z', 'a Nix system (cpu-os)')
FEATURE = _matching(r'\A[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}\Z', 'a system feature')
UNIT = _matching(r'\Anixdeploy-activate-[0-9]{1,20}-[0-9a-f]{1,32}\Z', 'a unit of a run')

# the states of a run (target/activate-runner.sh's status), its end causes
STATES = one_of('starting', 'running', 'waiting_lock', 'awaiting_confirmation',
                'rolling_back', 'unchanged', 'done', 'failed', 'rolled_back',
                'rollback_failed', 'refused')
CAUSES = one_of('switch_locked', 'refused', 'unconfirmed', 'activation_failed', 'checks')

# the keys shared by every program of a family
_SESSION = {'dir': PATH, 'profile': PATH}
_STATUS = {
    'state': STATES, 'reason': TEXT, 'run': RUN, 'mode': one_of('activate', 'rollback'),
    'profile': PATH, 'prev_gen': INT, 'prev_path': STORE_PATH, 'new_gen': INT,
    'new_path': STORE_PATH, 'activated': FLAG, 'rolled_back': FLAG, 'confirmed': FLAG,
    'rc': INT, 'cause': CAUSES, 'started': INT, 'updated': INT,
}

# program file -> {key: Kind}; a key ending in '_*' stands for its numbered
# or named family (stat_0, booted_kernel)
FIELDS = {
    'lib.sh': {'error': TEXT},
    'activate-launch.sh': dict(_SESSION, nix_env=PATH, unit=UNIT,
                               detach=one_of('systemd-run', 'setsid', 'nohup')),
    'activate-poll.sh': dict(_STATUS, alive=FLAG),
    'activate-confirm.sh': dict(_SESSION, pending=RUN, claimed=RUN, last=RUN),
    'activate-reject.sh': dict(_SESSION, rejected=FLAG),
    'activate-inspect.sh': dict(_SESSION, active=STORE_PATH, dry_rc=INT, gens=list_of(INT),
                                prev_gen=INT, prev_path=STORE_PATH, gen_path=STORE_PATH,
                                present=FLAG),
    'builder-probe.sh': {
        'no_nix': FLAG, 'nix_dir': PATH, 'daemon_on_path': FLAG, 'system': SYSTEM,
        'extra_platforms': list_of(SYSTEM), 'system_features': list_of(FEATURE),
        'store_df': TEXT, 'complete': FLAG},
    'copy-probe.sh': {
        'no_nix': FLAG, 'nix_dir': PATH, 'uid': INT, 'user': NAME, 'groups': list_of(NAME, ','),
        'trusted_users': list_of(TRUSTED), 'store_writable': one_of('yes', 'no'),
        'invalid': list_of(STORE_PATH), 'store_df': TEXT, 'gc_root': PATH,
        'gc_root_error': TEXT, 'ssh': PATH, 'ssh_version': TEXT,
        'ssh_dir': one_of('yes', 'no'), 'ssh_agent_dir': one_of('yes', 'no'), 'complete': FLAG},
    'health-check.sh': {'rc': INT, 'timed_out': FLAG},
    'reboot-boot-id.sh': {'boot_id': BOOT_ID},
    'reboot-probe.sh': {'boot_id': BOOT_ID, 'booted': STORE_PATH, 'current': STORE_PATH,
                        'booted_*': STORE_FILE, 'new_*': STORE_FILE},
    'reboot-request.sh': {'reboot_rc': INT},
    # stat_<i>: 'KIND LISTED', a file's with its salted digest (never a plain
    # hash: keys-lib.sh) or '-', then 'MODE OWNER GROUP UID GID' ('-' each unread)
    'keys-probe.sh': {'uid': INT, 'hash': TEXT, 'probed': FLAG, 'stale_*': TEXT,
                      'stat_*': _matching(
                          r'\A(?:(?:absent|link|other|changed) [01]|file [01] (?:[0-9a-f]{64}|-)'
                          r'(?: [^\s\x00-\x1f\x7f-\x9f]+){5})\Z', "a key's facts")},
    'keys-put.sh': {'done': FLAG, 'dir_created': PATH, 'manifest_failed': TEXT,
                    'owner_unset': TEXT},
    'keys-finish.sh': {'finished': FLAG, 'removed_*': PATH, 'kept_*': TEXT,
                       'remove_failed_*': TEXT},
}


class Values(dict):
    """A program's values, each of its type; ``dropped``: the notes of the
    values that were not (key, what it must be, the value shown escaped)."""

    def __init__(self, *args, **kwargs):
        super(Values, self).__init__(*args, **kwargs)
        self.dropped = []


def fields_of(names):
    """The keys and kinds of a program made of the files ``names``."""
    fields = {}
    for name in names:
        fields.update(FIELDS.get(name, {}))
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
