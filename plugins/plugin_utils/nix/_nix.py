# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that runs nix on the controller.

Every Nix command is an argv list (never a shell string), every value that
goes into a Nix expression goes through ``nix_string``, and every failure is
a ``NixError`` carrying Nix's own message so callers can report it per host.
``nix_options`` reach Nix as NIX_CONFIG lines (``_nix_config``), never in argv.

Where the command line itself differs between the Nix versions in use (Nix
2.8 to 2.34, Lix, Determinate Nix), ``NixCommand`` asks ``nix --version`` once
per nix binary and process (``nix_features``: a ``_nix_features.NixFeatures``)
and picks the form that version understands; what Nix prints is read by
``_nix_output`` (its answers) and ``_nix_stderr`` (its errors and progress).
"""

import json
import os
import re
import shutil
import subprocess

from ansible_collections.nixdeploy.fleet.plugins.module_utils._options import NIX_OPTIONS
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output, _nix_stderr
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_features import NixFeatures
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_config import (
    ConfigError, config_lines, environment, option_value)

# Debian's nix 2.8 ships flakes and the new CLI as experimental.
EXPERIMENTAL = ['--extra-experimental-features', 'nix-command flakes']


class NixError(NixdeployError):
    """A Nix command failed; ``message`` is ours, ``stderr`` is Nix's.

    All three with the credentials of any URL in them masked (``_redact``):
    messages name flake references and store URIs, and Nix echoes them."""

    def __init__(self, message, argv=None, rc=None, stderr=''):
        message = _redact.text(message)
        super(NixError, self).__init__(message)
        self.message = message
        self.argv = [_redact.text(u'%s' % arg) for arg in argv or []]
        self.rc = rc
        self.stderr = _redact.text(stderr or '')

    def nix_message(self):
        """Nix's own error text without the progress noise around it."""
        return _nix_stderr.error_message(self.stderr)

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


def options_of(params):
    """The Nix options among ``params`` (a task's or plugin's arguments)."""
    return dict((name, params.get(name)) for name in sorted(NIX_OPTIONS))


class NixOptions:
    """Options every Nix call of a task shares.

    ``extra_args`` are passed through verbatim as argv items (never a shell).
    ``options`` (nix_options) reach Nix as ``NIX_CONFIG`` lines in its
    environment (``environment``), never as ``--option NAME VALUE``: a value
    may be a secret (``access-tokens``), and argv is visible to every user of
    the controller (``ps``). A name or value Nix would read as more than one
    setting is refused here (NixError).
    """

    def __init__(self, nix_bin='nix', extra_args=None, options=None,
                 impure=False, show_trace=False, override_inputs=None):
        self.nix_bin = nix_bin or 'nix'
        self.extra_args = list(extra_args or [])
        self.options = dict(options or {})
        self.impure = impure
        self.show_trace = show_trace
        self.override_inputs = dict(override_inputs or {})
        try:
            self._config = config_lines(self.options)
        except ConfigError as exc:
            raise NixError(u'%s' % exc)

    @classmethod
    def from_params(cls, params):
        """Build from a module/action argument dict (``NIX_OPTIONS``)."""
        return cls(
            nix_bin=params.get('nix_bin') or 'nix',
            extra_args=params.get('nix_args') or [],
            options=params.get('nix_options') or {},
            impure=bool(params.get('impure')),
            show_trace=bool(params.get('show_trace')),
            override_inputs=params.get('override_inputs') or {},
        )

    def with_options(self, options):
        """These options with ``options`` (setting name -> value) added
        over ``nix_options``: settings of the collection's own for some
        calls (a private ``netrc-file``), as refused as the user's."""
        merged = dict(self.options)
        merged.update(options)
        return NixOptions(self.nix_bin, self.extra_args, merged, self.impure,
                          self.show_trace, self.override_inputs)

    def config_lines(self):
        """``nix_options`` as the lines of a nix.conf (``name = value``), in
        name order; what ``environment`` passes and a cache key may digest."""
        return list(self._config)

    def environment(self, environ=None):
        """The environment every Nix process of this task gets on top of
        ``environ`` (the controller's): ``NIX_CONFIG`` with the user's own
        NIX_CONFIG first and ``nix_options`` after it, so that ours win as
        ``--option`` did (Nix applies NIX_CONFIG after its config files, a
        later line over an earlier one). Empty without nix_options."""
        return environment(self._config, environ)

    def common_args(self, flake_command=True):
        """The shared options in argv (``nix_options`` are not: see
        ``environment``); ``--impure`` and ``--override-input`` only for
        commands that take a flake (``flake_command``)."""
        args = list(EXPERIMENTAL)
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


