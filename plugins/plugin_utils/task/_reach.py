# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The login probe of a deploy's first task, nix_eval.

``start`` logs in to the host in a thread while its batch is evaluated
(plugin_utils/host/_probe.py ``reach``: each of its addresses in turn, with
its own connection); ``finish`` reads the answer after the evaluation:

- reached at its ``ansible_host``: the result is the evaluation's, with
  the generation its system profile is on where the probe could read it
  (``probe.generation``: the "before" of a host that fails or stops later);
- reached at another of its ``nix_target_hosts``: every later task of the
  collection reaches the host there (the action base: ``_reached.use_reached``);
- either way the address is kept for the run, where the batch's work for
  other hosts finds it (the cascade covers only hosts the probe reached);
- refused the login at one address and logged in at none: a failed host
  (a wrong ``ansible_user`` or key: the machine is there), before anything
  is built or copied for it;
- answered at its own address with a host key ssh refuses (changed, or
  not in known_hosts) and logged in at none: a failed host, in the words
  its copy would say, where Ansible's ssh checks the key as the probe does;
  a host whose key is not checked (its ``nix_host_key_unchecked`` opt-out,
  or none, which its phases refuse) is taken as reached there: Ansible's
  ssh may log in where the probe's own cannot, and the phases judge it;
- reached at none: the host is Ansible's ``unreachable`` (the recap's
  ``unreachable=``, AWX's host summary), which ends it for the play before
  anything is built or copied for it; with ``nix_unreachable: fail`` it is a
  failed host instead, so that the run fails (the others still finish).

No probe when there is no ssh address to try (a local or container
connection), when the probe is off (``nix_probe_timeout: 0``; the publish
role sets it, since publishing logs in to no host), or when the run's tags
select no phase that logs in to the host (``login_phases``: ``--tags eval``,
or ``--tags build`` with the build on the controller or on builders). A
probe there would only call a host unreachable that the run never needed.
"""

import threading
import time

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _host_key_judge, _probe, _reached
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._script import new_mark
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (
    AddressError, Host, bare_address, inventory_places)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _stats
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import host_message

# nix_eval's options for the probe: the batch's evaluation never sees them
OPTIONS = ('target_hosts', 'unreachable', 'probe_timeout')
# what nix_unreachable may say
UNREACHABLE = ('skip', 'fail')
# The deploy role's phases after the evaluation, each selected by the tag of
# its name (roles/deploy/tasks), and whether it logs in to the host: the
# build only when it runs on the host (nix_build_on: target), which the
# caller knows; copy, keys and activate always.
LOGIN_PHASES = ('build', 'copy', 'keys', 'activate')
# the deploy role's task for this one is tagged `never` too: it runs only
# when asked for by name (the activation uploads keys in any other run)
ASKED_BY_NAME = frozenset(('keys',))
# every tag the deploy role's tasks carry, and Ansible's words for "all of
# them": a run tag outside these is the user's own, whose tasks may log in
ROLE_TAGS = frozenset(LOGIN_PHASES + ('eval', 'always', 'never', 'all', 'tagged'))


class Probe(object):
    """One host's probe, running in a thread of the host's worker."""

    def __init__(self, target, addresses, timeout, master=None, keys_checked=False,
                 profile=None):
        self.target, self.addresses, self.timeout = target, addresses, timeout
        self.master, self.keys_checked = master, keys_checked
        # the generation's line is framed with a mark of this probe's own
        self.mark = new_mark()
        self.program = _probe.probe_program(profile, self.mark)
        # what the login's program printed (read only for its framed line)
        self.heard = {}
        self.answer = self.error = self.ended = None
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name='nixdeploy-probe')
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        try:
            self.answer = _probe.reach(self.target, self.addresses, self.timeout, self.master,
                                       self.keys_checked, self.program, self.heard)
        except Exception as exc:  # pylint: disable=broad-except
            # the thread must answer (a bug of the probe is no unreachable
            # host): the host is taken as reached, its phases say the rest
            self.answer = (self.addresses[0], [])
            self.error = exc
        self.ended = time.monotonic()

    def wait(self):
        """(address or None, [Tried]) once the probe ended; bounded: each
        address has its time limit (and a few seconds for ssh to die)."""
        self._thread.join((self.timeout + 6) * len(self.addresses) + 5)
        if self.answer is None:
            return None, [_probe.Tried(self.addresses[-1], 'timeout', 'the probe gave no answer',
                                       time.monotonic() - self.started)]
        return self.answer

    def generation(self):
        """The generation the host's system profile is on, as the login
        read it, or None (not read, not logged in, no such profile)."""
        return _probe.generation_of(self.heard.get('stdout'), self.mark)


def login_phases(task_vars):
    """The phases of ``LOGIN_PHASES`` the run's tags select (a tuple, in
    order); all of them when a run tag is none of the deploy role's (a
    playbook of the user's own, whose tagged tasks may log in anywhere)."""
    run = set(task_vars.get('ansible_run_tags') or ['all'])
    skip = set(task_vars.get('ansible_skip_tags') or ())
    if not run <= ROLE_TAGS:
        return LOGIN_PHASES
    every = bool(run & {'all', 'tagged'})
    return tuple(phase for phase in LOGIN_PHASES if phase not in skip and (
        phase in run or every and phase not in ASKED_BY_NAME))


