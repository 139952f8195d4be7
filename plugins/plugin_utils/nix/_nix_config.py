# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A task's ``nix_options`` as Nix reads them: the lines of ``NIX_CONFIG``.

``NixOptions`` (_nix.py) passes them in every Nix process's environment,
never as ``--option NAME VALUE`` in argv (a value may be a secret, and argv
is visible to every user of the controller). A name or value Nix would read
as more than one setting, a directive or a comment is refused here
(``ConfigError``, which ``NixOptions`` raises as a ``NixError``).
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
    controller's): the user's own NIX_CONFIG first and ``lines`` after it,
    so that ours win (Nix applies NIX_CONFIG after its config files, a later
    line over an earlier one). Empty without lines."""
    if not lines:
        return {}
    environ = os.environ if environ is None else environ
    users = (environ.get('NIX_CONFIG') or '').rstrip('\n')
    return {'NIX_CONFIG': '\n'.join(([users] if users.strip() else []) + list(lines)) + '\n'}
