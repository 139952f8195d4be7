# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Remote builders: probed before use, the batch's builds spread over the
healthy ones.

``build_on`` names one builder or several (a list, or one string of names
separated by commas): inventory host names (their connection vars) or store
URIs. Before a batch builds anything on them, each builder it names is
probed once, all at the same time:

- login: ``ssh`` with the inventory host's own options (host key checking
  stays on) runs ``target/builder-probe.sh``: where nix is, the builder's
  ``system``, ``extra-platforms`` and ``system-features`` (its Nix
  configuration) and ``df -Pk /nix/store``;
- store: ``nix store info`` (``nix store ping`` before Nix 2.19) from the
  controller against the store URI the build uses, so the remote nix-daemon
  answers over the same path;
- free space: at least ``builder_min_free_mb`` in its store (0: not checked).

A builder that fails any of them is unhealthy. A healthy builder suits a
host when it can build every derivation of the host's closure: each
derivation's ``system`` is the builder's system or one of its
extra-platforms (``builtin`` builds everywhere), and its
``requiredSystemFeatures`` are among the builder's system-features. Every
builder a host names but cannot use is given back with its reason.

``spread`` gives each system to one builder that suits it, balancing the
derivations each builder has to handle; dependencies shared by systems on
the same builder count once, so each builder still runs ONE ``nix build``
for all of its systems.
"""

import threading
from urllib.parse import urlsplit

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (
    HOSTVARS_READ, AddressError, Host)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    FEATURE, FLAG, PATH, SYSTEM, TEXT, list_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import remote_program
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError, NixCommand, run

CONTROLLER = 'controller'
TARGET = 'target'
# seconds one probe step (the ssh login, the store query) may take; ssh's
# own ConnectTimeout (10 s unless the inventory says otherwise) comes first
PROBE_TIMEOUT = 30
SSH_SCHEMES = ('ssh-ng', 'ssh')
# derivations Nix builds inside itself, on any machine
BUILTIN_SYSTEM = 'builtin'
PROBE_SCRIPT = 'builder-probe.sh'
# what the probe reports, each key's kind (plugin_utils/host/_program_fields.py)
FIELDS = {
    PROBE_SCRIPT: {
        'no_nix': FLAG, 'nix_dir': PATH, 'daemon_on_path': FLAG, 'system': SYSTEM,
        'extra_platforms': list_of(SYSTEM), 'system_features': list_of(FEATURE),
        'store_df': TEXT, 'complete': FLAG},
}


class BuildOnError(NixdeployError, ValueError):
    """``build_on`` names no usable place."""


# ------------------------------------------------------------------ build_on
def parse_build_on(value):
    """``controller``, ``target``, one builder name, a list of two or more
    builder names, or None (unset).

    A string is split on commas (``"b1, b2"``); a list is taken item by item,
    so a store URI holding a comma can be given in a list.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        names = [u'%s' % v for v in value if v not in (None, '')]
    else:
        names = (u'%s' % value).split(',')
    names = [n.strip() for n in names if n.strip()]
    if not names:
        return None
    unique = []
    for name in names:
        if name not in unique:
            unique.append(name)
    if len(unique) == 1:
        return unique[0]
    alone = [n for n in unique if n in (CONTROLLER, TARGET)]
    if alone:
        raise BuildOnError('build_on: %s stands alone, not in a list of builders (%s)'
                           % (alone[0], ', '.join(unique)))
    return unique


def names_of(place):
    """The builders of a place ``parse_build_on`` gave (not controller or target)."""
    return [place] if isinstance(place, str) else list(place)


def label(place):
    """``place`` as one string (the builders comma-separated)."""
    if isinstance(place, (list, tuple)):
        return ','.join(place)
    return place


# ------------------------------------------------------------------ where a builder is
class BuilderAddress:
    """A builder: its name (as build_on gives it), the store URI and the
    environment (NIX_SSHOPTS) Nix uses for it, and the ``Host`` to log in
    to (None for a store that is not reached over ssh)."""

    def __init__(self, name, uri, env=None, target=None, inventory=False):
        self.name = name
        self.uri = uri
        self.env = env
        self.target = target
        self.inventory = inventory

    def login_argv(self):
        """ssh with the builder's own options, running ``sh -s`` (the probe
        comes on stdin, whatever the login shell is)."""
        return self.target.ssh_argv('sh -s')


def builder_vars(names, hostvars):
    """{name: {variable: value}} of the builders ``names`` that are
    inventory hosts: the variables ``resolve`` reads of each (its
    connection, ``HOSTVARS_READ``), for the batch's server, which is given
    these and never the whole ``hostvars``."""
    found = {}
    for name in names:
        if '://' in name or name not in hostvars:
            continue  # a store URI, or no host: ``resolve`` says so
        own = hostvars[name]
        found[name] = dict((var, own[var]) for var in HOSTVARS_READ
                           if var in own and own[var] not in (None, ''))
    return found


