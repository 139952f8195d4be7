# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What nix_activate's controller parts share: the timing of a look at the
target, the lost connection, the host's session (``HostSession``: a target
program with a time limit, a new login), the task's phases (``Timeline``) and
the task itself (``ActivateTask``: its arguments and where it runs).

The parts (plugin_utils/activation/_detached_run.py, _health_run.py,
_reboot_run.py, _activation.py, _later_states.py) each get an
``ActivateTask`` and the parts they use, and hold no state of each other."""

import time

from ansible import constants as C
from ansible.errors import AnsibleConnectionFailure

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _diagnosis, _probe, _reached
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (
    AddressError, NoAnswer, bare_address)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host_key_judge import drop_master

# A look at a run waits on the target up to POLL_WAIT s for it to move on (one
# session instead of a poll every half second); it may take LOOK_TIMEOUT s
# more before the connection counts as lost (a mux session over a dead link
# never ends). The launch waits up to 10 s for the runner's first status,
# then up to LAUNCH_WAIT s for the run to end or await its confirmation.
POLL_WAIT = 5
RETRY_INTERVAL = 2.0
LOOK_TIMEOUT = 10
LAUNCH_TIMEOUT = 30
LAUNCH_WAIT = 10
# The launch session of a host with several addresses (nix_target_hosts)
# gives up after this long: its new system may have moved it, which leaves
# the session hanging on a dead link (a lost launch is followed anew).
MOVING_LAUNCH_TIMEOUT = LAUNCH_WAIT + 10
# Seconds each address of such a host has to answer when a login failed
# (HostSession.next_address): the current one, then the others in order.
NEXT_ADDRESS_TIMEOUT = 3
# While a host reboots: seconds between looks for its new boot id.
BOOT_LOOK_INTERVAL = 2.0


class ConnectionLost(NixdeployError):
    """The host gave no answer (a dead link, a reboot): the run goes on."""

    def __init__(self, *args, **context):
        context.setdefault('connection_lost', True)
        super(ConnectionLost, self).__init__(*args, **context)


class NotReached(ConnectionLost):
    """ssh could not connect for the task's first program on the host, and
    tried only once: nothing of the task ran there, so there is no run to
    follow."""


class HostSession:
    """The host (``target``: plugin_utils/host/_host.py ``Host``) as
    nix_activate uses it: ``sh`` runs one of its target programs over the
    host's connection, with become and a time limit, and reads what it
    reported; ``new_login`` makes the next one log in anew;
    ``lost`` counts the connections the task lost (its result's
    ``lost_connections``); ``dropped`` keeps the notes of the values the
    target reported that were not what they must be (each once)."""

    def __init__(self, target, display, addresses=()):
        self.target = target
        self._display = display
        self.lost = 0
        self.dropped = []
        # the host's addresses in order (nix_target_hosts, as ssh takes
        # them), for a look or confirmation whose login fails where the host
        # was reached; one that is no address nix_eval refused already
        self.addresses = []
        for item in addresses or ():
            try:
                address = bare_address(item)
            except AddressError:
                continue
            if address not in self.addresses:
                self.addresses.append(address)

    def note(self, message, verbosity=3):
        """``message`` for -vvv (``verbosity`` 2: -vv)."""
        (self._display.vv if verbosity == 2 else self._display.vvv)('nix_activate: %s' % message)

    def count_lost(self):
        self.lost += 1

    def next_address(self):
        """After a failed login, for a host with several addresses: a new
        login, at the first of its addresses that answers a short probe,
        the current one first (a look that failed on a restarting sshd
        stays), then the others in the order of nix_target_hosts; it is
        kept for the rest of the run. A new system may move the host (a new
        LAN address, a tunnel that comes up): its confirmation must still
        find it. The address, or None for a host with one address (the
        caller logs in anew itself)."""
        if len(self.addresses) < 2:
            return None
        current = self.target.address
        order = [current] + [a for a in self.addresses if a != current]
        self.new_login()
        # at an address but its own, only where the host's own key answers
        # (_probe.reach): another machine there is passed over
        address, _tried = _probe.reach(self.target, order, timeout=NEXT_ADDRESS_TIMEOUT)
        if address is None or address == current:
            return current
        alias = self.target.move_to(address)
        _reached.keep_reached(C.DEFAULT_LOCAL_TMP, self.target.name, address, alias)
        self.note('the host answers at %s now' % address, verbosity=2)
        return address

    def _never_reached(self, text):
        """Whether ``text`` (why ssh failed) means that nothing of this
        task ran on the host: no program of the task ran there before, ssh
        could not connect, Ansible tried once, and the host has no other
        address to try (one that moves is followed at its next address)."""
        target = self.target
        return (_probe.never_connected(text) and len(self.addresses) < 2
                and not target.reached and not target.tries_again())

    def new_login(self):
        """Drop the ssh master: the next command logs in anew."""
        try:
            drop_master(self.target.connection)
        except Exception as exc:  # pylint: disable=broad-except
            self.note('connection reset failed: %s' % exc)

    def sh(self, script, timeout=LOOK_TIMEOUT):
        """Run ``script`` (a rendered ``_script.Program``) on the target
        with sh: (out, values, log), ``out`` holding rc, stdout (an
        ``_script.Output``, carrying the program's marker) and stderr;
        ConnectionLost when the connection fails or gives no answer within
        ``timeout`` seconds."""
        try:
            rc, stdout, stderr = self.target.sh(script, sudoable=True, timeout=timeout)
        except NoAnswer as exc:
            # A session over a link that died never ends by itself: let the
            # next command open a fresh connection instead.
            self.new_login()
            raise ConnectionLost(str(exc))
        except AnsibleConnectionFailure as exc:
            text = str(exc).strip()
            if self._never_reached(text):
                raise NotReached(text)
            raise ConnectionLost(text)
        # the output keeps the marker of the program that printed it
        # (plugin_utils/host/_script.py): only its lines are values
        stdout = script.output(stdout)
        out = {'rc': rc, 'stdout': stdout, 'stderr': stderr}
        values, log = script.parse(stdout)
        self.keep_dropped(values.dropped)
        return out, values, log

    def keep_dropped(self, notes):
        """Keep ``notes`` (of values a program reported that were not what
        they must be), each once."""
        self.dropped.extend(note for note in notes if note not in self.dropped)


class Timeline:
    """The task's start and its ``phases`` (name, start, end, outcome), in
    the order they ran. Results hold the list itself, so a phase added later
    (the post-activation keys) reaches a result made before it."""

    def __init__(self, started=None):
        self.started = time.time() if started is None else started
        self.phases = []

    def elapsed(self):
        return time.time() - self.started

    def add(self, name, start, outcome):
        """A phase from ``start`` until now with ``outcome``."""
        self.phases.append({'name': name, 'start': round(start, 3),
                            'end': round(time.time(), 3), 'outcome': outcome})

    def add_run(self, name, values, start=None):
        """A phase whose outcome is a run's state (``values``: its status);
        by default it starts where the phase before ended (or the task)."""
        state = (values or {}).get('state', 'unknown')
        outcome = {'done': 'changed', 'awaiting_confirmation': 'changed',
                   'unchanged': 'ok'}.get(state, state)
        begin = start if start is not None else (
            self.phases[-1]['end'] if self.phases else self.started)
        self.add(name, begin, outcome)

    def last_name(self, default):
        return self.phases[-1]['name'] if self.phases else default


class ActivateTask:
    """One nix_activate task on one host: its validated arguments
    (``args``), ``host``, ``platform``, ``goal`` (the row of args' goal,
    module_utils/_platforms.py's ``Goal``: its fields say what the goal
    means, its ``name`` is the word), ``check_mode`` and ``diff``, the host's
    ``session`` and the ``timeline``."""

    def __init__(self, args, host, platform, goal, check_mode, diff, session, timeline):
        self.args = args
        self.host = host
        self.platform = platform
        self.goal = goal
        self.check_mode = check_mode
        self.diff = diff
        self.session = session
        self.timeline = timeline

    def where(self):
        """The profile and nix's folder, as every target program takes them."""
        return dict(profile=self.args['profile'], remote_nix_dir=self.args['remote_nix_dir'])

    def activation_options(self):
        """The task's options every activation of the run gets (the dry
        runs too): pre-switch checks, boot loader, backup extension."""
        args = self.args
        return dict(no_check=not args['pre_switch_checks'],
                    install_bootloader=args['install_bootloader'],
                    backup_extension=args['backup_extension'])


def script_error(out, values):
    """Why a target program failed: its own error, sudo's words, its output."""
    # with become over a pty, sudo's own words come on stdout
    said = '%s\n%s' % (out.get('stderr') or '', out.get('stdout') or '')
    become = _diagnosis.become_problem(said) if not values.get('error') else ''
    if become:
        return become
    detail = values.get('error') or (out.get('stderr') or out.get('stdout') or '').strip()
    return detail or 'the target script failed with exit code %s' % out.get('rc')


def unreachable(exc):
    """A lost connection (ConnectionLost ``exc``): a failed result a program
    can read, not an unreachable host."""
    return {'failed': True, 'changed': False, 'connection_lost': True,
            'msg': 'host unreachable: %s' % exc}


def not_reached(exc, phase):
    """The task's first program never reached the host (NotReached
    ``exc``): failed at once, nothing changed on it. A failed host, as a
    lost connection is (``unreachable``): the deploy role's rescue then
    records it in the custom stat, which Ansible's unreachable would skip."""
    return {'failed': True, 'changed': False, 'connection_lost': True, 'phase': phase,
            'msg': 'host unreachable: %s; nothing was started on it' % exc}
