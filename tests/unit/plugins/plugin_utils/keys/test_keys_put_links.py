"""keys-put.sh never follows a link and never opens by name a path another
account can swap (plugin_utils/keys/target/keys-put.sh): run for real as root on
this machine, with the key's owner played by the account ``nobody``, who owns
the key's folder and, at the moment root changes the key's owner and mode,
swaps every name it can in that folder for a link to a root-owned file. The
lab test tests/integration/plugins/action/test_nix_keys.py does the same
over ssh with the lab user ``app``."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import (  # noqa: E402
    _keys, _keys_target)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which('setpriv') is None,
                                reason='needs root and setpriv (another account plays the key owner)')
OWNER = 'nobody'
SECRET = b'the new key\n'
PRECIOUS = b'root only\n'

# What the key's owner does while root gives the key its owner and mode:
# every folder in the key's folder that is not its own (root's private
# folder) is renamed away and a link to a root folder put in its place;
# every other name becomes a link to the root-owned file.
ATTACK = r'''
cd "$KEYDIR" || exit 0
for entry in .[!.]* *; do
  [ -e "$entry" ] || [ -L "$entry" ] || continue
  if [ -d "$entry" ] && [ ! -L "$entry" ]; then
    mv "$entry" "moved.$entry" 2>/dev/null && ln -s "$ROOTDIR" "$entry"
  else
    rm -f "$entry" && ln -s "$PRECIOUS" "$entry"
  fi
done
'''


class Place:
    """A folder tree under /tmp (every account may reach it): the key's
    folder, a root-owned file and a root-owned folder."""

    def __init__(self):
        self.base = tempfile.mkdtemp(prefix='nixdeploy-keys-links.', dir='/tmp')
        os.chmod(self.base, 0o755)
        self.precious = os.path.join(self.base, 'precious')
        with open(self.precious, 'wb') as handle:
            handle.write(PRECIOUS)
        os.chmod(self.precious, 0o600)
        self.rootdir = os.path.join(self.base, 'rootdir')
        os.mkdir(self.rootdir, 0o700)
        self.state = os.path.join(self.base, 'state')

    def folder(self, path, owner='root', mode=0o755):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        shutil.chown(path, owner, 'root' if owner == 'root' else 'nogroup')
        return path

    def untouched(self):
        st = os.lstat(self.precious)
        with open(self.precious, 'rb') as handle:
            return (handle.read(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                    os.listdir(self.rootdir)) == (PRECIOUS, 0o600, 0, 0, [])

    def attacker_bin(self):
        """chown and chmod that let the key's owner act first."""
        folder = os.path.join(self.base, 'bin')
        os.mkdir(folder)
        for tool in ('chown', 'chmod'):
            real = shutil.which(tool)
            path = os.path.join(folder, tool)
            with open(path, 'w') as handle:
                handle.write('#!/bin/sh\nsetpriv --reuid=%s --regid=nogroup --clear-groups '
                             'sh -c \'%s\' >/dev/null 2>&1\nexec %s "$@"\n'
                             % (OWNER, ATTACK.replace("'", "'\\''"), real))
            os.chmod(path, 0o755)
        return folder

    def put(self, folder, user=OWNER, group='nogroup', name='key', path=None):
        key = _keys.normalize_keys({'k': {'text': SECRET.decode(), 'dest_dir': folder, 'name': name,
                                          'user': user, 'group': group, 'mode': '0640'}})[0]
        program = _keys_target.put_script(key, require_owner=True, state_dir=self.state)
        env = {'PATH': '%s/usr/bin:/bin:/usr/sbin:/sbin' % (path + ':' if path else ''),
               'HOME': '/root', 'KEYDIR': folder, 'ROOTDIR': self.rootdir,
               'PRECIOUS': self.precious}
        stdin = _keys_target.put_input(_keys_target.new_nonce(), SECRET)
        proc = subprocess.run(['sh', '-c', program], input=stdin, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60, check=False)
        values = program.parse(proc.stdout.decode())[0]
        return proc.returncode, values, os.path.join(folder, name)

    def remove(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def place():
    made = Place()
    yield made
    made.remove()


def test_a_folder_of_the_keys_owner_takes_the_key(place):
    folder = place.folder(os.path.join(place.base, 'keys'), owner=OWNER)
    rc, values, key = place.put(folder)
    assert rc == 0 and values.get('done') is True, values
    st = os.lstat(key)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o640, 65534)
    with open(key, 'rb') as handle:
        assert handle.read() == SECRET
    # no private folder left behind
    assert os.listdir(folder) == ['key']