def needs_login(task_vars, builds_on_target):
    """Whether a phase the run's tags select logs in to the host: copy, keys
    or activate, or the build when ``builds_on_target()`` (asked only then)
    says it runs on the host."""
    phases = login_phases(task_vars)
    return any(phase != 'build' for phase in phases) or (
        'build' in phases and builds_on_target())


def start(connection, task_vars, args, builds_on_target=lambda: False, profile=None):
    """A started ``Probe`` of the task's host (``connection``: the task's
    Ansible connection), or None when there is nothing to probe (see the
    module's docstring; ``builds_on_target``: whether the host's build runs
    on it, asked only when the build is the one phase that could log in;
    ``profile``: the platform's system profile, whose generation the login
    reads, where the inventory gives the platform); AddressError for a
    ``nix_target_hosts`` item that is no address (the host fails, naming
    it)."""
    timeout = args.get('probe_timeout')
    if not timeout or timeout <= 0 or not needs_login(task_vars, builds_on_target):
        return None
    try:
        target = Host.from_connection(connection, task_vars)
        # the options as the later phases check them: one they refuse (host
        # key checking off without the opt-out) fails the host there, with
        # the phase's own message; the probe does not guess
        target.ssh_options()
    except NixdeployError:
        return None
    # [] where Ansible's ssh checks the host's key: a key the probe's ssh
    # refuses is refused by every phase too
    problems = _host_key_judge.connection_problems(connection)
    # the master the host's later tasks ride, opened by the probe's login
    master = _host_key_judge.probe_master(connection, problems)
    # outside the try: a bad item of the list fails the host, naming it
    return Probe(target, addresses_of(target, args.get('target_hosts')), timeout, master,
                 keys_checked=problems == [], profile=profile)


def addresses_of(target, target_hosts):
    """The addresses to try, in order: ``nix_target_hosts`` as ssh takes
    each one (brackets and spaces off; AddressError names an item that is
    no address), after the connection's own address when the list lacks it
    (an ``ansible_host`` of host_vars or ``-e`` is tried first)."""
    addresses = []
    for index, item in enumerate(target_hosts or ()):
        if not isinstance(item, str) or not item.strip():
            raise AddressError('nix_target_hosts[%d] is %r, not an address' % (index, item))
        address = bare_address(item, 'nix_target_hosts[%d]' % index)
        if address not in addresses:
            addresses.append(address)
    if target.address not in addresses:
        addresses.insert(0, target.address)
    return addresses


