# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hosts the controller cannot build for: told at the build, before Nix tries.

An EE is x86_64-linux; an aarch64 NixOS host or a darwin host needs a machine
of its own platform. Nix would start the batch's build and fail deep in it
(2.8: "a 'aarch64-linux' with features {} is required to build ..., but I am a
'x86_64-linux' ..."; 2.29+: "Cannot build ... Reason: platform mismatch").
Instead, after the dry run says which derivations must be built, those whose
``system`` (``derivation show``) the controller's Nix cannot build are found
from what that Nix says it builds (``nix config show --json``, ``nix
show-config --json`` before 2.20, with the task's nix_options and nix_args, as
the build would run): its ``system``, its ``extra-platforms`` (binfmt/qemu
emulation sets these) and the systems of its ``builders`` (Nix's remote
builds, ``@file`` lists included, read as Nix reads them: libstore's
machines.cc). A host whose closure needs such a derivation fails with a
message naming its system and the ways out; nothing of it is built or copied
and the rest of the batch builds. Nix is asked only when a derivation to build
is for another system than this machine's own, so an ordinary build costs no
process more. When Nix fails all the same (a daemon configured otherwise, a
builder that is down), its own message stays, with the same ways out after it
(``ways_out``).
"""

import os
from ansible_collections.nixdeploy.fleet.plugins.module_utils._copy_modes import NEEDS_CACHES
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, native_system)

# derivations Nix builds inside itself, on any machine (builtin:fetchurl)
BUILTIN_SYSTEM = 'builtin'
# `@file` lists may name further files; Nix follows them, this is a guard
_MAX_DEPTH = 8


def _setting(data, name):
    """A setting's value from ``config show --json``: {name: {value, ...}}
    (every Nix from 2.8 on, Lix), or the bare value."""
    setting = data.get(name)
    if isinstance(setting, dict) and 'value' in setting:
        return setting['value']
    return setting


def _words(value):
    if isinstance(value, (list, tuple)):
        return [u'%s' % v for v in value if u'%s' % v]
    return (u'%s' % (value or '')).split()


def _read_file(path):
    with open(path) as handle:
        return handle.read()


def builder_systems(value, this_system, read_file=_read_file, depth=0):
    """The systems of each machine in a ``builders`` value, as Nix reads it:
    entries separated by newlines or ``;``, ``#`` comments, ``@FILE`` for a
    file of entries (a missing one is no machine); fields separated by
    whitespace, the second the machine's systems (``a,b``; absent or ``-``:
    the local system). A list of sets."""
    found = []
    for machine in (value or '').replace(';', '\n').split('\n'):
        machine = machine.split('#', 1)[0].strip()
        if not machine:
            continue
        if machine.startswith('@'):
            if depth < _MAX_DEPTH:
                try:
                    text = read_file(machine[1:].strip())
                except (IOError, OSError):
                    continue
                found += builder_systems(text, this_system, read_file, depth + 1)
            continue
        fields = machine.split()
        if len(fields) > 1 and fields[1] not in ('', '-'):
            found.append(set(s for s in fields[1].split(',') if s))
        else:
            found.append({this_system})
    return found


class Platforms:
    """What a Nix configuration builds: ``system``, ``extra_platforms`` and
    the systems of its ``builders`` (a list of sets, one per machine)."""

    def __init__(self, system, extra_platforms=(), builders=()):
        self.system = system
        self.extra_platforms = [p for p in extra_platforms if p != system]
        self.builders = [set(b) for b in builders]

    @classmethod
    def from_config(cls, data, read_file=_read_file):
        """From ``nix config show --json`` (parsed)."""
        system = u'%s' % (_setting(data, 'system') or native_system())
        return cls(system, _words(_setting(data, 'extra-platforms')),
                   builder_systems(_setting(data, 'builders') or '', system, read_file))

    def builds(self, system):
        """Whether this Nix builds a derivation for ``system`` (itself or on a builder)."""
        return (system in (BUILTIN_SYSTEM, self.system) or system in self.extra_platforms
                or any(system in machine for machine in self.builders))

    def describe(self):
        text = self.system
        if self.extra_platforms:
            text += ' and its extra-platforms %s' % ', '.join(self.extra_platforms)
        remote = sorted(set().union(*self.builders)) if self.builders else []
        return text + ('; its builders build %s' % ', '.join(remote) if remote else
                       '; it has no builders')


def config_subcommand(features):
    """``config show`` from Nix 2.20 (``show-config`` warns there), ``show-config`` before."""
    like = _nix_output.like_nix(features.flavour, features.version)
    return 'config show' if like >= (2, 20) else 'show-config'


def _kernel(system):
    return (system or '').rpartition('-')[2]


def ways_out(system, current=None):
    """What a user can do about a host whose system needs ``system``, on a
    machine of system ``current``: emulation (binfmt/qemu on Linux, Rosetta
    on a Mac) is a way only between systems of one kernel."""
    ways = ['build it on the host itself (nix_build_on: target)',
            'on a builder that builds %s (nix_build_on: [builder], or Nix\'s builders setting in '
            'nix_options)' % system]
    if current is None or _kernel(system) == _kernel(current):
        ways.append('let this machine build %s (nix_options extra-platforms: %s, with '
                    'binfmt/qemu emulation for it)' % (system, system))
    # the copy mode in which the hosts fetch from caches
    ways.append('have it prebuilt in a binary cache this machine substitutes from (nix_options '
                'extra-substituters; nix_copy_mode: %s lets the hosts fetch it there too)'
                % NEEDS_CACHES[0])
    return 'Ways out: %s; or %s.' % ('; '.join(ways[:-1]), ways[-1])


class LocalBuilds:
    """The controller's side of one build: which derivations to build it
    cannot build (``refused``) and the failure of a system that needs them
    (``message``). ``runner``: the build's ``_nix.NixCommand`` (its nix_options
    and nix_args); ``needs``: {drv: {system, features}} of the graph."""

    def __init__(self, runner, needs, native=None):
        self.runner = runner
        self.needs = needs
        self.native = native or native_system()
        self.platforms = None
        self.config = None

    def system_of(self, drv):
        return (self.needs.get(drv) or {}).get('system') or ''

    def refused(self, to_build):
        """{drv: system} of the derivations of ``to_build`` this Nix builds
        neither itself nor on its builders. No process when every one is
        for this machine's own system."""
        other = [d for d in to_build if self.system_of(d) not in ('', BUILTIN_SYSTEM, self.native)]
        if not other:
            return {}
        if self.platforms is None:
            self.platforms = Platforms.from_config(self._config())
        return dict((d, self.system_of(d)) for d in other
                    if not self.platforms.builds(self.system_of(d)))

    def _config(self):
        """This Nix's settings (``config show --json``), asked once."""
        if self.config is None:
            what = 'reading what this machine builds (system, extra-platforms, builders)'
            data = self.runner.json(config_subcommand(self.runner.features()), ['--json'], what)
            if not isinstance(data, dict):
                raise NixError('%s: nix printed JSON of a shape this collection does not know' % what)
            self.config = data
        return self.config

    def jobs_for(self, systems, cpus=None):
        """The ``--max-jobs`` for one build of ``systems`` systems to build,
        or None to leave Nix's own.

        One ``nix build`` runs at most max-jobs derivations at once, and
        Nix's default is 1: the hosts of one wave would be built one after
        the other, a fast host's system behind a slow one's. So a build of
        several systems may run as many side by side as it has systems, up to
        the controller's cores; never fewer than max-jobs says, never when
        nix_options set max-jobs (the operator's choice), never with max-jobs
        0 (builds only on remote builders)."""
        if systems < 2 or 'max-jobs' in self.runner.opts.options:
            return None
        try:
            configured = int(_setting(self._config(), 'max-jobs'))
        except (TypeError, ValueError):
            return None
        wanted = min(systems, cpus or os.cpu_count() or 1)
        return wanted if configured > 0 and wanted > configured else None

    def message(self, drv, refused):
        """The failure of the system ``drv`` whose closure holds the refused
        derivations ``refused`` ({drv: system})."""
        drv_system = self.system_of(drv)
        systems = sorted(set(refused.values()))
        if drv_system in systems:
            others = len([d for d in refused if d != drv])
            what = 'its system %s is for %s%s' % (
                drv, drv_system, ' (and so %s %d more derivation%s it needs that %s not built yet)'
                % (('is', others, '', 'is') if others == 1 else ('are', others, 's', 'are'))
                if others else '')
        else:
            what = 'its system %s needs %d derivation%s for %s that %s not built yet (%s)' % (
                drv, len(refused), '' if len(refused) == 1 else 's', ', '.join(systems),
                'is' if len(refused) == 1 else 'are', sorted(refused)[0])
        return ('cannot build it here: %s, and this machine\'s Nix builds %s. Nothing was built or '
                'copied for this host. %s' % (what, self.platforms.describe(),
                                              ways_out(systems[0], self.platforms.system)))