def resolve(name, hostvars):
    """The ``BuilderAddress`` of builder ``name``: an inventory host (its connection
    vars) or a store URI. AddressError when it is neither or unsafe."""
    if '://' in name:
        return _spec_of_uri(name)
    if name not in hostvars:
        raise AddressError('%s is neither an inventory host nor a store URI' % name)
    target = Host.from_hostvars(hostvars[name], name=name)
    return BuilderAddress(name, target.store_uri(), target.nix_env(), target, inventory=True)


def _spec_of_uri(uri):
    parts = urlsplit(uri)
    if parts.scheme not in SSH_SCHEMES:
        # a local or daemon store: nothing to log in to, only the store is probed
        return BuilderAddress(uri, uri)
    return BuilderAddress(uri, uri, None, Host.from_store_uri(uri))


# ------------------------------------------------------------------ probe
class Probed:
    """What the probe found of one builder: ``reason`` is None when healthy."""

    def __init__(self, name, reason=None, spec=None, facts=None):
        self.name = name
        self.reason = reason
        self.spec = spec
        self.facts = facts or {}

    @property
    def healthy(self):
        return self.reason is None

    def __repr__(self):
        return 'Probed(%s, %s)' % (self.name, self.reason or 'healthy')


def probe_script():
    return _script.render(PROBE_SCRIPT, fields=FIELDS)


def parse_probe(stdout, program):
    """What ``program`` (a ``probe_script``) printed -> facts: nix_dir,
    daemon_on_path, system, extra_platforms, system_features (lists), free_kb
    (None when df said nothing readable), error (the probe's own failure) and
    complete."""
    values, _log = program.parse(stdout)
    # each value is of its type already (plugin_utils/host/_program_fields.py)
    return {
        'no_nix': values.get('no_nix', False),
        'error': values.get('error'),
        'nix_dir': values.get('nix_dir'),
        'daemon_on_path': values.get('daemon_on_path', False),
        'system': values.get('system'),
        'extra_platforms': values.get('extra_platforms', []),
        'system_features': values.get('system_features', []),
        'free_kb': free_kb(values.get('store_df')),
        'complete': values.get('complete', False),
        'dropped': list(values.dropped),
    }


def free_kb(df_line):
    """Available KiB from a ``df -Pk`` data line (None when unreadable)."""
    return _script.df_space(df_line)[0]


