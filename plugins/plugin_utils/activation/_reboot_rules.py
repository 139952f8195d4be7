# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reboots of NixOS hosts, and switches refused by switch inhibitors.

- Does the new system need a reboot? Compare, between ``/run/booted-system``
  and the new system, what only a boot loads: ``kernel``, ``initrd``,
  ``kernel-modules`` and ``systemd`` (as nixos-needsreboot and comin do).
  The target prints the links (``probe_script``, target/reboot-probe.sh);
  Python compares them.
- Did the host come back? Wait for a NEW ``/proc/sys/kernel/random/boot_id``
  within a timeout, never forever (colmena issue 166): ``wait_for_boot``
  takes the reads, the clock and the sleep as callables.
- Was a switch refused? NixOS 25.11's pre-switch checks refuse a switch when
  switch inhibitors (systemd, dbus...) change: "Pre-switch check
  'switchInhibitors' failed", "Pre-switch checks failed", exit 1, nothing
  changed. ``switch_refusal`` reads that from the activation's log.

No connection here: the action plugin runs the scripts and passes the output.
"""

import re
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_fields import (
    FIELDS)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._script import (
    LIBRARY, parse, render)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    fields_of, read)

# What only a boot loads (links in a NixOS toplevel).
BOOT_PARTS = ('kernel', 'initrd', 'kernel-modules', 'systemd')
BOOTED = '/run/booted-system'
# What NixOS's own check compares between the booted and a running system
# (system.autoUpgrade's allowReboot): a host whose running system differs
# from the booted one in these needs a reboot to run it all (nix_status).
RUNNING_NEEDS_BOOT = ('initrd', 'kernel', 'kernel-modules')

# The messages of switch-to-configuration's pre-switch checks (nixpkgs PRs
# 473282, 477561): one line per failed check, then the summary line.
REFUSAL_MARK = 'Pre-switch checks failed'
_CHECK_FAILED = re.compile(r"Pre-switch check '([^']+)' failed")
_CHANGES_START = 'There are changes to critical components of the system'
_CHANGES_END = 'Switching into this system is not recommended'
_CHANGE = re.compile(r'^\s*(\S+) : (.*?) -> (.*?)\s*$')


def probe_script(new_path=None):
    """The program (target/reboot-probe.sh) printing the boot id, booted and
    current system and the boot parts of the booted system and ``new_path``."""
    return render('reboot-probe.sh', {'NEW': new_path, 'BOOT_PARTS': ' '.join(BOOT_PARTS)},
                  FIELDS)


_REQUEST = 'reboot-request.sh'
# what the request reports, read as reboot_requested reads it (by its marker)
_REQUEST_FIELDS = fields_of([LIBRARY, _REQUEST], FIELDS)


def request_script():
    """The program (target/reboot-request.sh) asking the host to reboot."""
    return render(_REQUEST, fields=FIELDS)


def boot_id_script():
    """The program (target/reboot-boot-id.sh) printing the boot id."""
    return render('reboot-boot-id.sh', fields=FIELDS)


def short(path):
    """A store path's name without its hash (for messages)."""
    if not path:
        return 'none'
    parts = path.split('/')
    if len(parts) > 3 and parts[1] == 'nix' and parts[2] == 'store' and len(parts[3]) > 33:
        return '/'.join([parts[3][33:]] + parts[4:])
    return path


def reboot_reasons(values):
    """(needed, reasons) from a probe's values: needed is None when the host
    cannot tell (no /run/booted-system), else whether any boot part differs;
    reasons say which, e.g. 'kernel: linux-6.6/bzImage -> linux-6.12/bzImage'."""
    if not values.get('booted'):
        return None, ['%s is missing: cannot tell what was booted' % BOOTED]
    reasons = []
    for part in BOOT_PARTS:
        old = values.get('booted_' + part) or None
        new = values.get('new_' + part) or None
        if old != new:
            reasons.append('%s: %s -> %s' % (part, short(old), short(new)))
    return bool(reasons), reasons


def wants_reboot(mode, needed):
    """Whether to reboot: ``mode`` is never/always/when-needed; ``needed``
    what ``reboot_reasons`` found (None: cannot tell, which does not reboot)."""
    if mode == 'always':
        return True
    return mode == 'when-needed' and bool(needed)


def reboot_requested(rc, stdout, lost, mark=None):
    """(requested, problem) after sending ``request_script``: a session cut
    by the reboot counts as requested; a refusal carries systemctl's words.
    ``stdout``: what the program printed, read with its marker ``mark`` (by
    default the one the ``_script.Output`` of a session carries)."""
    if lost:
        return True, None
    raw, words = parse(stdout, mark)
    values = read(raw, _REQUEST_FIELDS)
    if values.get('reboot_rc') == 0 or (rc == 0 and 'reboot_rc' not in values):
        return True, None
    words = printable(words.strip())
    return False, 'the reboot was refused (exit code %s)%s' % (
        values.get('reboot_rc', rc), ': %s' % words if words else '')


