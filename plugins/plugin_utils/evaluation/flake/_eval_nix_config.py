# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether the controller's own Nix configuration lets an evaluation read
more than its flake: then nothing of the run is cached.

One ``nix config show --json`` (``impure_config``) tells whether nix.conf,
NIX_CONFIG or nix_options allow native code, plugins, an extra builtins
file or a flake's nixConfig (``IMPURE_CONFIG``); the flake settings a user
once saved as trusted count too, since Nix applies them whatever
``accept-flake-config`` says (``saved_flake_settings``). The run asks once
per Nix setup (``_source.RunSources.config_reason``).
"""

import json
import os

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError


# settings of the controller's effective Nix configuration that make an
# evaluation read more than the flake (native code, plugins' primops)
IMPURE_CONFIG = ('allow-unsafe-native-code-during-evaluation', 'plugin-files',
                 'extra-builtins-file',
                 # only where nix_options opt in (every controller Nix process
                 # gets `accept-flake-config = false` after nix.conf and the
                 # user's NIX_CONFIG): the flake's nixConfig, which `nix config
                 # show` does not see, may then set pure-eval and IFD
                 'accept-flake-config')


# impure_config's reason where nix_options accept a flake's nixConfig (the
# stage's ACCEPTED_NOTE says it, cache or no cache)
ACCEPTED_CONFIG = (u'accept-flake-config is on (nix_options): the flake\'s nixConfig may '
                   u'set any Nix setting, import-from-derivation and pure-eval = false '
                   u'among them')


def impure_config(runner):
    """Why the controller's effective Nix configuration (nix.conf, the
    environment's NIX_CONFIG, nix_options) lets an evaluation read more than
    its flake (native code, plugins), or None: one ``nix config show
    --json``."""
    sub = 'config show' if runner.features().config_show else 'show-config'
    try:
        data = runner.json(sub, ['--json'], 'reading the Nix configuration')
    except NixError as exc:
        return u'the Nix configuration could not be read: %s' % (exc.nix_message() or exc)
    if not isinstance(data, dict):
        return 'the Nix configuration could not be read'
    for name in IMPURE_CONFIG:
        setting = data.get(name)
        value = setting.get('value') if isinstance(setting, dict) else setting
        if value not in (None, False, '', [], {}):
            if name == 'accept-flake-config':
                return ACCEPTED_CONFIG
            return u'the Nix configuration sets %s' % name
    saved = saved_flake_settings()
    if saved:
        return (u'Nix applies the flake settings saved as trusted in %s (%s) whatever '
                u'accept-flake-config says' % (saved[0], ', '.join(saved[1])))
    # pure-eval is not read here: Nix 2.8 reports false by default, and a
    # flake evaluation is pure unless --impure (which is never cached)
    return None


def saved_flake_settings(environ=None):
    """(file, [setting names]) of the flake settings a user once answered
    "y" to at Nix's question (Nix keeps them in trusted-settings.json of its
    data folder and applies them to a flake's nixConfig even with
    ``accept-flake-config = false``: checked on Nix 2.8 and 2.34), or None.
    Every folder Nix may read it from (``NIX_DATA_HOME`` on newer Nix,
    ``XDG_DATA_HOME``, ``~/.local/share``)."""
    environ = os.environ if environ is None else environ
    folders = []
    if environ.get('NIX_DATA_HOME'):
        folders.append(environ['NIX_DATA_HOME'])
    if environ.get('XDG_DATA_HOME'):
        folders.append(os.path.join(environ['XDG_DATA_HOME'], 'nix'))
    folders.append(os.path.join(os.path.expanduser('~'), '.local', 'share', 'nix'))
    for folder in folders:
        path = os.path.join(folder, 'trusted-settings.json')
        data = read_json_file(path)
        if not data:
            continue
        names = sorted(name for name, values in data.items()
                       if isinstance(values, dict) and True in values.values())
        if names:
            return path, [u'%s' % n[:100] for n in names[:10]]
    return None


def read_json_file(path):
    """The JSON object in the file ``path``, or None (no file, not JSON, not an object)."""
    try:
        with open(path) as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None
