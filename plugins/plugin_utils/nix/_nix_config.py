# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A task's ``nix_options`` as Nix reads them: the lines of ``NIX_CONFIG``.

``NixOptions`` (_nix.py) passes them in every Nix process's environment,
never as ``--option NAME VALUE`` in argv (a value may be a secret, and argv
is visible to every user of the controller). A name or value Nix would read
as more than one setting, a directive or a comment is refused here
(``ConfigError``, which ``NixOptions`` raises as a ``NixError``).

Before them, every Nix process of the controller gets the collection's own
lines (``FIXED_LINES``): ``accept-flake-config = false``. With it on (a CI's
nix.conf often sets it to take a flake's substituters), Nix applies a
flake's ``nixConfig`` after every configuration file and after NIX_CONFIG,
so the flake would have the last word over ``allow-import-from-derivation``,
``pure-eval``, ``sandbox``, ``post-build-hook``, ``builders``... for every
evaluation and build of the run. Nix then ignores those settings with a
warning naming each (``_nix_stderr.refused_flake_settings``). The
operator's own ``nix_options`` come after the fixed lines, and ``nix_args``
(argv) beat NIX_CONFIG: ``accept-flake-config: true`` there is the
operator's explicit choice (never cached: ``cache/_cache.uncacheable``).
"""

import os
import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError

# A setting's name as Nix spells them (`access-tokens`, `extra-substituters`);
# \Z, not $: `$` also matches before a final line break, which would end the
# NIX_CONFIG line inside the name
_SETTING_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]*\Z')
# what Nix's configuration parser reads as something else than the value: a
# line break starts another setting, `#` a comment
_NOT_IN_VALUE = (('\n', 'a line break'), ('\r', 'a line break'), ('\0', 'a NUL'),
                 ('#', "'#' (Nix reads the rest of the line as a comment)"))


# the setting that lets a flake's nixConfig set any other setting
ACCEPT_FLAKE_CONFIG = 'accept-flake-config'
# what every controller Nix process gets after the user's configuration and
# before nix_options (docs/security.md 4d). The features first, as argv has
# them (_nix.EXPERIMENTAL): Nix 2.34 drops a NIX_CONFIG setting of a feature
# not enabled yet when it reads it (accept-flake-config is one of flakes'),
# so without it the operator's nix_options could not opt in
FIXED_LINES = ('extra-experimental-features = nix-command flakes',
               '%s = false' % ACCEPT_FLAKE_CONFIG)


class ConfigError(NixdeployError, ValueError):
    """A ``nix_options`` name or value Nix would misread; the text says why."""


def option_value(value):
    """A setting's value as nix.conf spells it (``true``, a list's words)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return ' '.join(str(v) for v in value)
    return str(value)


def config_lines(options):
    """``options`` as nix.conf lines; ConfigError for a name or value that Nix
    would read as another setting, a directive or a comment (never shown:
    the value may be a secret)."""
    lines = []
    for name, value in sorted(options.items(), key=lambda item: str(item[0])):
        name = str(name)
        if not _SETTING_NAME.match(name) or name == 'include':
            raise ConfigError('nix_options: %r is not a Nix setting name (letters, digits, '
                              "'-', '_' and '.')" % name[:80])
        text = '' if value is None else option_value(value)
        for char, what in _NOT_IN_VALUE:
            if char in text:
                raise ConfigError('nix_options: the value of %s holds %s; Nix reads its '
                                  'settings from NIX_CONFIG, where that would change other '
                                  'settings than %s' % (name, what, name))
        lines.append(('%s = %s' % (name, text)).rstrip())
    return lines


def environment(lines, environ=None):
    """``{'NIX_CONFIG': ...}`` of ``lines`` on top of ``environ`` (the
    controller's): the user's own NIX_CONFIG first, then ``FIXED_LINES``,
    then ``lines``, so that ours win (Nix applies NIX_CONFIG after its config
    files, a later line over an earlier one) and the operator's nix_options
    may still name a fixed setting."""
    environ = os.environ if environ is None else environ
    users = (environ.get('NIX_CONFIG') or '').rstrip('\n')
    return {'NIX_CONFIG': '\n'.join(([users] if users.strip() else []) + list(FIXED_LINES)
                                    + list(lines)) + '\n'}


def accepts_flake_config(options, extra_args=()):
    """Whether the operator opted in to a flake's nixConfig: ``nix_options``
    ``accept-flake-config`` true, or ``--accept-flake-config`` / ``--option
    accept-flake-config VALUE`` in ``nix_args`` (argv beats NIX_CONFIG). The
    last word in argv wins, as in Nix."""
    value = (options or {}).get(ACCEPT_FLAKE_CONFIG)
    found = value is not None and option_value(value).strip().lower() in _TRUE
    args = [u'%s' % a for a in extra_args or ()]
    for idx, arg in enumerate(args):
        if arg == '--' + ACCEPT_FLAKE_CONFIG:
            found = True
        elif arg == '--no-' + ACCEPT_FLAKE_CONFIG:
            found = False
        elif arg == '--option' and args[idx + 1:idx + 2] == [ACCEPT_FLAKE_CONFIG] \
                and idx + 2 < len(args):
            found = args[idx + 2].strip().lower() in _TRUE
    return found


_TRUE = ('true', '1', 'yes', 'on')


def refused_note(names, flake=None):
    """What the run says once of the settings a flake's ``nixConfig`` set
    that Nix did not apply (``_nix_stderr.refused_flake_settings``)."""
    return (u"%snixConfig sets %s: not applied (%s = false; nix_options %s: true applies "
            u'them)' % (u"the flake %s's " % flake if flake else u"the flake's ",
                        ', '.join(names), ACCEPT_FLAKE_CONFIG, ACCEPT_FLAKE_CONFIG))


# what the run says once where the operator opted in (accepts_flake_config)
ACCEPTED_NOTE = (u'flake configuration accepted (accept-flake-config is on in nix_options or '
                 u"nix_args): the flake's nixConfig applies, import-from-derivation allowed "
                 u'if it says so, and nothing evaluated so is ever cached')
