# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one ``printable`` rule for text that reaches a person.

Host names (from the flake) and what a target says (a check's output, a
reason, a log line) reach an operator's terminal through the summary, the
progress lines, messages and warnings. A terminal obeys what it is sent: ESC
sequences move the cursor, erase lines, recolour text or write the
clipboard (OSC 52); a newline starts a line that looks like the collection's
own; bidi overrides show text in another order than it is. So such text is
shown escaped: every C0 and C1 control, DEL, the bidi controls and the
Unicode line and paragraph separators become ``\\xNN`` / ``\\uNNNN``
(``\\n``, ``\\r``, ``\\t`` for the usual three). Nothing else changes, so
ordinary text, accents and other scripts read as they are.
"""

import re

# C0, DEL, C1; the bidi embeddings, overrides, isolates and marks (and the
# Arabic letter mark); zero width joiners are harmless, but the line and
# paragraph separators end a line for some readers
_UNSAFE = re.compile(u'[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029'
                     u'\u202a-\u202e\u2066-\u2069]')
_NAMED = {u'\n': u'\\n', u'\r': u'\\r', u'\t': u'\\t'}


def _escape(match):
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return u'\\x%02x' % code if code < 0x100 else u'\\u%04x' % code


def printable(text):
    """``text`` with every character a terminal would act on escaped (None
    stays None; anything else is made text first)."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = u'%s' % (text,)
    return _UNSAFE.sub(_escape, text)


def is_printable(text):
    """Whether ``text`` is shown as it is (nothing to escape)."""
    return not _UNSAFE.search(u'%s' % (text,))


def printable_lines(lines):
    """Each line of a list escaped (a log tail keeps its lines)."""
    return [printable(line) for line in lines or []]
