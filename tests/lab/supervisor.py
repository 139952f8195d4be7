"""A lab's power supervisor: reboots the hosts that ask for it.

One per lab, started by ``Lab.up`` (its pid in state.json) and stopped first
by ``Lab.down``. A host asks from inside: its ``reboot`` or ``systemctl
reboot`` (the lab's systemctl.sh) writes ``/run/lab-power/request``, which is
the host folder's ``power/request`` out here; ``Lab.reboot`` writes the same
file from outside. For a request the supervisor, outside the host:

  reboot    stops every process in the host's network namespace (by pid),
            keeps it down ``down_seconds``, then boots it again (host_init.sh:
            new mount namespace and /run, new boot id, boot activation, sshd),
            unless ``comes_back`` is false: then the host stays off
  power-cut as reboot, but every process is SIGKILLed at once: nothing
            gets the shutdown's SIGTERM and its moment to finish
  poweroff  stops it; it stays off
  power-on  boots a host that is off

Systemd hosts (nspawn.py) are not this supervisor's: each has a keeper of
its own that reads its requests and restarts its container.

Usage: python supervisor.py LABDIR (it ends when LABDIR's state.json goes).
"""

import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tests.lab.lab import POWER_DEFAULTS, start_host, stop_netns  # noqa: E402

POLL = 0.1


def log(text):
    sys.stdout.write('%s %s\n' % (time.strftime('%H:%M:%S'), text))
    sys.stdout.flush()


def settings(host):
    found = dict(POWER_DEFAULTS)
    try:
        with open(os.path.join(host['dir'], 'power.json')) as handle:
            found.update(json.load(handle))
    except (OSError, ValueError):
        pass
    return found


def set_state(host, state):
    path = os.path.join(host['dir'], 'power.state')
    with open(path + '.tmp', 'w') as handle:
        handle.write(state + '\n')
    os.rename(path + '.tmp', path)


def power_state(host):
    try:
        with open(os.path.join(host['dir'], 'power.state')) as handle:
            return handle.read().strip()
    except OSError:
        return 'up'


class Supervisor:
    def __init__(self, labdir):
        self.labdir = labdir
        self.state_path = os.path.join(labdir, 'state.json')
        self.hosts, self.mtime = {}, None
        self.busy = set()
        self.children = []
        self.lock = threading.Lock()

    def _reload(self):
        try:
            mtime = os.stat(self.state_path).st_mtime
            if mtime != self.mtime:
                with open(self.state_path) as handle:
                    self.hosts = json.load(handle).get('hosts', {})
                self.mtime = mtime
        except (OSError, ValueError):
            pass

    def run(self):
        log('supervising %s' % self.labdir)
        while os.path.exists(self.state_path):
            self._reload()
            for name, host in self.hosts.items():
                if host.get('systemd'):
                    continue  # a systemd host's keeper powers it (nspawn.py)
                with self.lock:
                    if name in self.busy:
                        continue
                request = os.path.join(host['dir'], 'power', 'request')
                try:
                    with open(request) as handle:
                        action = handle.read().strip()
                    os.unlink(request)
                except OSError:
                    continue
                with self.lock:
                    self.busy.add(name)
                threading.Thread(target=self._cycle, args=(name, host, action),
                                 daemon=True).start()
            with self.lock:
                # reap the inits of hosts that were stopped again
                self.children = [c for c in self.children if c.poll() is None]
            time.sleep(POLL)
        log('state gone: exiting')

    def _cycle(self, name, host, action):
        try:
            power = settings(host)
            if action in ('reboot', 'poweroff', 'power-cut'):
                log('%s: %s' % (name, action))
                set_state(host, 'down')
                stop_netns([host['netns']], grace=0 if action == 'power-cut' else 2.0)
                if action == 'poweroff' or not power['comes_back']:
                    set_state(host, 'off')
                    log('%s: off' % name)
                    return
                time.sleep(float(power['down_seconds']))
            elif action == 'power-on':
                if power_state(host) != 'off':
                    log('%s: power-on ignored, the host is %s' % (name, power_state(host)))
                    return
            else:
                log('%s: unknown request %r' % (name, action))
                return
            env = {'LAB_BOOT_FALLBACK': '1'} if power['fallback'] else {}
            proc = start_host(host, self.labdir, env=env)
            with self.lock:
                self.children.append(proc)
            log('%s: booted (pid %d)' % (name, proc.pid))
        except Exception as exc:  # pylint: disable=broad-except
            log('%s: %s failed: %r' % (name, action, exc))
        finally:
            with self.lock:
                self.busy.discard(name)


if __name__ == '__main__':
    Supervisor(sys.argv[1]).run()
