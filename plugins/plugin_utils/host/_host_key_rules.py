# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether ssh checks a host's key: judged from ssh's arguments and from
what ``ssh -G`` says it would use (controller only).

ssh keeps the FIRST value it is given of an option (command line before its
config files), so the arguments are read in order as ssh reads them, with
its own option letters (``-Co X`` is ``-C -o X``). Host keys are checked
when StrictHostKeyChecking is ``yes``, ``ask`` or ``accept-new`` (which
still refuses a CHANGED key) and some known_hosts file can hold the key;
``no``/``off``/``false`` checks nothing, and neither do user known_hosts
files that are all ``/dev/null`` (any spelling: ``/dev//null``,
``/dev/./null``, a link to it: resolved with realpath) or ``none`` when no
global one exists and no KnownHostsCommand answers (ssh records no key, and
finds none). An ssh config file (``-F``, ~/.ssh/config,
/etc/ssh/ssh_config) can say anything: ``ssh -G`` reads them as ssh would
and is asked (``config_problems``).
"""

import hashlib
import json
import os
import re
import shlex

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._folders import private_folder
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._peer_ssh import run_no_tty

# OpenSSH's option letters that take an argument (ssh.c's getopt string)
_WITH_ARGUMENT = frozenset('bceilmopBDEFIJLOPQRSwW')
UNCHECKED = ('no', 'off', 'false')
_SETTING = re.compile(r'\s*([^\s=]+)\s*(?:=\s*|\s+|$)(.*)$', re.S)

# ssh -G answers by argv, for this process (one answer per host and args)
_CONFIGS = {}
# ... and for the run: each task of a host is a process of its own, and the
# login probe, the copy and the activation ask ssh the same question (a
# file each, in Ansible's local temp folder of the run: private to the
# user, removed when ansible-playbook ends)
RUN_FOLDER = _run_files.SSH_CONFIG_FOLDER


def parse_args(tokens):
    """(settings, config files) of ssh argv options ``tokens`` (no
    destination): settings maps each -o option's lower-case name to the
    values of its FIRST occurrence (the one ssh keeps); config files are
    the ``-F`` arguments."""
    settings, files = {}, []
    tokens = [u'%s' % t for t in tokens]
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == '--' or not token.startswith('-') or token == '-':
            continue
        for pos in range(1, len(token)):
            letter = token[pos]
            if letter not in _WITH_ARGUMENT:
                continue
            value = token[pos + 1:]
            if not value and index < len(tokens):
                value, index = tokens[index], index + 1
            if letter == 'o':
                name, values = _setting(value)
                if name and name not in settings:
                    settings[name] = values
            elif letter == 'F':
                files.append(value)
            break
    return settings, files


def _setting(text):
    """'Name=value', 'Name value', 'Name = "v 1" v2' -> ('name', [values])."""
    match = _SETTING.match(text or '')
    if not match:
        return None, []
    try:
        values = shlex.split(match.group(2))
    except ValueError:
        values = match.group(2).split()
    return match.group(1).lower(), values


def is_null(path):
    """Whether a known_hosts file name holds no key: ``none`` or /dev/null
    by any spelling."""
    text = u'%s' % path
    if text.lower() == 'none':
        return True
    return os.path.realpath(os.path.expanduser(text)) == os.path.realpath(os.devnull)


def settings_problems(settings):
    """What in ``settings`` ({name: [values]}: parse_args's, or ssh -G's)
    keeps ssh from checking the host key, as short phrases; [] when it is
    checked. A setting left out is ssh's default (ask; the usual files)."""
    problems = []
    strict = (settings.get('stricthostkeychecking') or [''])[0]
    if strict.lower() in UNCHECKED:
        problems.append('StrictHostKeyChecking=%s' % strict)
    if _no_key_file(settings):
        problems.append('known_hosts files that hold no key: UserKnownHostsFile %s%s' % (
            ' '.join(settings['userknownhostsfile']),
            ', GlobalKnownHostsFile %s (none there)' % ' '.join(settings['globalknownhostsfile'])
            if settings.get('globalknownhostsfile') else ''))
    return problems


def _no_key_file(settings):
    """Whether no known_hosts file can hold the host's key: the user's files
    (where ssh records keys) all null, and the global ones null or absent
    (ones the settings do not name count as absent), no KnownHostsCommand."""
    user = settings.get('userknownhostsfile')
    command = (settings.get('knownhostscommand') or ['none'])[0]
    if not user or not all(is_null(f) for f in user) or command.lower() != 'none':
        return False
    return all(is_null(f) or not os.path.exists(os.path.expanduser(f))
               for f in settings.get('globalknownhostsfile') or [])


def args_problems(tokens):
    """settings_problems of ssh argv options (the ones they set)."""
    return settings_problems(parse_args(tokens)[0])


def parse_config(text):
    """``ssh -G`` output -> {option: [values]} (a multi-line option's
    values in order)."""
    conf = {}
    for line in (text or '').splitlines():
        key, _sep, value = line.strip().partition(' ')
        if key:
            conf.setdefault(key.lower(), []).extend(value.split())
    return conf


def ssh_config(argv):
    """(conf, error) of ``argv`` (``ssh -G ... -- destination``), asked
    once per process; conf None when ssh could not say (error: its words)."""
    key = tuple(argv)
    if key not in _CONFIGS:
        _CONFIGS[key] = _asked_this_run(key) or _ask(key)
    return _CONFIGS[key]


def _run_file(key):
    # the user and HOME are in the name: ssh reads ~/.ssh/config by them
    name = json.dumps([os.getuid(), os.environ.get('HOME'), list(key)])
    return os.path.join(C.DEFAULT_LOCAL_TMP, RUN_FOLDER,
                        hashlib.sha256(name.encode('utf-8')).hexdigest()[:32])


def _asked_this_run(key):
    """(conf, None) that an earlier task of the run had from ssh, or None."""
    try:
        with open(_run_file(key)) as handle:
            conf = json.load(handle)
    except (OSError, ValueError, TypeError):
        return None
    return (conf, None) if isinstance(conf, dict) else None


def _ask(key):
    rc, out, err = run_no_tty(list(key))
    if rc != 0:
        # never kept: a later task asks again (and says ssh's words)
        lines = [ln for ln in (err or '').splitlines()
                 if ln.strip() and not ln.startswith('Pseudo-terminal')]
        return None, (' '.join(lines) or 'rc %s' % rc)[-500:]
    conf = parse_config(out)
    try:
        path = _run_file(key)
        private_folder(os.path.dirname(path))
        write_json(path, conf)
    except (OSError, TypeError):
        pass  # only a question asked again
    return conf, None


def config_problems(argv):
    """settings_problems of what ``ssh -G`` says for ``argv``
    (``[ssh, -G, options..., --, destination]``); ssh's error when it
    cannot say (a broken config: then ssh would not connect either)."""
    conf, error = ssh_config(argv)
    if conf is None:
        return ['`ssh -G` cannot tell how ssh connects: %s' % error]
    return settings_problems(conf)
