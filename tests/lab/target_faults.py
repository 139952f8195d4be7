"""Faults of the targets themselves (issue 30): a small ``/nix`` that fills up,
a garbage collection at a chosen moment, a stopped nix-daemon, a read-only
store, a sudo that asks for a password. ``Lab`` inherits these methods; each
works on plain hosts and on systemd hosts (nspawn.py) alike, is idempotent,
and ``Lab.down`` undoes what is left of it.

  host spec ``'store_size': '160M'``
      the host's ``/nix`` is a tmpfs of that size, mounted over the host
      folder's ``nix`` in the machine's mount namespace before the host first
      boots (so every boot of it, plain or systemd, binds that filesystem:
      it outlives reboots while the lab is up); ``down`` unmounts it,
      ``leftovers`` reports one that remains.
  ``fill_store(h, leave_bytes)`` / ``unfill_store(h)`` / ``store_free(h)``
      a filler file ``/nix/var/lab/fill`` (outside the store, on the same
      filesystem) sized so that only about ``leave_bytes`` stay free; only on
      hosts with a ``store_size`` (never the machine's own disk).
      ``fill_store_sh(leave_bytes)``: the same as sh, for a system's
      ``on_activate`` knob (the disk fills during the activation itself).
  ``gc(h)``
      ``nix-store --gc`` on the host, by its own Nix, as root (as ``app`` on
      nix-on-droid, whose single-user store it owns); returns the deleted paths.
  ``gc_when_valid(h, path)`` / ``fill_when_valid(h, path, leave_bytes)``
      a watcher process (its pid recorded under the lab's ``watchers/``,
      stopped by ``down``) that waits until ``path`` is valid in the host's
      store and no live Nix process holds it as a temporary root any more (the
      copy that brought it has ended), then collects garbage (or fills the
      store) at once: between a copy and the activation. ``.wait()`` returns
      the deleted paths (or the free bytes left); ``.result`` has the times.
  ``stop_daemon(h)`` / ``start_daemon(h)`` / ``daemon_running(h)``
      the host's nix-daemon (plain hosts: the recorded pid; systemd hosts:
      ``nix-daemon.socket`` and ``.service``). Root opens the store itself
      without a daemon (as on NixOS): only users that need it notice.
  ``set_store_read_only(h, True|False)`` / ``store_read_only(h)``
      an overlay with lower layers only (read-only at the filesystem level,
      EROFS for every writer) over ``/nix/store`` in the host's mount
      namespace; the daemon is restarted if it runs, so that it (and every
      root Nix, each of which unshares a copy of the namespace it starts in,
      and remounts a read-only *bind* writable: NixOS's own read-only store
      is no fault to Nix) sees it. A reboot ends it, as it would a remount.
  ``set_sudo_password(h, True|False)`` / ``sudo_asks_password(h)``
      the ``deploy`` user's sudo rule on that host asks for a password (which
      it has none of: ``sudo -n`` says "a password is required"). Plain hosts
      share the machine's /etc: a per-host sudoers file is bound over the
      lab's rule in the host's mount namespace (and again at each boot, by
      host_init.sh); a systemd host's own /etc copy is rewritten.
"""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

FILLER = '/nix/var/lab/fill'
SUDOERS = '/etc/sudoers.d/nixdeploy-lab'
SUDO_NOPASSWD = 'deploy ALL=(ALL) NOPASSWD: ALL\n'
SUDO_PASSWORD = ('# lab target fault: deploy\'s sudo asks for a password (it has none)\n'
                 'deploy ALL=(ALL) ALL\n')
RO_EMPTY = '/run/lab-ro-store-empty'
RO_SOURCE = 'lab-ro-store'
STORE_NAME = re.compile(r'^[0-9a-z]{32}-')
DELETING = re.compile(r"deleting '(/nix/store/[^']+)'")
SIZE = re.compile(r'^\s*(\d+)\s*([kmgKMG]?)i?[bB]?\s*$')
POLL = 0.02


def _lab():
    from tests.lab import lab
    return lab