def test_the_keys_owner_swapping_names_meanwhile_reaches_no_root_file(place):
    folder = place.folder(os.path.join(place.base, 'keys'), owner=OWNER)
    with open(os.path.join(folder, 'key'), 'wb') as handle:
        handle.write(b'old key\n')
    rc, values, key = place.put(folder, path=place.attacker_bin())
    # the key's name became a link: refused, and nothing was written through it
    assert rc == 3 and 'is not a regular file (any more)' in values['error'], values
    assert place.untouched()
    assert os.readlink(key) == place.precious


def test_without_a_swap_the_same_key_is_written(place):
    folder = place.folder(os.path.join(place.base, 'keys'), owner=OWNER)
    with open(os.path.join(folder, 'key'), 'wb') as handle:
        handle.write(b'old key\n')
    os.symlink(place.precious, os.path.join(folder, 'other'))
    rc, values, key = place.put(folder)
    assert rc == 0, values
    with open(key, 'rb') as handle:
        assert handle.read() == SECRET
    assert place.untouched()


@pytest.mark.parametrize('owner,mode,who', [
    (OWNER, 0o755, 'its owner nobody'),
    ('root', 0o775, 'the group nogroup'),
    ('root', 0o777, 'the group nogroup, every account'),
    ('root', 0o1777, 'the group nogroup, every account'),
])
def test_a_folder_others_can_write_is_refused(place, owner, mode, who):
    folder = place.folder(os.path.join(place.base, 'keys'), owner=owner, mode=mode)
    if mode & 0o020:
        shutil.chown(folder, 'root', 'nogroup')
    rc, values, key = place.put(folder, user='root', group='root')
    assert rc == 3 and values['error'] == (
        "refusing to write %s: %s (the key's folder) can be written by %s; the key's folder may "
        "be written only by root and the key's owner, and the folders above it only by root"
        % (key, folder, who)), values
    assert not os.path.exists(key) and os.listdir(folder) == []


def test_a_folder_above_that_the_keys_owner_can_write_is_refused(place):
    # the owner of home/ could rename keys/ and put a link to /etc there
    home = place.folder(os.path.join(place.base, 'home'), owner=OWNER)
    folder = place.folder(os.path.join(home, 'keys'), owner=OWNER)
    rc, values, key = place.put(folder)
    assert rc == 3 and '%s (a folder above %s) can be written by its owner nobody' % (
        home, folder) in values['error'], values
    assert not os.path.exists(key)


def test_a_link_on_the_way_in_a_folder_the_keys_owner_can_write_is_refused(place):
    home = place.folder(os.path.join(place.base, 'home'), owner=OWNER)
    real = place.folder(os.path.join(place.base, 'real'), owner=OWNER)
    os.symlink(real, os.path.join(home, 'keys'))
    rc, values, _key = place.put(os.path.join(home, 'keys'))
    assert rc == 3 and '%s (a folder above' % home in values['error'], values
    assert os.listdir(real) == []


def test_a_missing_folder_is_made_only_below_a_safe_one(place):
    home = place.folder(os.path.join(place.base, 'home'), owner=OWNER)
    rc, values, _key = place.put(os.path.join(home, 'new', 'keys'))
    assert rc == 3 and 'a folder above' in values['error'], values
    assert os.listdir(home) == []
    rc, values, key = place.put(os.path.join(place.base, 'made', 'keys'))
    assert rc == 0 and values['dir_created'] == os.path.dirname(key), values
    assert stat.S_IMODE(os.stat(os.path.dirname(key)).st_mode) == 0o711