def health_reason(facts, min_free_mb):
    """Why a builder whose probe ran is unhealthy, or None."""
    if facts.get('no_nix'):
        return 'no nix found (ssh PATH and the usual places)'
    if facts.get('error'):
        return facts['error']
    if not facts.get('complete') or not facts.get('system'):
        return 'the probe did not finish (no system read from its Nix configuration)'
    if min_free_mb:
        free = facts.get('free_kb')
        if free is None:
            return 'cannot read the free space of /nix/store (df -Pk)'
        if free < int(min_free_mb) * 1024:
            return 'only %d MB free in /nix/store (builder_min_free_mb: %d)' % (
                free // 1024, int(min_free_mb))
    return None


def platforms(facts):
    """The systems a builder builds: its system, then its extra-platforms."""
    found = [facts['system']] if facts.get('system') else []
    return found + [p for p in facts.get('extra_platforms') or [] if p not in found]


def unsuited_reason(facts, needs):
    """Why a healthy builder cannot build a closure that ``needs``
    ({'systems', 'features'}: sets), or None."""
    can = set(platforms(facts)) | {BUILTIN_SYSTEM}
    systems = sorted(set(needs.get('systems') or ()) - can)
    if systems:
        return 'cannot build %s (it builds %s)' % (
            ', '.join(systems), ', '.join(platforms(facts)) or 'nothing')
    has = set(facts.get('system_features') or ())
    features = sorted(set(needs.get('features') or ()) - has)
    if features:
        return 'lacks the system features %s (it has %s)' % (
            ', '.join(features), ', '.join(sorted(has)) or 'none')
    return None


def _one_line(text, limit=300):
    lines = [ln.strip() for ln in (text or '').splitlines() if ln.strip()]
    # ssh's warnings come first, its error last; Nix's error starts "error:"
    picked = [ln for ln in lines if ln.startswith('error:')] or lines[-1:]
    return ' '.join(picked)[:limit] or 'no message'


def store_subcommand(features):
    """``store info`` from Nix 2.19 (``ping`` is its deprecated alias there),
    ``store ping`` before."""
    like = _nix_output.like_nix(features.flavour, features.version)
    return ['store', 'info'] if like >= (2, 19) else ['store', 'ping']


def probe(spec, opts, min_free_mb, timeout=PROBE_TIMEOUT):
    """Probe the builder ``spec``: a ``Probed`` (healthy or why not)."""
    name = spec.name
    facts = {}
    if spec.target is not None:
        try:
            argv = spec.login_argv()
        except AddressError as exc:
            return Probed(name, u'%s' % exc, spec)
        program = probe_script()
        rc, out, err = run(argv, stdin_data=program, timeout=timeout)
        facts = parse_probe(out, program)
        if rc == 124:
            return Probed(name, 'login: no answer within %ss' % timeout, spec, facts)
        if rc == 255 or (rc != 0 and not (facts['no_nix'] or facts['error'])):
            return Probed(name, 'login failed: %s' % _one_line(err), spec, facts)
        reason = health_reason(facts, min_free_mb)
        if reason:
            return Probed(name, reason, spec, facts)
        if spec.inventory and not facts['daemon_on_path'] and facts['nix_dir']:
            # nix lives outside the login's PATH (macOS, a user profile)
            spec.uri = spec.target.store_uri(remote_program=remote_program(facts['nix_dir']))
    runner = NixCommand(opts, timeout)
    try:
        sub = store_subcommand(runner.features())
    except NixError as exc:
        return Probed(name, u'%s' % exc, spec, facts)
    _argv, rc, _out, err = runner.run(sub, ['--store', spec.uri], env=spec.env)
    if rc != 0:
        return Probed(name, 'store not reachable: %s' % _one_line(err), spec, facts)
    if spec.target is None:
        # no login: what it builds is not known here; its build says
        facts = {'system': None, 'unknown': True}
    return Probed(name, None, spec, facts)


def probe_all(names, hostvars, opts, min_free_mb, timeout=PROBE_TIMEOUT):
    """{name: Probed} of the builders ``names``, each probed in its own thread
    (a dead builder costs its timeout once, not once each). Their specs are
    read from ``hostvars`` first, here: Ansible's variables stay in this
    thread."""
    found, specs = {}, {}
    for name in names:
        try:
            specs[name] = resolve(name, hostvars)
        except AddressError as exc:
            found[name] = Probed(name, u'%s' % exc)
    lock = threading.Lock()

    def work(name):
        try:
            probed = probe(specs[name], opts, min_free_mb, timeout)
        except Exception as exc:  # pylint: disable=broad-except
            probed = Probed(name, 'probe failed: %s' % exc, specs[name])
        with lock:
            found[name] = probed

    threads = [threading.Thread(target=work, args=(n,), name='nixdeploy-probe-%d' % i)
               for i, n in enumerate(sorted(specs))]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join()
    return found


# ------------------------------------------------------------------ derivations
def closure_needs(needs, closure):
    """{'systems', 'features'} (sets) of the derivations ``closure``."""
    systems, features = set(), set()
    for drv in closure:
        need = needs.get(drv)
        if need:
            if need['system']:
                systems.add(need['system'])
            features.update(need['features'])
    return {'systems': systems, 'features': features}


# ------------------------------------------------------------------ choosing
def choose(asked, probed, needs):
    """(usable builders in ``asked``'s order, [{'name', 'reason'}] of the
    others) for one closure that ``needs`` ({'systems', 'features'})."""
    usable, skipped = [], []
    for name in asked:
        found = probed[name]
        reason = found.reason
        if reason is None and not found.facts.get('unknown'):
            reason = unsuited_reason(found.facts, needs)
        if reason is None:
            usable.append(name)
        else:
            skipped.append({'name': name, 'reason': reason})
    return usable, skipped


def spread(usable, closures):
    """{piece: builder}: each piece of work (a system to build; any sortable
    key) to one of its ``usable`` builders ({piece: [names, preferred
    first]}), the one that has the fewest derivations to handle once it is
    added (``closures``: {piece: set of the derivations it needs});
    dependencies already given to a builder count once. The biggest closures
    are placed first; ties go to the earlier builder of the list."""
    load = {}
    placed = {}
    for drv in sorted(usable, key=lambda d: (-len(closures.get(d) or ()), d)):
        names = usable[drv]
        if not names:
            continue
        need = closures.get(drv) or {drv}

        def cost(name, need=need, names=names):
            return (len(load.get(name, set()) | need), names.index(name))
        best = min(names, key=cost)
        load[best] = load.get(best, set()) | need
        placed[drv] = best
    return placed


def no_builder_message(skipped):
    """The failure of a host no builder can build for."""
    return 'no builder can build it: %s' % '; '.join(
        '%s: %s' % (s['name'], s['reason']) for s in skipped)