def parse_size(value):
    """'160M', '1G', '512k' or a number of bytes -> bytes."""
    if isinstance(value, int):
        return value
    match = SIZE.match(str(value))
    if not match:
        raise _lab().LabError('store_size must be like 160M or 1G, not %r' % (value,))
    return int(match.group(1)) * {'': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30}[
        match.group(2).lower()]


def fill_store_sh(leave_bytes=0):
    """sh that fills the /nix it runs on until about ``leave_bytes`` are free
    (the filler ``unfill_store`` removes); for a system's ``on_activate``."""
    return ('lab_free=$(stat -f -c "%%a %%S" /nix | { read -r a s; echo $((a * s)); }); '
            'lab_fill=$((lab_free - %d)); '
            'if [ "$lab_fill" -gt 0 ]; then '
            'head -c "$lab_fill" /dev/zero >>%s 2>/dev/null || true; fi; '
            'echo "lab: /nix filled, $(stat -f -c "%%a %%S" /nix | '
            '{ read -r a s; echo $((a * s)); }) bytes free" >&2'
            % (int(leave_bytes), FILLER))


class Watcher:
    """A watcher process started by ``gc_when_valid``/``fill_when_valid``."""

    def __init__(self, lab, host, proc, out):
        self.lab, self.host, self.proc, self.out = lab, host, proc, out
        self.result = None

    @property
    def pid(self):
        return self.proc.pid

    def done(self):
        return self.proc.poll() is not None

    def wait(self, timeout=None):
        """The deleted paths (gc) or the free bytes left (fill), once it ran;
        LabError when the path never became valid or the action failed."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise _lab().LabError('watcher %d on %s still waiting after %ss'
                                  % (self.pid, self.host, timeout))
        _forget_watcher(self.lab, self.pid)
        try:
            with open(self.out) as handle:
                self.result = json.load(handle)
        except (OSError, ValueError):
            self.result = {'error': 'the watcher (pid %d) ended with %s and no result'
                                    % (self.pid, self.proc.returncode)}
        if self.result.get('error'):
            raise _lab().LabError('watcher on %s: %s' % (self.host, self.result['error']))
        return self.result['value']

    def stop(self):
        if not self.done():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _forget_watcher(self.lab, self.pid)


def _watchers_dir(lab):
    return os.path.join(lab.dir, 'watchers')


def _forget_watcher(lab, pid):
    try:
        os.unlink(os.path.join(_watchers_dir(lab), str(pid)))
    except OSError:
        pass


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return handle.read().split(b'\0')
    except OSError:
        return []


def _allocate(fd, size, want):
    """Grow the file from ``size`` to ``want`` bytes in chunks: a tmpfs
    refuses (and undoes) one allocation larger than what is free, which
    others' writes change meanwhile; what fits stays, as full as it gets."""
    chunk = 1 << 20
    while size < want and chunk >= 4096:
        step = min(chunk, want - size)
        try:
            os.posix_fallocate(fd, size, step)
            size += step
        except OSError:
            chunk //= 2


