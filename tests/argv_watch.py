"""A watcher of every process's argv on this machine (the controller and the
lab's hosts, which share its /proc): what `ps` would show anyone there. Tests
that keep a secret out of argv run their job inside it."""

import glob
import threading
import time


class ArgvWatch:
    """Reads every process's argv on this machine (the controller and the lab's
    hosts, which share its /proc) while a job runs, and keeps each one that
    holds ``needle``: what `ps` would show anyone on the machine."""

    def __init__(self, needle):
        self.needle = needle.encode('utf-8')
        self.found, self.looks = [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.is_set():
            self.looks += 1
            for path in glob.glob('/proc/[0-9]*/cmdline'):
                try:
                    with open(path, 'rb') as handle:
                        argv = handle.read()
                except OSError:
                    continue
                if self.needle in argv:
                    self.found.append(argv.replace(b'\0', b' ')[:300])
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
