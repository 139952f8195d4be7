# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that runs nix on the controller.

Every Nix command is an argv list (never a shell string), every value that
goes into a Nix expression goes through ``nix_string``, and every failure is
a ``NixError`` carrying Nix's own message so callers can report it per host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

# Debian's nix 2.8 ships flakes and the new CLI as experimental.
EXPERIMENTAL = ['--extra-experimental-features', 'nix-command flakes']


class NixError(Exception):
    """A Nix command failed; ``message`` is ours, ``stderr`` is Nix's."""

    def __init__(self, message, argv=None, rc=None, stderr=''):
        super(NixError, self).__init__(message)
        self.message = message
        self.argv = list(argv or [])
        self.rc = rc
        self.stderr = stderr or ''

    def nix_message(self):
        """Nix's own error text without the progress noise around it."""
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        # Nix prints its error last, starting at the line with "error:".
        for idx, line in enumerate(lines):
            if line.lstrip().startswith('error:') or 'error:' in line[:20]:
                return '\n'.join(lines[idx:])
        return '\n'.join(lines[-40:])

    def __str__(self):
        detail = self.nix_message()
        return '%s: %s' % (self.message, detail) if detail else self.message


def nix_string(value):
    """Quote ``value`` as a Nix string literal, safe inside any expression.

    JSON quoting is not enough: Nix interpolates ``${`` inside strings and
    does not understand ``\\u`` escapes.
    """
    text = u'%s' % (value,)
    out = []
    idx = 0
    while idx < len(text):
        char = text[idx]
        if char == '\\':
            out.append('\\\\')
        elif char == '"':
            out.append('\\"')
        elif char == '\n':
            out.append('\\n')
        elif char == '\r':
            out.append('\\r')
        elif char == '\t':
            out.append('\\t')
        elif char == '$' and text[idx + 1:idx + 2] == '{':
            out.append('\\$')
        else:
            out.append(char)
        idx += 1
    return '"%s"' % ''.join(out)


def nix_list(values):
    """A Nix list of string literals."""
    return '[ %s ]' % ' '.join(nix_string(v) for v in values)


class NixOptions:
    """Options every Nix call of a task shares.

    ``extra_args`` are passed through verbatim as argv items (never a shell),
    ``options`` become ``--option NAME VALUE`` pairs.
    """

    def __init__(self, nix_bin='nix', extra_args=None, options=None,
                 impure=False, show_trace=False, override_inputs=None,
                 env=None):
        self.nix_bin = nix_bin or 'nix'
        self.extra_args = list(extra_args or [])
        self.options = dict(options or {})
        self.impure = impure
        self.show_trace = show_trace
        self.override_inputs = dict(override_inputs or {})
        self.env = dict(env or {})

    @classmethod
    def from_params(cls, params):
        """Build from a module/action argument dict (see the nix doc fragment)."""
        return cls(
            nix_bin=params.get('nix_bin') or 'nix',
            extra_args=params.get('nix_args') or [],
            options=params.get('nix_options') or {},
            impure=bool(params.get('impure')),
            show_trace=bool(params.get('show_trace')),
            override_inputs=params.get('override_inputs') or {},
        )

    def common_args(self, flake_command=True):
        args = list(EXPERIMENTAL)
        for name, value in sorted(self.options.items()):
            args += ['--option', str(name), _option_value(value)]
        if flake_command:
            if self.impure:
                args.append('--impure')
            for name, ref in sorted(self.override_inputs.items()):
                args += ['--override-input', str(name), str(ref)]
        if self.show_trace:
            args.append('--show-trace')
        return args + self.extra_args

    def argv(self, subcommand, args, flake_command=True):
        """``nix <subcommand> <common options> <args>`` as a list."""
        sub = subcommand.split() if isinstance(subcommand, str) else list(subcommand)
        return [self.nix_bin] + sub + self.common_args(flake_command) + list(args)


def _option_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return ' '.join(str(v) for v in value)
    return str(value)


def run(argv, env=None, stdin_data=None, timeout=None, cwd=None):
    """Run argv; return (rc, stdout, stderr) as text. Never raises on rc."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        proc = subprocess.run(
            argv, input=stdin_data, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=full_env, timeout=timeout, cwd=cwd,
            universal_newlines=True, check=False)
    except OSError as exc:
        return 127, '', '%s: %s' % (argv[0], exc)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr or ''
        if isinstance(err, bytes):
            err = err.decode('utf-8', 'replace')
        return 124, '', '%s\nerror: timed out after %ss' % (err, timeout)
    return proc.returncode, proc.stdout, proc.stderr


def check(argv, what, env=None, stdin_data=None, timeout=None, cwd=None):
    """Run argv and return stdout; raise NixError naming ``what`` on failure."""
    rc, out, err = run(argv, env=env, stdin_data=stdin_data, timeout=timeout, cwd=cwd)
    if rc != 0:
        raise NixError(what, argv=argv, rc=rc, stderr=err)
    return out


def nix(opts, subcommand, args, what, flake_command=True, **kwargs):
    """Run a ``nix`` subcommand with the shared options; return stdout."""
    env = dict(opts.env)
    env.update(kwargs.pop('env', None) or {})
    return check(opts.argv(subcommand, args, flake_command), what, env=env, **kwargs)


def nix_json(opts, subcommand, args, what, **kwargs):
    """As ``nix`` but parse stdout as JSON."""
    out = nix(opts, subcommand, args, what, **kwargs)
    try:
        return json.loads(out)
    except ValueError as exc:
        raise NixError('%s: nix printed no JSON (%s)' % (what, exc), stderr=out[-2000:])


def flake_ref(flake, base_dir=None):
    """Turn a path-like flake (relative to ``base_dir``) into a flake ref.

    Flake refs with a scheme (``github:``, ``git+https://``, ``path:``) pass
    through untouched; plain paths become absolute ``path:`` refs when they
    hold no git repository, so untracked files are seen as users expect.
    """
    if not flake:
        raise NixError('no flake given')
    text = str(flake)
    if ':' in text.split('#', 1)[0] and not text.startswith(('/', '.', '~')):
        return text
    path = os.path.expanduser(text)
    if base_dir and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    path = os.path.abspath(path)
    if os.path.isdir(os.path.join(path, '.git')):
        return 'git+file://' + path
    return 'path:' + path
