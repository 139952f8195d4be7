# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cause of a failure's message, in one line, and that line wrapped.

A phase's message is what failed (``evaluating <flake>#<attr> failed:``,
``building <drv> failed:``) and then Nix's own words, which end with the
cause (``error: attribute 'lab' missing``, the builder's last log line)
among lines that only point at it: the location and the code excerpt, the
``… while evaluating`` trace, ``(use '--show-trace' ...)``, ``For full
logs, run 'nix log ...'``. A summary line that keeps the first 200
characters keeps what failed and drops exactly why. ``cause`` keeps both:
the first meaningful line and the last one, joined, never cut; ``wrap``
breaks a long line on spaces into short ones (a word longer than a line,
a store path, stays whole on its own line).

Text only: nothing here decides anything from what Nix or a target said.
"""

import re
import textwrap

# a place a line names: at /nix/store/...-source/lib.nix:205:38: (noise)
_AT = re.compile(r'^at \S.*:\d+:\d+:?$')
# a place Nix names for the line before it: a .nix file or «string», «stdin»
# (a program's stack frame, "at /srv/app/index.js:10:5", is not one)
_NIX_AT = re.compile(r'^at ((?:\S.*\.nix|«[^»]+»):\d+:\d+):?$')
# lines that say where or how to learn more, never why
_NOISE = (
    re.compile(r'^(…|\.\.\.)'),                        # … while evaluating, … from call site
    re.compile(r"^\(use '--show-trace'"),
    # the same, as the failed phase says it (nix/_nix_hints.py trace_hint)
    re.compile(r"^\((stack trace truncated; )?run again with .*show_trace.* for Nix's full "
               r"trace\)$"),
    _AT,
    re.compile(r'^\d*\s*\|'),                          # 205| code, the caret line
    re.compile(r'^last \d+ log lines:$', re.IGNORECASE),
    # Nix up to 2.18: For full logs, run 'nix log ...'; 2.19+: "For full logs,
    # run:" and the command on the next line
    re.compile(r'^For full logs, run\b'),
    re.compile(r'^nix(-store)? (log|-l) /nix/store/\S+$'),
    re.compile(r"^warning: Git tree '.*' is dirty$"),
    re.compile(r'^@+$'),                               # ssh's banner of a changed host key
)
# a build log's lines come quoted
_LOG_QUOTE = re.compile(r'^>\s?')


def _meaningful(msg, prefixes):
    """[line, location] of each meaningful line: its location is the place
    Nix names on the line right after it (``at file:line:column:``), else None."""
    out, before = [], None
    for line in (u'%s' % (msg if msg is not None else u'')).split(u'\n'):
        line = line.strip()
        for prefix in prefixes:
            if prefix and line.startswith(prefix):
                line = line[len(prefix):].strip()
                break
        if not line:
            continue
        at = _NIX_AT.match(line)
        if at and before is not None and before[1] is None:
            before[1] = at.group(1)
        before = None
        if line.startswith(u'@') or not any(c.isalpha() for c in line):
            continue
        if any(rule.search(line) for rule in _NOISE):
            continue
        line = _LOG_QUOTE.sub(u'', line)
        if line:
            before = [line, None]
            out.append(before)
    return out


def parts(msg, prefixes=()):
    """(what failed, why) of a message: its first meaningful line and, when
    Nix's words go on, the last one (else None). Each of ``prefixes`` (the
    host's ``host: `` in front of every action's message) is dropped from
    the front of a line.

    When Nix names a place for the error (the last line it names one for,
    which is the error it stopped at, not a trace frame), the place follows
    that line: ``error: attribute 'lab' missing (at /nix/store/...-source/
    hosts/web2.nix:3:5)``. The code excerpt it stood above is dropped, so
    without it the summary and the report would not say which file to open.
    An error line between the two kept is not shown: its place then follows
    the first line, before the last (which may be a hint, a command to
    copy)."""
    lines = _meaningful(msg, prefixes)
    if not lines:
        return u'', None
    first, last = lines[0][0], lines[-1][0]
    if len(lines) == 1 or last in first:
        last = None
    located = [index for index, (_line, place) in enumerate(lines) if place]
    if located:
        where = u' (at %s)' % lines[located[-1]][1]
        if last is not None and located[-1] == len(lines) - 1:
            last += where
        else:
            first += where
    return first, last


def join(first, last):
    """The one line of ``parts``."""
    if not last:
        return first
    return first + (u' ' if first.endswith((u':', u';')) else u': ') + last


def cause(msg, prefixes=()):
    """The one line that says what failed and why (``parts`` joined). Never cut."""
    return join(*parts(msg, prefixes))


def wrap(text, width=100, indent=u''):
    """``text`` broken on spaces into lines of at most ``width`` characters
    (the first as it starts, the others after ``indent``); a word longer
    than a line is never cut, it takes a line of its own."""
    text = u'%s' % (text if text is not None else u'')
    if len(text) <= width:
        return [text]
    lines = textwrap.wrap(text, width=width, subsequent_indent=indent, break_long_words=False,
                          break_on_hyphens=False, drop_whitespace=True)
    return lines or [text]
