# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small helpers for plain data, written once for module_utils and
plugin_utils: a number read from text or JSON, a file written whole, a sort
key for host names.

Standard library only: ``plugin_utils/report/_report.py`` also runs as a plain
script and imports this file as a sibling folder's.
"""

import json
import os
import re
import tempfile


def natural_key(name):
    """A sort key that reads digit runs as numbers: h2 before h10 (a fleet of
    1,000 otherwise reads h1, h10, h100, h1000, h101)."""
    return [(0, int(part), '') if part.isdigit() else (1, 0, part)
            for part in re.split(r'(\d+)', name) if part]


def to_int(value):
    """``value`` as an int (a number, or its text), else None; a bool is not
    a number here."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def write_atomic(path, text, mode=None):
    """Write ``text`` to ``path`` through a temp file in the same folder,
    renamed over it: a reader sees the old file or the new one, never half
    of one. ``mode``: the file's permissions (default: the temp file's 0600).
    Nothing is left behind when the write fails."""
    directory = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, data, mode=None):
    """``data`` as JSON in ``path``, written whole (``write_atomic``)."""
    write_atomic(path, json.dumps(data), mode)