class TargetFaults:
    """The target fault knobs, as methods of ``Lab`` (see the module doc)."""

    # ------------------------------------------------------ store size
    @staticmethod
    def _check_store_size(spec):
        """Lab._host_specs: a host's ``store_size``, in bytes (or None)."""
        if spec.get('store_size') in (None, ''):
            spec['store_size'] = None
            return
        spec['store_size'] = parse_size(spec['store_size'])
        if spec['store_size'] < (8 << 20):
            raise _lab().LabError('host %s: store_size must be at least 8M (the host\'s '
                                  'own setup lives there)' % spec['name'])

    def _mount_store(self, host):
        """Lab._add_host, before the host's tree is made: its /nix a tmpfs."""
        if not host.get('store_size'):
            return
        nix = os.path.join(host['dir'], 'nix')
        os.makedirs(nix)
        _lab().sh(['mount', '-t', 'tmpfs', '-o', 'size=%d,mode=0755' % host['store_size'],
                   'lab-store-%s' % host['netns'], nix])

    def _unmount_stores(self):
        """Lab.down, once the hosts' processes are gone."""
        for host in self.hosts.values():
            if host.get('store_size'):
                nix = os.path.join(host['dir'], 'nix')
                for _attempt in range(20):
                    if not os.path.ismount(nix):
                        break
                    if _lab().sh(['umount', nix], check=False).returncode != 0:
                        time.sleep(0.1)
                if os.path.ismount(nix):
                    _lab().sh(['umount', '-l', nix], check=False)

    def _store_mounts(self):
        """Lab.leftovers: mounts of this lab's folder (its hosts' stores)."""
        prefix = self.dir.rstrip('/') + '/'
        with open('/proc/self/mounts') as handle:
            return [ln.split()[1] for ln in handle if ln.split()[1].startswith(prefix)]

    def _require_store_size(self, name):
        host = self.host(name)
        if not host.get('store_size'):
            raise _lab().LabError('host %s has no store_size: its /nix is the machine\'s '
                                  'disk, which the lab does not fill' % name)
        return host

    def store_free(self, name):
        """Bytes free on the host's /nix (for its users)."""
        stat = os.statvfs(os.path.join(self.host(name)['dir'], 'nix'))
        return stat.f_bavail * stat.f_frsize

    def _filler(self, name):
        return os.path.join(self.host(name)['dir'], FILLER.lstrip('/'))

    def fill_store(self, name, leave_bytes=0):
        """Fill the host's /nix (a ``store_size`` host) until about
        ``leave_bytes`` are free; returns the free bytes. Idempotent: the
        filler is resized."""
        self._require_store_size(name)
        path = self._filler(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            want = max(0, size + self.store_free(name) - int(leave_bytes))
            if want < size:
                os.ftruncate(fd, want)
            else:
                _allocate(fd, size, want)
        finally:
            os.close(fd)
        return self.store_free(name)

    def unfill_store(self, name):
        """Remove the filler (fill_store's or a fill_store_sh's)."""
        try:
            os.unlink(self._filler(name))
        except FileNotFoundError:
            pass
        return self.store_free(name)

    fill_store_sh = staticmethod(fill_store_sh)

    # ------------------------------------------------------ garbage collection
    def _store_user(self, name):
        return 'app' if self.host(name)['persona'] == 'nix-on-droid' else None

    def _store_entries(self, name):
        store = os.path.join(self.host(name)['dir'], 'nix', 'store')
        return set(n for n in os.listdir(store) if STORE_NAME.match(n))

    def gc(self, name, timeout=300):
        """``nix-store --gc`` on the host by its own Nix; the deleted paths."""
        before = self._store_entries(name)
        proc = self.run_in(name, ['nix-store', '--gc'], check=False, timeout=timeout,
                           user=self._store_user(name))
        if proc.returncode != 0:
            raise _lab().LabError('nix-store --gc on %s failed (%d): %s'
                                  % (name, proc.returncode, proc.stderr.strip()[-2000:]))
        deleted = set(DELETING.findall(proc.stderr + proc.stdout))
        deleted |= set('/nix/store/' + n for n in before - self._store_entries(name))
        return sorted(p for p in deleted if STORE_NAME.match(p[len('/nix/store/'):]))

    def _valid(self, name, path):
        return self.run_in(name, ['nix-store', '--check-validity', path], check=False,
                           user=self._store_user(name)).returncode == 0

    def _temp_rooted(self, name, path):
        """Whether a live Nix process holds ``path`` as a temporary root (its
        temproots file is locked while that process lives, as the GC tests)."""
        folder = os.path.join(self.host(name)['dir'], 'nix', 'var', 'nix', 'temproots')
        try:
            entries = os.listdir(folder)
        except OSError:
            return False
        needle = path.encode()
        for entry in entries:
            try:
                fd = os.open(os.path.join(folder, entry), os.O_RDWR)
            except OSError:
                continue
            try:
                with os.fdopen(os.dup(fd), 'rb') as handle:
                    if needle not in handle.read():
                        continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return True
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        return False

    def _watch(self, name, path, action, arg, timeout):
        self.host(name)
        folder = _watchers_dir(self)
        os.makedirs(folder, exist_ok=True)
        out = os.path.join(folder, 'result-%s-%d.json' % (name, int(time.time() * 1000)))
        log = open(os.path.join(folder, 'watchers.log'), 'ab')
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), 'watch', self.root, self.name, name,
             path, action, str(arg), str(timeout), out],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        with open(os.path.join(folder, str(proc.pid)), 'w') as handle:
            handle.write(out + '\n')
        return Watcher(self, name, proc, out)

    def gc_when_valid(self, name, path, timeout=600):
        """Collect garbage on the host the moment ``path`` is valid there and
        its copy has ended (see the module doc). ``.wait()``: deleted paths."""
        return self._watch(name, path, 'gc', 0, timeout)

    def fill_when_valid(self, name, path, leave_bytes=0, timeout=600):
        """Fill the host's /nix the moment ``path`` is valid there and its
        copy has ended. ``.wait()``: the free bytes left."""
        self._require_store_size(name)
        return self._watch(name, path, 'fill', int(leave_bytes), timeout)

    def _stop_watchers(self):
        """Lab.down: every watcher still running, by its recorded pid."""
        folder = _watchers_dir(self)
        if not os.path.isdir(folder):
            return
        for entry in os.listdir(folder):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if os.path.abspath(__file__).encode() in _cmdline(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                for _attempt in range(50):
                    if _lab()._pid_gone(pid):
                        break
                    time.sleep(0.05)
            _forget_watcher(self, pid)

    # ------------------------------------------------------ nix-daemon
    def daemon_running(self, name):
        host = self.host(name)
        if host.get('systemd'):
            proc = self.run_in(name, ['systemctl', 'is-active', 'nix-daemon.socket'],
                               check=False)
            return proc.stdout.strip() == 'active'
        pid = _lab()._read_pid(os.path.join(host['dir'], 'run', 'nix-daemon.pid'))
        return bool(pid) and not _lab()._pid_gone(pid)

    def stop_daemon(self, name):
        """Stop the host's nix-daemon (idempotent)."""
        host = self.host(name)
        if host.get('systemd'):
            self.run_in(name, ['systemctl', 'stop', 'nix-daemon.socket', 'nix-daemon.service'])
            return
        if not os.path.exists(os.path.join(host['dir'], 'multi-user')):
            raise _lab().LabError('host %s has no nix-daemon (single-user store)' % name)
        pid = _lab()._read_pid(os.path.join(host['dir'], 'run', 'nix-daemon.pid'))
        if pid and not _lab()._pid_gone(pid):
            os.kill(pid, signal.SIGTERM)
            for _attempt in range(100):
                if _lab()._pid_gone(pid):
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)

    def start_daemon(self, name):
        """Start the host's nix-daemon again (idempotent)."""
        host = self.host(name)
        if host.get('systemd'):
            self.run_in(name, ['systemctl', 'start', 'nix-daemon.socket'])
            return
        if not self.daemon_running(name):
            self._start_plain_daemon(name)

    def _start_plain_daemon(self, name):
        # as restart_daemon starts one (which first waits for the old pid to
        # be reaped: a stopped daemon's zombie may linger for seconds)
        host = self.host(name)
        pidfile = os.path.join(host['dir'], 'run', 'nix-daemon.pid')
        self.run_in(name, ['sh', '-c', 'setsid nix-daemon </dev/null >>%s 2>&1 & echo $! >%s'
                           % (os.path.join(host['dir'], 'log', 'nix-daemon.log'), pidfile)])
        host['daemon_pid'] = _lab()._read_pid(pidfile)
        self._save()

    # ------------------------------------------------------ read-only store
    def store_read_only(self, name):
        proc = self.run_in(name, ['cat', '/proc/self/mounts'])
        return any(ln.split()[:3] == [RO_SOURCE, '/nix/store', 'overlay']
                   for ln in proc.stdout.splitlines())

    def set_store_read_only(self, name, read_only=True):
        """The host's /nix/store read-only for everyone on it (or writable
        again). Idempotent."""
        if bool(read_only) == self.store_read_only(name):
            return
        if read_only:
            # two lower layers, no upper one: read-only at the filesystem level
            self.run_in(name, ['sh', '-c', 'mkdir -p %s && mount -t overlay %s -o lowerdir='
                               '/nix/store:%s /nix/store' % (RO_EMPTY, RO_SOURCE, RO_EMPTY)])
        else:
            self.run_in(name, ['umount', '-l', '/nix/store'])
        # the daemon (and its workers) keep the namespace they started with
        self._renew_daemon(name)

    def _renew_daemon(self, name):
        host = self.host(name)
        if host.get('systemd'):
            # socket activation starts the next one from the container's namespace
            self.run_in(name, ['systemctl', 'stop', 'nix-daemon.service'], check=False)
        elif os.path.exists(os.path.join(host['dir'], 'multi-user')) and \
                self.daemon_running(name):
            self.stop_daemon(name)
            self._start_plain_daemon(name)

    # ------------------------------------------------------ sudo
    def _sudoers_file(self, name):
        host = self.host(name)
        if host.get('systemd'):
            return os.path.join(host['dir'], 'machine', SUDOERS.lstrip('/'))
        return os.path.join(host['dir'], 'faults', 'sudoers')

    def sudo_asks_password(self, name):
        proc = self.run_in(name, ['sudo', '-n', 'true'], check=False, user='deploy')
        return proc.returncode != 0 and 'password' in proc.stderr

    def set_sudo_password(self, name, asks=True):
        """``deploy``'s sudo on the host asks for a password (or not)."""
        host = self.host(name)
        path = self._sudoers_file(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + '.tmp', 'w') as handle:
            handle.write(SUDO_PASSWORD if asks else SUDO_NOPASSWD)
        os.chmod(path + '.tmp', 0o440)
        os.rename(path + '.tmp', path)
        if host.get('systemd'):
            return
        # plain hosts: bound over the machine's rule in the host's namespace,
        # now and at each boot (host_init.sh sources faults/boot.sh)
        boot = os.path.join(host['dir'], 'faults', 'boot.sh')
        bound = self.run_in(name, ['sh', '-c', 'grep -q " %s " /proc/self/mounts' % SUDOERS],
                            check=False).returncode == 0
        if asks:
            _lab()._write(boot, '# lab target faults (target_faults.py)\n'
                                'mount --bind "$hostdir/faults/sudoers" %s\n' % SUDOERS)
            if not bound:
                self.run_in(name, ['mount', '--bind', path, SUDOERS])
        else:
            if os.path.exists(boot):
                os.unlink(boot)
            if bound:
                self.run_in(name, ['umount', SUDOERS])