def finish(action, connection, probe, args, result):
    """``result`` (the host's evaluation, by ``action``) as the probe's
    answer makes it; a later address is where ``connection`` goes."""
    if probe is None:
        return result
    address, tried = probe.wait()
    _say_the_probe(action, probe, address, tried, result)
    if address is not None:
        return _reached_at(action, connection, probe, address, result)
    # the message says ssh's words for each address: the figures keep them once
    for entry in result['probe']['tried']:
        entry.pop('said', None)
    refused = _refused_at_probe(action, probe, tried, result)
    if refused is not None:
        return refused
    return _unreachable(action, args, tried, result)


def _say_the_probe(action, probe, address, tried, result):
    """What the probe found, in ``result``: its failure as a warning, the
    owners of other machines' keys, its own figures (``probe``)."""
    if probe.error is not None:
        # a bug of the probe, not the host's: said, never hidden
        result.setdefault('warnings', []).append(
            '%s: the login probe failed (%s); the host is taken as reached'
            % (action.host, probe.error))
    # where another machine's key answered: whose it is, by the inventory
    _probe.name_owners(action.host, tried, lambda: inventory_places(
        (action.task_vars or {}).get('hostvars')))
    # the probe's own time (the evaluation beside it may have taken longer)
    result['probe'] = {'address': address, 'tried': [t.as_dict() for t in tried],
                       'seconds': round((probe.ended or time.monotonic()) - probe.started, 2)}


def _reached_at(action, connection, probe, address, result):
    """The host answered at ``address``: kept for the run, and where
    ``connection`` goes when it is a later address."""
    # at a fallback address, the host's own key is the one that answered
    # (and must answer for the rest of the run)
    alias = probe.target.alias_at(address)
    # kept for the run: the batch's work for other hosts (the cascade)
    # reaches this one there, and waits for it
    _reached.keep_reached(C.DEFAULT_LOCAL_TMP, action.host, address, alias)
    result['address'] = address
    # the generation it is on now: what a later failure leaves it on
    result['probe']['generation'] = probe.generation()
    if address != probe.target.address:
        # a later address answered: the rest of the run goes there
        _reached.use_reached(connection, address, alias)
    return result


def _refused_at_probe(action, probe, tried, result):
    """The host's failure when a machine answered and refused it (its key
    or its login); None when none did."""
    refused = _probe.host_key_message(tried)
    if refused:
        # the host answered with a key ssh refuses: a failed host (its key
        # to check), never unreachable, and before its build
        return _refused_here(action, result, refused, connection_lost=False,
                             host_key_refused_at=[t.address for t in tried
                                                  if t.reason == _probe.HOST_KEY])
    refused = _probe.login_refused_message(probe.target, tried)
    if refused:
        # the machine is there and refuses the login: a failed host (the
        # user or key to fix), never unreachable, and before its build
        return _refused_here(action, result, refused, connection_lost=False,
                             login_refused_at=[t.address for t in tried
                                               if t.reason == _probe.LOGIN_REFUSED])
    return None


def _unreachable(action, args, tried, result):
    """No address answered: the host is unreachable, or failed when the
    task says ``unreachable: fail``."""
    message = _probe.unreachable_message(action.host, tried)
    if result.get('failed'):
        # said after the cause that ends the host here
        message += '; its evaluation failed too: %s' % (
            (result.get('msg') or '').split('\n')[0])
    if args.get('unreachable') == 'fail':
        result.pop('ansible_facts', None)
        return action.failed(result, message, connection_lost=True,
                             unreachable_at=[t.address for t in tried])
    for key in ('failed', 'ansible_facts'):
        result.pop(key, None)
    result.update(unreachable=True, changed=False, phase='eval',
                  unreachable_at=[t.address for t in tried],
                  msg=host_message(action.host, message))
    # no task of its own keeps its outcome as the custom stat: the others' do
    _stats.keep_unreached(action.host, result)
    return result


def _refused_here(action, result, message, **details):
    """The host's failure at the probe: the machine answered and refused
    (its login or its key), with its evaluation's own failure said after."""
    if result.get('failed'):
        message += '\n  its evaluation failed too: %s' % (result.get('msg') or '').split('\n')[0]
    result.pop('ansible_facts', None)
    return action.failed(result, message, **details)
