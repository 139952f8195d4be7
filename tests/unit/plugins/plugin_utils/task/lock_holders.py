"""Real processes that hold a flock and never let go (``holders``, a
fixture): what the bounded lock waits of the batch machinery are tested
against (test_wait_bounds.py, test_serial.py, copy/test_copy_bounds.py)."""

import subprocess
import sys

import pytest

# the holder: takes the lock, says so, and sleeps until it is killed
_HOLD = ('import fcntl, sys, time\n'
         'handle = open(sys.argv[1], "a")\n'
         'fcntl.flock(handle, fcntl.LOCK_EX)\n'
         'print("held", flush=True)\n'
         'time.sleep(3600)\n')


class LockHolder:
    """A real process holding an exclusive flock on ``path`` until ``stop``
    (its pid killed)."""

    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, '-c', _HOLD, str(path)],
                                     stdout=subprocess.PIPE, universal_newlines=True)
        assert self.proc.stdout.readline().strip() == 'held'

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def holders():
    """Start ``LockHolder``s with ``holders(path)``; all stopped after the test."""
    started = []

    def hold(path):
        started.append(LockHolder(path))
        return started[-1]
    yield hold
    for holder in started:
        holder.stop()
