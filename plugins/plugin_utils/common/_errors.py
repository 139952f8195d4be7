# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one error family: every error the controller's code
raises derives from ``NixdeployError``, so the action base
(plugin_utils/task/_action.py) catches it, with ``OSError``, in one place and
turns it into this host's failed result.

An error may carry what the failed result needs beyond its message: the
``host`` it is about, the deploy ``phase`` it ended, whether the connection
was ``connection_lost``, and the partial ``result`` (keys the failed result
keeps: what was done before the failure). Errors that are also invalid
values derive from ``ValueError`` too, so code that checks a value with
``except ValueError`` keeps working.

Standard library only: ``plugin_utils/report/_report.py`` also runs as a
plain script and imports this file as a sibling folder's.
"""


class NixdeployError(Exception):
    """This host failed; the message says why (without the host's name:
    the action base adds it)."""

    def __init__(self, *args, host=None, phase=None, connection_lost=False, result=None):
        super(NixdeployError, self).__init__(*args)
        self.host = host
        self.phase = phase
        self.connection_lost = connection_lost
        self.result = result

    def details(self):
        """The keys this error adds to the host's failed result."""
        out = dict(self.result or {})
        if self.phase:
            out['phase'] = self.phase
        if self.connection_lost:
            out['connection_lost'] = True
        return out


class InvalidValue(NixdeployError, ValueError):
    """A value that is not what it must be; the text says what it must be."""


class InvalidType(NixdeployError, TypeError):
    """A value of a type that cannot be used; the text says which is needed."""


def internal_error(where, exc):
    """The one line a person reads for an unexpected exception (a bug of
    the collection) in ``where``: never its traceback, which goes to the
    batch's log or, at -vvv, a result's ``traceback``."""
    return u'internal error in %s: %s: %s; rerun with -vvv for the traceback' % (
        where, type(exc).__name__, exc)