def wait_for_boot(read_boot_id, old_boot_id, timeout, sleep=time.sleep, clock=time.time,
                  interval=2.0):
    """Wait for the host to come back with a boot id other than
    ``old_boot_id``, for at most ``timeout`` seconds.

    ``read_boot_id(remaining)`` returns the host's boot id, or None or an
    exception when it cannot be reached (it should not take longer than
    ``remaining`` seconds). Without an ``old_boot_id`` only an id read after
    the host was seen down counts. Returns {back, boot_id, waited, went_down
    (seen unreachable at least once), looks, last_error}."""
    started = clock()
    deadline = started + timeout
    went_down, last_error, looks, current = False, None, 0, None
    while True:
        looks += 1
        remaining = max(deadline - clock(), 0.0)
        try:
            current = read_boot_id(remaining)
        except Exception as exc:  # pylint: disable=broad-except
            current, last_error = None, str(exc).strip() or type(exc).__name__
        current = (current or '').strip() or None
        if current is None:
            went_down = True
        elif current != old_boot_id and (old_boot_id or went_down):
            return {'back': True, 'boot_id': current, 'waited': round(clock() - started, 2),
                    'went_down': went_down, 'looks': looks, 'last_error': last_error}
        if clock() >= deadline:
            return {'back': False, 'boot_id': current, 'waited': round(clock() - started, 2),
                    'went_down': went_down, 'looks': looks, 'last_error': last_error}
        sleep(min(interval, max(deadline - clock(), 0.0)))


def not_back_message(wait, timeout):
    """Why a reboot wait failed, with what is known."""
    if wait['went_down']:
        known = 'it went down and did not answer again'
        if wait['last_error']:
            known += ' (last error: %s)' % wait['last_error']
    else:
        known = 'it answered all along with its old boot id: the reboot did not happen'
    return 'the host did not come back with a new boot id within %ss: %s' % (timeout, known)


def verify_boot(values, new_path, old_boot_id):
    """None when the host booted ``new_path`` in a new boot, else what is wrong."""
    if values.get('boot_id') and values.get('boot_id') == old_boot_id:
        return 'the host still has its old boot id %s' % old_boot_id
    booted = values.get('booted') or None
    if booted != new_path:
        return 'the host came back on %s, not on the new system %s' % (
            booted or 'an unknown system (no %s)' % BOOTED, new_path)
    return None


def switch_refusal(rc, log):
    """None, or what refused a switch: {checks (names of the failed
    pre-switch checks), inhibitors ([{name, old, new}]), lines}. Recognised
    by the pre-switch checks' own messages with exit code 1 (or unknown)."""
    if rc not in (None, '', 1, '1'):
        return None
    text = log or ''
    checks = _CHECK_FAILED.findall(text)
    if REFUSAL_MARK not in text and not checks:
        return None
    inhibitors, inside = [], False
    for line in text.splitlines():
        if _CHANGES_START in line:
            inside = True
            continue
        if _CHANGES_END in line:
            inside = False
            continue
        match = _CHANGE.match(line) if inside else None
        if match:
            inhibitors.append({'name': match.group(1), 'old': match.group(2),
                               'new': match.group(3)})
    lines = [line.strip() for line in text.splitlines()
             if _CHECK_FAILED.search(line) or REFUSAL_MARK in line or _CHANGE.match(line)]
    return {'checks': checks or ['(unnamed)'], 'inhibitors': inhibitors, 'lines': lines}


def describe_refusal(refusal):
    """'switchInhibitors (dbus-implementation: dbus -> broker)'."""
    what = ', '.join("'%s'" % name for name in refusal['checks'])
    if refusal['inhibitors']:
        what += ' (%s)' % '; '.join('%s: %s -> %s' % (i['name'], i['old'], i['new'])
                                    for i in refusal['inhibitors'])
    return what


def refusal_message(refusal, ways_out=None):
    """The failure of a refused switch: what refused it and the two ways out."""
    ways_out = ways_out or (
        'boot it and reboot (nix_reboot: when-needed does that and verifies the boot), '
        'or switch anyway with NIXOS_NO_CHECK=1 (nix_pre_switch_checks: false)')
    return ('the switch was refused by the pre-switch check %s; nothing was changed. '
            'Two ways out: %s' % (describe_refusal(refusal), ways_out))
