# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one loader of the POSIX sh programs that run on targets, and the one
reader of what they print.

Every program that runs on a target is a real ``.sh`` file (so shellcheck
checks it and diffs read as shell) in the ``target/`` folder of the stage
whose behaviour it is (``activation/target/``, ``copy/target/``,
``keys/target/``, ``build/target/``); ``host/target/`` holds only ``lib.sh``,
the library every program starts with. A program is named by its file name,
unique over all stages (``programs``).
``render`` builds the text sent over the connection: the values as quoted
assignments (nothing from a task or the inventory is ever pasted into the
program text), then ``lib.sh``, then the named files in order. ``parse``
reads the one output format every program uses (``emit`` in lib.sh);
``Program.parse`` then reads each value into its type
(plugin_utils/host/_program_fields.py, with the table of the stage that
rendered it: a value that is not what it must be is dropped, never passed on).

The result channel: what a target prints is untrusted (a health check's
output, an activation's log, a command's message), so no such text can be
read as a result. Each rendered program gets its own marker, made here from
the controller's random source and given to the program as a plain (never
exported) shell variable: a result is the line ``@@<marker> key=value``,
the log starts at the line ``@@<marker>-log``. ``parse`` reads results only
before the first log line and nothing after it; every program prints all its
results before any text it carries (which it keeps in a file or a variable
until then), and runs the commands that print with their output sent away
from its stdout or after the log line. ``\n`` is the only line end (the
target's ``one_line`` folds it in every value; a ``\r``, ``\x1c``, ``\x85``
or ``\u2028`` stays data), so a value cannot start a line of its own.
"""

import os
import re
import secrets
import shlex

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import KNOWN_NIX_DIRS
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidValue
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _program_fields

# host/target/: lib.sh; the stages' own programs are in <stage>/target/
FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'target')
PLUGIN_UTILS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = 'lib.sh'
# the shell variable lib.sh's emit and log_section read the marker from
MARK_NAME = 'RESULT_MARK'
_MARK = re.compile(r'^[0-9a-f]{32}\Z')

_NAME = re.compile(r'^[A-Z_][A-Z0-9_]*\Z')
_CACHE = {}
_PATHS = {}

# root's state folders (other users': under XDG_STATE_HOME), see activate-lib.sh
ROOT_STATE_DIR = '/nix/var/nixdeploy'


def programs():
    """{file name: path} of every target program, over every stage's
    ``target/`` folder (a name twice is an error: programs are named by it)."""
    if not _PATHS:
        found = {}
        for stage in sorted(os.listdir(PLUGIN_UTILS)):
            folder = os.path.join(PLUGIN_UTILS, stage, 'target')
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if name.endswith('.sh'):
                    if name in found:
                        raise InvalidValue('target program %s is in two stages' % name)
                    found[name] = os.path.join(folder, name)
        _PATHS.update(found)
    return dict(_PATHS)


def source(name):
    """The text of the target program ``name`` (read once per process)."""
    if name not in _CACHE:
        with open(programs()[name]) as handle:
            _CACHE[name] = handle.read()
    return _CACHE[name]


def word(value):
    """One sh word for ``value``: None -> '', booleans -> 1/0."""
    if value is None:
        value = ''
    elif isinstance(value, bool):
        value = '1' if value else '0'
    return shlex.quote(str(value))


def assignments(values):
    """``NAME='value'`` lines, in a stable order."""
    lines = []
    for name in sorted(values):
        if not _NAME.match(name):
            raise InvalidValue('not a shell variable name: %r' % (name,))
        value = values[name]
        if isinstance(value, (list, tuple, dict)):
            raise InvalidValue('%s: pass text, a number or a boolean, not %s'
                               % (name, type(value).__name__))
        lines.append('%s=%s\n' % (name, word(value)))
    return ''.join(lines)


class Program(str):
    """A rendered target program: the text sent to the target, ``mark``, the
    marker of its results (made for this program only), and ``fields``,
    the keys it reports and their types (plugin_utils/host/_program_fields.py)."""

    def __new__(cls, text, mark, fields=None):
        program = str.__new__(cls, text)
        program.mark = mark
        program.fields = fields or {}
        return program

    def parse(self, output):
        """(values, log) of what this program printed: ``parse``, then each
        value read into its type (``_program_fields.read``: a ``Values`` whose
        ``dropped`` names what was not)."""
        raw, log = self.parse_raw(output)
        return _program_fields.read(raw, self.fields), log

    def parse_raw(self, output):
        """(values as printed, log): the framing alone (``parse``), for a
        test of what a program prints; the controller reads ``parse``."""
        return parse(output, self.mark)

    def output(self, text):
        """``text``, what this program printed, as an ``Output``."""
        return Output(text or '', self.mark)


class Output(str):
    """What a program printed, with the marker of that program (``mark``),
    for a reader given the text alone."""

    def __new__(cls, text, mark):
        output = str.__new__(cls, text)
        output.mark = mark
        return output


def new_mark():
    """A marker nobody can guess: 128 bits from the OS's random source."""
    return secrets.token_hex(16)


def render(names, values=None, fields=None):
    """The program (a ``Program``): quoted ``values``, its own marker,
    lib.sh, then the files ``names``. ``NIX_DIRS`` (the known nix locations)
    is always set. ``fields``: the table of what the programs of the
    caller's stage report ({file: {key: kind}}, ``_program_fields.fields_of``)."""
    all_values = {'NIX_DIRS': ' '.join(KNOWN_NIX_DIRS)}
    all_values.update(values or {})
    if MARK_NAME in all_values:
        raise InvalidValue('%s is the marker of the results: render makes it' % MARK_NAME)
    mark = new_mark()
    all_values[MARK_NAME] = mark
    if isinstance(names, str):
        names = [names]
    files = [LIBRARY] + list(names)
    return Program(assignments(all_values) + ''.join(source(n) for n in files), mark,
                   _program_fields.fields_of(files, fields))


def _line(text):
    # an ssh session on a pty (become with a tty) ends each line with \r\n
    return text[:-1] if text.endswith('\r') else text


def parse(output, mark=None):
    """(values, log) of a program rendered with ``mark`` (by default the
    mark an ``Output`` carries): its result lines ``@@<mark> key=value``
    before the line ``@@<mark>-log`` (a later line wins), and the text after
    that line. Lines end at ``\n`` only; nothing after the log line is a
    result, and no line without the marker is."""
    if mark is None:
        mark = getattr(output, 'mark', None)
    if not isinstance(mark, str) or not _MARK.match(mark):
        raise InvalidValue('parse needs the marker of the program that printed the output')
    result, log_line = '@@%s ' % mark, '@@%s-log' % mark
    values = {}
    lines = (output or '').split('\n')
    for index, raw in enumerate(lines):
        line = _line(raw)
        if line == log_line:
            log = [_line(text) for text in lines[index + 1:]]
            if log and log[-1] == '':
                log.pop()
            return values, '\n'.join(log)
        if line.startswith(result):
            key, _sep, value = line[len(result):].partition('=')
            values[key.strip()] = value
    return values, ''


def df_space(line):
    """(available KiB, mount point) from a POSIX ``df -Pk`` data line (GNU,
    busybox, macOS), (None, None) when unreadable. The file system's name may
    hold spaces: the value is the one before the capacity (``NN%``), the
    mount point what follows it."""
    fields = (line or '').split()
    for idx in range(len(fields) - 1, 0, -1):
        if fields[idx].endswith('%') and fields[idx][:-1].isdigit():
            value = fields[idx - 1]
            mount = ' '.join(fields[idx + 1:]) or None
            return (int(value) if value.isdigit() else None), mount
    return None, None
