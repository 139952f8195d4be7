"""keys-probe.sh hashes the file it checked (issue 43): it used to test a
key's name (not a link, a regular file) and then hash by that name, so a swap
in between (the key's folder may belong to the key's owner) made root hash
another file, say another key, and report its digest.

The probe now opens the key once (fd 3), checks that the open file is the
regular file at that name, and hashes and reads the facts from fd 3. These
tests run the real probe with the local sh (dash) and busybox's sh, and make
the race deterministic with the probe's test-only ``TEST_PAUSE`` value (the
probe reads a line from the FIFO ``TEST_PAUSE.<n>`` at its n-th pause: before
it opens a key, after it opened it, and before it hashes it): the test swaps
the key for a link to another secret at each of those moments."""

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import _keys_target  # noqa: E402

CHECKED = b'the key that was checked\n'
OTHER = b'another secret, root only\n'


class Probe:
    """The probe of one key, run in the background; ``step(action)`` waits
    until it stops at its next pause, runs ``action`` there and lets it go."""

    def __init__(self, tmp_path, shell, mode='dash'):
        self.mode = mode
        self.folder = tmp_path / 'keys'
        self.folder.mkdir()
        self.key = str(self.folder / 'db')
        with open(self.key, 'wb') as handle:
            handle.write(CHECKED)
        os.chmod(self.key, 0o600)
        self.other = str(tmp_path / 'other')
        with open(self.other, 'wb') as handle:
            handle.write(OTHER)
        os.chmod(self.other, 0o640)
        self.fifo, self.pauses = str(tmp_path / 'pause'), 0
        for n in (1, 2, 3):
            os.mkfifo('%s.%d' % (self.fifo, n))
        self.nonce = _keys_target.new_nonce()
        self.program = _keys_target.probe_script([self.key], [self.key], False,
                                                 state_dir=str(tmp_path / 'state'),
                                                 test_pause=self.fifo)
        argv = shell + [self.program] if mode in ('proc-fd', 'no-fd') else shell + ['-c', self.program]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.proc.stdin.write(_keys_target.probe_input(self.nonce))
        self.proc.stdin.close()
        self.proc.stdin = None  # sent: communicate() must not flush it again

    def step(self, action=None):
        """Wait (10 s at most) for the probe to open its next pause's FIFO,
        do ``action``, then send the line it waits for."""
        self.pauses += 1
        deadline = time.monotonic() + 10
        while True:
            try:
                fd = os.open('%s.%d' % (self.fifo, self.pauses), os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            assert self.proc.poll() is None, 'the probe ended before this pause'
            assert time.monotonic() < deadline, 'the probe never reached its pause'
            time.sleep(0.005)
        try:
            if action:
                action()
            os.write(fd, b'go\n')
        finally:
            os.close(fd)

    def swap_for_link(self):
        """What the key's owner does: the key's name becomes a link to the other secret."""
        os.rename(self.key, self.key + '.moved')
        os.symlink(self.other, self.key)

    def swap_back(self):
        """... and a regular file at the name again (a new one: another inode)."""
        os.unlink(self.key)
        with open(self.key, 'wb') as handle:
            handle.write(CHECKED)
        os.chmod(self.key, 0o600)

    def result(self):
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        _values, stats, _stale = _keys_target.parse(out.decode(), self.program)
        return stats[0], out.decode()

    def digest(self, content):
        return hashlib.sha256(self.nonce.encode() + content).hexdigest()


def busybox_shell(tmp_path):
    """busybox's sh with busybox's applets only on PATH (a busybox target)."""
    folder = tmp_path / 'bb'
    folder.mkdir()
    applets = subprocess.run(['busybox', '--list'], stdout=subprocess.PIPE, check=True,
                             universal_newlines=True).stdout.split()
    for applet in applets:
        os.symlink(shutil.which('busybox'), str(folder / applet))
    return folder


# A target without /dev/fd (the probe then reads /proc/self/fd/3), and one
# with neither (it checks the name again after the open): dash in a mount
# namespace of its own where /dev holds only null (and /proc is empty).
HIDE = r'''
mkdir -p "$DEVDIR" && : >"$DEVDIR/null" && mount --bind /dev/null "$DEVDIR/null" &&
  mount --bind "$DEVDIR" /dev || exit 97
if [ "$HIDE_PROC" = 1 ]; then mount -t tmpfs none /proc || exit 97; fi
exec sh -c "$1"
'''


def hidden(tmp_path, monkeypatch, proc):
    if os.geteuid() != 0 or shutil.which('unshare') is None:
        pytest.skip('needs root and unshare (a mount namespace without /dev/fd)')
    monkeypatch.setenv('DEVDIR', str(tmp_path / 'dev'))
    monkeypatch.setenv('HIDE_PROC', '1' if proc else '0')
    return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', HIDE, 'hide']


@pytest.fixture(params=['dash', 'busybox', 'proc-fd', 'no-fd'])
def probe(request, tmp_path, monkeypatch):
    if request.param == 'dash':
        made = Probe(tmp_path, ['sh'])
    elif request.param in ('proc-fd', 'no-fd'):
        made = Probe(tmp_path, hidden(tmp_path, monkeypatch, request.param == 'no-fd'),
                     request.param)
    else:
        if shutil.which('busybox') is None:
            pytest.skip('no busybox')
        folder = busybox_shell(tmp_path)
        monkeypatch.setenv('PATH', str(folder))
        made = Probe(tmp_path, [str(folder / 'sh')], 'busybox')
    yield made
    if made.proc.poll() is None:
        made.proc.kill()
        made.proc.wait()


def test_a_swap_after_the_check_still_hashes_the_checked_file(probe):
    probe.step()                       # before the open
    probe.step()                       # opened, before the check of what is open
    probe.step(probe.swap_for_link)    # checked, before the hash: the name now leads elsewhere
    stat, out = probe.result()
    # the digest and the facts are those of the file that was checked
    assert stat['kind'] == 'file' and stat['digest'] == probe.digest(CHECKED), out
    assert stat['mode'] == '0600'
    assert probe.digest(OTHER) not in out


def test_a_swap_before_the_open_is_seen_as_the_link_it_is(probe):
    probe.step(probe.swap_for_link)    # the name is a link when the probe opens it
    probe.step()                       # opened (through the link), before the check
    stat, out = probe.result()
    assert stat == {'kind': 'link', 'listed': False}, out
    assert probe.digest(OTHER) not in out


def test_a_link_put_back_by_a_file_after_the_open_is_no_file(probe):
    if probe.mode == 'no-fd':
        # without /dev/fd and /proc, the open file cannot be looked at: the
        # name checked again after the open narrows the window, no more
        pytest.skip('a target with neither /dev/fd nor /proc cannot tell')
    # opened through the link (the other secret), then a regular file at the
    # name again before the check: the open file is not the one at the name
    probe.step(probe.swap_for_link)
    probe.step(probe.swap_back)
    stat, out = probe.result()
    assert stat == {'kind': 'changed', 'listed': False}, out
    assert probe.digest(OTHER) not in out and probe.digest(CHECKED) not in out


def test_without_a_swap_the_key_is_hashed(probe):
    probe.step()
    probe.step()
    probe.step()
    stat, _out = probe.result()
    assert stat['kind'] == 'file' and stat['digest'] == probe.digest(CHECKED)


def test_the_uploader_refuses_a_key_that_changed_while_probed():
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import _keys
    key = _keys.normalize_key('db', {'text': 'x'})
    with pytest.raises(_keys.KeysError, match="key 'db': /run/keys/db changed while it was probed"):
        _keys_target.plan(key, 'a' * 64, {'kind': 'changed', 'listed': True})