# The system named while selecting the outputs on Nix < 2.19 (NixCommand.outputs).
OUTPUTS_ONLY_SYSTEM = 'nixdeploy-outputs-only'

# uname's machine -> Nix's CPU name (the rest are spelled alike)
_NIX_CPUS = {'amd64': 'x86_64', 'arm64': 'aarch64', 'i386': 'i686', 'i586': 'i686'}


def native_system():
    """This machine's Nix system (``x86_64-linux``), as Nix names it."""
    sysname, _node, _release, _version, machine = os.uname()
    machine = machine.lower()
    return '%s-%s' % (_NIX_CPUS.get(machine, machine), sysname.lower())


def run(argv, env=None, stdin_data=None, timeout=None, cwd=None):
    """Run argv; return (rc, stdout, stderr) as text. Never raises on rc."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        # controller-only code (the collection's actions run nix on the
        # controller), so there is no AnsibleModule.run_command to use
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
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


def store_tool(nix_bin, tool):
    """``nix-store`` (or another tool) beside ``nix_bin`` when there is one,
    else from PATH."""
    folder = os.path.dirname(nix_bin or '')
    candidate = os.path.join(folder, tool)
    if folder and os.access(candidate, os.X_OK):
        return candidate
    return tool


# One `nix --version` per nix binary and process. A worker forked after the
# parent asked inherits the answer.
_FEATURES = {}


def cannot_run(nix_bin, reason=None):
    """The sentence for a ``nix_bin`` the controller cannot run: the
    variable, why, and the fix."""
    if reason is None:
        if not os.path.dirname(nix_bin):
            reason = 'not found on the controller\'s PATH'
        elif os.path.isdir(nix_bin):
            reason = 'a folder, not a program'
        elif os.path.exists(nix_bin):
            reason = 'Permission denied: not executable'
        else:
            reason = 'No such file or directory'
    return ('nix_bin: cannot run %s (%s); set nix_bin to the nix executable or put nix on '
            'the controller\'s PATH' % (nix_bin, reason))


def nix_features(nix_bin='nix', timeout=60):
    """``NixFeatures`` of ``nix_bin`` (a name on PATH or a path); NixError
    when it does not run or names no version."""
    nix_bin = nix_bin or 'nix'
    key = shutil.which(nix_bin)
    if key is None:
        raise NixError(cannot_run(nix_bin))
    if key in _FEATURES:
        return _FEATURES[key]
    argv = [nix_bin, '--version']
    rc, out, err = run(argv, timeout=timeout)
    if rc == 127 and not out and err.startswith('%s: ' % nix_bin):
        # it could not be started after all (run's OSError)
        reason = err[len(nix_bin) + 2:].split('\n')[0]
        # "[Errno 13] Permission denied: '/x/nix'": the words only
        reason = re.sub(r"^\[Errno \d+\] |: '.*'$", '', reason)
        raise NixError(cannot_run(nix_bin, reason))
    if rc != 0:
        raise NixError('running %s --version' % nix_bin, argv=argv, rc=rc, stderr=err)
    try:
        flavour, version = _nix_output.nix_version(out)
    except ValueError:
        raise NixError('%s --version names no Nix version' % nix_bin, argv=argv, rc=rc,
                       stderr=out[-500:])
    _FEATURES[key] = NixFeatures(flavour, version)
    return _FEATURES[key]


class NixCommand:
    """The one runner of Nix on the controller: builds the argv from the
    task's ``NixOptions``, passes the environment (e.g. NIX_SSHOPTS for one
    target) and the timeout, turns a failure into a ``NixError`` carrying
    Nix's message, and counts its processes (``processes``)."""

    def __init__(self, opts, timeout=None):
        self.opts = opts
        self.timeout = timeout
        self.processes = 0

    def argv(self, subcommand, args, flake_command=False, tool=None):
        """``nix <subcommand> <options> <args>``, or ``<tool> <args>`` for
        the classic tools (``nix-store``) found beside nix_bin."""
        if tool:
            return [store_tool(self.opts.nix_bin, tool)] + list(args)
        return self.opts.argv(subcommand, args, flake_command=flake_command)

    def run(self, subcommand, args, env=None, flake_command=False, tool=None,
            stdin_data=None, cwd=None):
        """(argv, rc, stdout, stderr); never raises on rc.

        Every process gets ``nix_options`` in its environment (the classic
        tools too: they read NIX_CONFIG as well). stderr comes back with the
        credentials of the URLs Nix echoes masked: it only ever becomes
        messages."""
        argv = self.argv(subcommand, args, flake_command, tool)
        full_env = self.opts.environment()
        full_env.update(env or {})
        self.processes += 1
        rc, out, err = run(argv, env=full_env, stdin_data=stdin_data, timeout=self.timeout,
                           cwd=cwd)
        return argv, rc, out, _redact.text(err)

    def check(self, subcommand, args, what, said=None, **kwargs):
        """stdout; a ``NixError`` naming ``what`` when Nix fails.
        ``said``: a list that gets Nix's stderr (masked) of a success too
        (its warnings)."""
        argv, rc, out, err = self.run(subcommand, args, **kwargs)
        if said is not None:
            said.append(err)
        if rc != 0:
            raise NixError(what, argv=argv, rc=rc, stderr=err)
        return out

    def json(self, subcommand, args, what, **kwargs):
        """As ``check``, with stdout parsed as JSON."""
        out = self.check(subcommand, args, what, **kwargs)
        try:
            return json.loads(out)
        except ValueError as exc:
            raise NixError('%s: nix printed no JSON (%s)' % (what, exc), stderr=out[-2000:])

    # ------------------------------------------------ forms that differ by version
    def features(self):
        """``NixFeatures`` of this runner's nix (asked once per process)."""
        return nix_features(self.opts.nix_bin, timeout=self.timeout or 60)

    def outputs(self, flake):
        """Arguments naming the flake's outputs attribute set itself as the
        installable, whatever outputs the flake has.

        Nix 2.19+ and Lix: ``<flake>#.``. Older Nix knows only the empty
        fragment ``<flake>#""``, which it first looks up as
        ``packages.<system>.""`` and ``legacyPackages.<system>.""`` and,
        dropping the empty name, finds the packages set of any flake that has
        one. A system no flake provides keeps those lookups from matching; the
        real system is added as an extra platform, so a derivation built
        during evaluation (import from derivation) still builds here. (On
        those versions ``builtins.currentSystem``, readable with --impure
        only, then names the placeholder.)"""
        if self.features().outputs_fragment:
            return ['%s#.' % flake]
        system = self.opts.options.get('system') or native_system()
        return ['--option', 'system', OUTPUTS_ONLY_SYSTEM,
                '--option', 'extra-extra-platforms', option_value(system),
                '%s#""' % flake]

    def built(self, drvs):
        """Installables that build every output of each ``.drv`` in ``drvs``:
        ``X.drv^*`` where Nix knows it, the bare ``X.drv`` on Nix < 2.13."""
        suffix = '^*' if self.features().all_outputs else ''
        return [d + suffix if d.endswith('.drv') else d for d in drvs]

    def derivations(self, drvs, args=(), what='reading derivations', **kwargs):
        """``derivation show -r`` (``show-derivation -r`` before 2.15) of
        ``drvs``, read by ``_nix_output.derivations``: {drv: {outputs,
        input_drvs}} of everything they need."""
        sub = 'derivation show' if self.features().derivation_show else 'show-derivation'
        data = self.json(sub, ['-r'] + list(args) + list(drvs), what, **kwargs)
        return self._read(_nix_output.derivations, data, what)

    def path_infos(self, paths, args=(), what='reading store paths', **kwargs):
        """``path-info --json`` of ``paths`` (``args``: ``-r``, ``--store``),
        read by ``_nix_output.path_infos``: {path: info or None}."""
        flags = ['--json'] + (['--json-format', '1'] if self.features().json_format else [])
        data = self.json('path-info', flags + list(args) + list(paths), what, **kwargs)
        return self._read(_nix_output.path_infos, data, what)

    @staticmethod
    def _read(reader, data, what):
        try:
            return reader(data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise NixError('%s: nix printed JSON of a shape this collection does not know (%s)'
                           % (what, exc), stderr=json.dumps(data)[:2000])


def nix(opts, subcommand, args, what, flake_command=True, **kwargs):
    """One ``nix`` command with the shared options; return stdout."""
    timeout = kwargs.pop('timeout', None)
    return NixCommand(opts, timeout).check(subcommand, args, what,
                                           flake_command=flake_command, **kwargs)


def nix_json(opts, subcommand, args, what, flake_command=True, **kwargs):
    """As ``nix`` but parse stdout as JSON."""
    timeout = kwargs.pop('timeout', None)
    return NixCommand(opts, timeout).json(subcommand, args, what,
                                          flake_command=flake_command, **kwargs)