# ---------------------------------------------------------------- watcher
def watch(root, lab_name, host, path, action, arg, timeout, out):
    from tests.lab.lab import Lab
    lab = Lab(lab_name, root=root)
    result = {'host': host, 'path': path, 'action': action, 'started': time.time()}
    deadline = time.time() + timeout
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_args: stopping.append(1))

    def write():
        with open(out + '.tmp', 'w') as handle:
            json.dump(result, handle)
        os.rename(out + '.tmp', out)

    try:
        folder = os.path.join(lab.host(host)['dir'], 'nix', 'store', os.path.basename(path))
        while not os.path.lexists(folder) or not lab._valid(host, path):
            if time.time() > deadline or stopping:
                result['error'] = '%s did not become valid on %s within %ss' % (
                    path, host, timeout)
                return write()
            time.sleep(POLL)
        result['valid_at'] = time.time()
        while lab._temp_rooted(host, path):
            if time.time() > deadline or stopping:
                result['error'] = 'a Nix process on %s held %s past %ss' % (host, path, timeout)
                return write()
            time.sleep(POLL)
        result['released_at'] = time.time()
        result['action_started'] = time.time()
        if action == 'gc':
            result['value'] = lab.gc(host)
        else:
            result['value'] = lab.fill_store(host, int(arg))
        result['finished'] = time.time()
    except Exception as exc:  # pylint: disable=broad-except
        result['error'] = '%s: %s' % (type(exc).__name__, exc)
    return write()


if __name__ == '__main__':
    if len(sys.argv) != 10 or sys.argv[1] != 'watch':
        sys.exit('usage: target_faults.py watch ROOT LAB HOST PATH gc|fill ARG TIMEOUT OUT')
    watch(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7],
          float(sys.argv[8]), sys.argv[9])
