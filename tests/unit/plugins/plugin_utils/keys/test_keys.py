# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/keys/_keys*.py: key specs, content sources, and the target scripts
run for real with the local sh (dash), busybox's sh and a PATH whose only
sha256 tool is openssl, against a temporary folder (no target needed).

The lab tests (tests/integration/plugins/action/test_nix_keys.py) run the
same scripts over ssh, with become and as a user without root.
"""

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))))
if 'ansible_collections.nixdeploy.fleet' not in sys.modules:
    sys.path.insert(0, REPO)
    from tests.collection import collections_path  # noqa: E402
    sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import (  # noqa: E402
    _keys, _keys_content, _keys_target)
from tests.unit.local_host import local_host  # noqa: E402

SECRET = b'correct horse battery staple\n\x00\xff binary too'


def norm(spec, name='db'):
    return _keys.normalize_key(name, spec)


# ---------------------------------------------------------------- specs
def test_defaults_are_colmenas():
    key = norm({'text': 'x'})
    assert (key.path, key.user, key.group, key.mode, key.upload_at, key.source) == (
        '/run/keys/db', 'root', 'root', '0600', 'pre-activation', 'text')


@pytest.mark.parametrize('mode, wanted', [
    ('0600', '0600'), ('600', '0600'), ('0o440', '0440'), (0o600, '0600'), (384, '0600'),
    ('4750', '4750'),
])
def test_modes(mode, wanted):
    assert norm({'text': 'x', 'mode': mode}).mode == wanted


@pytest.mark.parametrize('spec, message', [
    ({}, 'give exactly one of text, src or command (none given)'),
    ({'text': 'a', 'src': 'b'}, 'give exactly one of text, src or command (got text and src)'),
    ({'text': 'a', 'keyFile': 'b'}, 'unknown field(s) keyFile'),
    ({'command': 'pass show db'}, 'command must be a non-empty list'),
    ({'command': []}, 'command must be a non-empty list'),
    ({'command': ['pass', {'x': 1}]}, 'every item of command must be a string'),
    ({'src': ''}, 'src must be a file name on the controller'),
    ({'text': 'a', 'mode': 'u=rw'}, 'mode must be octal digits'),
    ({'text': 'a', 'mode': True}, 'mode must be octal digits'),
    ({'text': 'a', 'name': '../etc/passwd'}, 'must be a plain file name'),
    ({'text': 'a', 'name': 'a\nb'}, 'must be a plain file name'),
    ({'text': 'a', 'dest_dir': 'keys'}, 'dest_dir must be an absolute path'),
    ({'text': 'a', 'dest_dir': '/run/keys/../../etc'}, "holds '..'"),
    ({'text': 'a', 'dest_dir': '/nix/store/abc-keys'}, 'is in the Nix store'),
    ({'text': 'a', 'dest_dir': '/'}, 'cannot be / itself'),
    ({'text': 'a', 'user': 'root; rm -rf /'}, 'user'),
    ({'text': 'a', 'group': 'a:b'}, 'group'),
    ({'text': 'a', 'upload_at': 'later'}, 'upload_at must be pre-activation or post-activation'),
    ('just text', 'the spec must be a dict'),
])
def test_bad_specs_name_the_key(spec, message):
    with pytest.raises(_keys.KeysError) as err:
        norm(spec, name='db')
    assert message in err.value.message
    assert err.value.message.startswith("key 'db': ")
    assert err.value.key == 'db'


def test_two_keys_one_file():
    with pytest.raises(_keys.KeysError, match="keys 'a' and 'b' both write /run/keys/same"):
        _keys.normalize_keys({'a': {'text': '1', 'name': 'same'}, 'b': {'text': '2', 'name': 'same'}})


def test_keys_must_be_a_dict_and_select_by_upload_at():
    with pytest.raises(_keys.KeysError, match='keys must be a dict'):
        _keys.normalize_keys(['a'])
    keys = _keys.normalize_keys({'a': {'text': 'sesame'}, 'b': {'text': '2', 'upload_at': 'post-activation'}})
    assert [k.key for k in _keys.select(keys, 'pre-activation')] == ['a']
    assert [k.key for k in _keys.select(keys, 'post-activation')] == ['b']
    assert [k.key for k in _keys.select(keys, 'all')] == ['a', 'b']
    assert 'sesame' not in repr(keys[0])


# ---------------------------------------------------------------- content
def test_content_sources(tmp_path):
    (tmp_path / 'api.key').write_bytes(SECRET)

    def read(name):
        return (tmp_path / name).read_bytes()
    assert _keys_content.load_content(norm({'text': u'caf\xe9'}), read) == u'caf\xe9'.encode('utf-8')
    assert _keys_content.load_content(norm({'src': 'api.key'}), read) == SECRET
    assert _keys_content.load_content(norm({'command': ['cat', 'api.key']}), read, cwd=str(tmp_path)) == SECRET


def test_command_failures_name_the_key():
    with pytest.raises(_keys.KeysError) as err:
        _keys_content.load_content(norm({'command': ['sh', '-c', 'echo "pass: db is not in the store" >&2; exit 1']}),
                                   None)
    # the program's name only: its arguments and stderr may hold a secret
    # (the stderr is the detail, which only a verbose run shows)
    assert err.value.message == "key 'db': command sh exited with 1"
    assert err.value.detail == 'pass: db is not in the store'
    with pytest.raises(_keys.KeysError, match="key 'db': cannot run /nonexistent/pass"):
        _keys_content.load_content(norm({'command': ['/nonexistent/pass', 'show']}), None)


def test_command_gets_no_stdin():
    # a command that would wait for a terminal gets EOF instead of hanging
    assert _keys_content.run_command(['sh', '-c', 'cat; echo done']) == b'done\n'


# ---------------------------------------------------------------- the sh scripts, for real
class Target:
    """A 'target' that is the local machine: the scripts run with ``shell``
    under ``path``; every script and stdin is kept, to look for the secret."""

    def __init__(self, tmp_path, shell='sh', path=None):
        self.root = str(tmp_path)
        self.state = os.path.join(self.root, 'state')
        self.shell, self.path = shell, path or os.environ['PATH']
        self.scripts, self.stdins, self.outputs = [], [], []
        self.corrupt = False

    def execute(self, script, sudoable=False, in_data=None):
        """Ansible's command runner, as the real Host.sh calls it."""
        self.scripts.append(script)
        self.stdins.append(in_data)
        if self.corrupt and in_data and "emit 'done' 1" in script:
            in_data = in_data[:-1] + b'!'  # a put's content, not the probe's nonce
        proc = subprocess.run([self.shell, '-c', script], input=in_data or b'', stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={'PATH': self.path, 'HOME': self.root},
                              check=False)
        self.outputs.append(proc.stdout.decode() + proc.stderr.decode())
        return {'rc': proc.returncode, 'stdout': proc.stdout.decode(),
                'stderr': proc.stderr.decode()}

    def upload(self, specs, upload_at='all', prune=False, check=False, diff=True):
        keys = _keys.normalize_keys(specs)
        uploader = _keys_target.Uploader(local_host(self.execute),
                                         lambda name: open(name, 'rb').read(),
                                         state_dir=self.state)
        result = uploader.run(keys, _keys.select(keys, upload_at), prune, check_mode=check, diff=diff)
        return result, uploader.warnings

    def manifest(self):
        try:
            with open(os.path.join(self.state, 'keys')) as handle:
                return handle.read().split('\n')[:-1]
        except OSError:
            return []


def facts(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_ino


def specs(root, **over):
    keys = {
        'db': {'text': SECRET.decode('utf-8', 'surrogateescape'), 'dest_dir': root + '/run/keys',
               'mode': '0440', 'group': 'daemon'},
        'api': {'command': ['printf', 'token-1'], 'dest_dir': root + '/run/keys', 'name': 'api-token',
                'upload_at': 'post-activation'},
    }
    for name, spec in over.items():
        if spec is None:
            keys.pop(name)
        else:
            keys[name] = spec
    return keys


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='sets owners: needs root')


def busybox_path(tmp_path):
    bbdir = tmp_path / 'bb'
    bbdir.mkdir()
    applets = subprocess.run(['busybox', '--list'], stdout=subprocess.PIPE, check=True,
                             universal_newlines=True).stdout.split()
    for applet in applets:
        os.symlink(shutil.which('busybox'), str(bbdir / applet))
    return str(bbdir)


def openssl_path(tmp_path):
    """The system's tools without sha256sum, shasum and busybox."""
    odir = tmp_path / 'ossl'
    odir.mkdir()
    for folder in ('/usr/bin', '/bin'):
        for tool in os.listdir(folder):
            if tool not in ('sha256sum', 'shasum', 'busybox') and not (odir / tool).exists():
                os.symlink(os.path.join(folder, tool), str(odir / tool))
    return str(odir)


@pytest.fixture(params=['dash', 'busybox', 'openssl'])
def target(request, tmp_path):
    if request.param == 'dash':
        return Target(tmp_path)
    if shutil.which('busybox') is None and request.param == 'busybox':
        pytest.skip('no busybox')
    if request.param == 'busybox':
        path = busybox_path(tmp_path)
        return Target(tmp_path, shell=os.path.join(path, 'sh'), path=path)
    if shutil.which('openssl') is None:
        pytest.skip('no openssl')
    return Target(tmp_path, path=openssl_path(tmp_path))


@needs_root
def test_upload_idempotence_fix_and_prune(target):
    root = target.root
    first, warnings = target.upload(specs(root))
    assert not warnings
    assert first['changed'] and first['removed'] == []
    for name, entry in first['key_files'].items():
        # changed or not, and why: no digest of the content at all
        assert entry['changed'] and entry['action'] == 'create' and entry['differs'] == ['absent']
        assert not set(entry) & {'sha256', 'digest', 'hash'}
    db, api = root + '/run/keys/db', root + '/run/keys/api-token'
    assert open(db, 'rb').read() == SECRET and open(api, 'rb').read() == b'token-1'
    assert facts(db)[:3] == (0o440, 0, 1)  # root:daemon
    assert facts(api)[:3] == (0o600, 0, 0)
    # the folders it made: reachable by name, not listable
    assert stat.S_IMODE(os.stat(root + '/run/keys').st_mode) == 0o711
    assert stat.S_IMODE(os.stat(root + '/run').st_mode) == 0o711
    # keys go in name order: api-token made the folder
    assert first['key_files']['api']['dir_created'] == root + '/run/keys'
    assert 'dir_created' not in first['key_files']['db']
    assert sorted(target.manifest()) == [api, db]
    # no temporary file left behind
    assert sorted(os.listdir(root + '/run/keys')) == ['api-token', 'db']

    again, _w = target.upload(specs(root))
    assert not again['changed'] and all(e['action'] == 'none' for e in again['key_files'].values())
    assert len(target.scripts) == 3 + 1, 'a second run is one probe'

    # mode and owner only: the key is written again beside it and renamed
    # over it (never a chmod or chown by a name its owner could swap for a link)
    os.chmod(db, 0o644)
    os.chown(db, 0, 0)
    inode = facts(db)[3]
    fixed, _w = target.upload(specs(root))
    assert fixed['key_files']['db']['action'] == 'fix'
    assert fixed['key_files']['db']['differs'] == ['group', 'mode']
    assert facts(db)[:3] == (0o440, 0, 1) and facts(db)[3] != inode
    assert open(db, 'rb').read() == SECRET
    assert sorted(os.listdir(root + '/run/keys')) == ['api-token', 'db']

    # a foreign file in the same folder is never pruned; a dropped key is
    with open(root + '/run/keys/foreign', 'w') as handle:
        handle.write('not ours')
    pruned, _w = target.upload(specs(root, api=None), upload_at='pre-activation', prune=True)
    assert pruned['removed'] == [api] and pruned['changed']
    assert not os.path.exists(api) and os.path.exists(root + '/run/keys/foreign')
    assert target.manifest() == [db]

    for script in target.scripts:
        assert SECRET.decode('utf-8', 'surrogateescape') not in script and 'token-1' not in script


@needs_root
def test_prune_in_the_pre_call_keeps_post_keys(target):
    root = target.root
    target.upload(specs(root))
    result, _w = target.upload(specs(root), upload_at='pre-activation', prune=True)
    assert result['removed'] == [] and not result['changed']
    assert os.path.exists(root + '/run/keys/api-token')
    assert list(result['key_files']) == ['db']
    # a listed key whose file is gone already (a reboot emptied the tmpfs) only
    # leaves the manifest: nothing changed on the target
    os.unlink(root + '/run/keys/api-token')
    result, _w = target.upload(specs(root, api=None), upload_at='pre-activation', prune=True)
    assert result['removed'] == [] and not result['changed']
    assert target.manifest() == [root + '/run/keys/db']


@needs_root
def test_check_mode_and_diff_change_nothing_and_show_no_content(target):
    root = target.root
    target.upload(specs(root))
    new = dict(specs(root)['db'], text='rotated secret')
    before = open(root + '/run/keys/db', 'rb').read()
    result, _w = target.upload(specs(root, db=new, api=None), prune=True, check=True)
    assert result['changed']
    assert result['key_files']['db']['action'] == 'update' and result['key_files']['db']['differs'] == ['content']
    assert result['removed'] == [root + '/run/keys/api-token']
    assert open(root + '/run/keys/db', 'rb').read() == before
    assert os.path.exists(root + '/run/keys/api-token')
    text = repr(result)
    assert 'rotated secret' not in text and 'token-1' not in text and 'horse' not in text
    db_diff = [d for d in result['diff'] if d['after_header'].endswith('(key db)')][0]
    assert db_diff['before'] == 'content: old\nowner: root:daemon\nmode: 0440\n'
    assert db_diff['after'] == 'content: new\nowner: root:daemon\nmode: 0440\n'
    # no hash of the old or the new secret, salted or not, anywhere in the result
    assert not re.search('[0-9a-f]{64}', text)


def plain(content):
    return hashlib.sha256(content).hexdigest()


@needs_root
def test_no_plain_hash_of_a_key_anywhere_and_a_fresh_salt_per_call(target):
    # issue 43: results carried each key's sha256, and a short secret is
    # found from it offline. Now the target reports sha256(nonce || file),
    # the nonce made afresh per call and sent on stdin only
    root = target.root
    short = dict(specs(root)['db'], text='1234')          # a PIN: guessed from a plain hash at once
    target.upload(specs(root, db=short))
    again, _w = target.upload(specs(root, db=short))
    assert not again['changed']
    changed = dict(short, text='4321')
    result, _w = target.upload(specs(root, db=changed), check=True, diff=True)
    assert result['key_files']['db']['differs'] == ['content']
    secrets_ = (b'1234', b'4321', b'token-1')
    # the probes: one stdin line each, the nonce, new every call, in no program
    probes = [i for i, script in enumerate(target.scripts) if 'emit probed 1' in script]
    assert len(probes) == 3
    nonces = [target.stdins[i].decode() for i in probes]
    assert all(re.match(r'\A[0-9a-f]{64}\n\Z', n) for n in nonces)
    assert len(set(nonces)) == 3
    for nonce in nonces:
        assert all(nonce.strip() not in script for script in target.scripts)
    # what the target printed holds the salted digest of the file (the same
    # with every sha256 tool), never a plain hash
    out = target.outputs[probes[1]]
    db_line = [line for line in out.split('\n') if ' stat_' in line and '=file ' in line]
    salted = hashlib.sha256(nonces[1].strip().encode() + b'1234').hexdigest()
    assert any(salted in line for line in db_line), out
    seen = repr(result) + repr(again) + ''.join(target.outputs) + ''.join(target.scripts)
    for secret in secrets_:
        assert plain(secret) not in seen
    # the puts' stdin: "nonce digest" then the content, nothing else
    puts = [target.stdins[i] for i, script in enumerate(target.scripts) if 'emit \'done\' 1' in script]
    assert puts and all(re.match(rb'\A[0-9a-f]{64} [0-9a-f]{64}\n', put) for put in puts)
    assert not any(plain(secret).encode() in put for put in puts for secret in secrets_)
    # results and diffs: no digest of any kind
    assert not re.search('[0-9a-f]{64}', repr(result) + repr(again))


@needs_root
def test_damaged_content_replaces_nothing(target):
    root = target.root
    target.upload(specs(root))
    target.corrupt = True
    new = dict(specs(root)['db'], text='rotated secret')
    with pytest.raises(_keys.KeysError) as err:
        target.upload(specs(root, db=new))
    assert 'arrived damaged' in err.value.message and "key 'db'" in err.value.message
    assert open(root + '/run/keys/db', 'rb').read() == SECRET
    assert sorted(os.listdir(root + '/run/keys')) == ['api-token', 'db']


@needs_root
def test_missing_owner_pre_activation_warns_post_activation_fails(tmp_path):
    target = Target(tmp_path)
    root = target.root
    keys = {'pre': {'text': 'a', 'dest_dir': root + '/k', 'user': 'nixdeploy-nobody-yet'},
            'post': {'text': 'b', 'dest_dir': root + '/k', 'group': 'nixdeploy-nogroup',
                     'upload_at': 'post-activation'}}
    result, warnings = target.upload(keys, upload_at='pre-activation')
    assert result['key_files']['pre']['owner_unset'] and result['key_files']['pre']['changed']
    assert 'nixdeploy-nobody-yet:root does not exist yet' in warnings[0]
    assert facts(root + '/k/pre')[:3] == (0o600, 0, 0)
    with pytest.raises(_keys.KeysError, match="key 'post' .*cannot give the key to root:nixdeploy-nogroup: chown: invalid group"):
        target.upload(keys, upload_at='post-activation')
    assert not os.path.exists(root + '/k/post')


@needs_root
def test_never_writes_through_a_link_or_into_a_folder(tmp_path):
    target = Target(tmp_path)
    root = target.root
    os.makedirs(root + '/k/dir')
    os.makedirs(root + '/elsewhere')
    os.symlink(root + '/elsewhere', root + '/k/link')
    keys = {'a': {'text': 'a', 'dest_dir': root + '/k'},
            'link': {'text': 'b', 'dest_dir': root + '/k'},
            'dir': {'text': 'c', 'dest_dir': root + '/k'}}
    with pytest.raises(_keys.KeysError, match="key 'dir': .*/k/dir is a folder or other non-regular"):
        target.upload(keys)
    with pytest.raises(_keys.KeysError, match="key 'link': .*/k/link is a symbolic link"):
        target.upload(dict((k, v) for k, v in keys.items() if k != 'dir'))
    # nothing was written, not even the good key: every plan comes first
    assert sorted(os.listdir(root + '/k')) == ['dir', 'link']
    assert os.listdir(root + '/elsewhere') == [] and os.listdir(root + '/k/dir') == []


def test_refuses_a_folder_in_place_of_the_dest_dir(tmp_path):
    target = Target(tmp_path)
    open(os.path.join(target.root, 'file'), 'w').close()
    with pytest.raises(_keys.KeysError, match='exists and is not a folder'):
        target.upload({'k': {'text': 'a', 'dest_dir': target.root + '/file', 'user': str(os.geteuid()),
                             'group': str(os.getegid())}})


@pytest.mark.skipif(shutil.which('shellcheck') is None, reason='needs shellcheck')
def test_scripts_pass_shellcheck():
    key = norm({'text': 'x'})
    # the files themselves (target/keys-*.sh; test_script.py checks them all) ...
    folder = os.path.join(os.path.dirname(_keys.__file__), 'target')
    proc = subprocess.run(['shellcheck', '-s', 'sh'] + [os.path.join(folder, n) for n in (
        'keys-lib.sh', 'keys-probe.sh', 'keys-put.sh', 'keys-finish.sh')],
        universal_newlines=True, stdout=subprocess.PIPE, check=False)
    assert proc.returncode == 0, proc.stdout
    # ... and the programs they make with hostile values parse as sh
    for script in (_keys_target.probe_script(['/run/keys/db', "/run/keys/it's"], ['/run/keys/db'], True),
                   _keys_target.put_script(key, False), _keys_target.put_script(key, True),
                   _keys_target.finish_script(['/run/keys/a b'], ['/run/keys/c'])):
        proc = subprocess.run(['sh', '-n'], input=script, universal_newlines=True,
                              stderr=subprocess.PIPE, check=False)
        assert proc.returncode == 0, proc.stderr


def test_parse_reports_facts():
    probe = _keys_target.probe_script(['/run/keys/db'], ['/run/keys/db'], False)
    out = ('noise\n@@nixdeploy stat_0=file 1 %s 0640 root keys 0 62\n'
           '@@nixdeploy stat_1=absent 0\n@@nixdeploy stale_0=1 /run/keys/old key\n'
           '@@nixdeploy removed_1=/run/keys/x\n@@nixdeploy probed=1\n' % ('a' * 64)
           ).replace('@@nixdeploy ', '@@%s ' % probe.mark)
    values, stats, stale = _keys_target.parse(out, probe)
    assert stats[0] == {'kind': 'file', 'listed': True, 'digest': 'a' * 64, 'mode': '0640',
                        'owner': 'root', 'group': 'keys', 'uid': '0', 'gid': '62'}
    assert stats[1] == {'kind': 'absent', 'listed': False}
    assert stale == [('/run/keys/old key', True)]
    # removed_<n> is the finish program's, not the probe's: dropped, and said so
    assert values['removed'] == [] and values['probed'] is True
    assert any(note.startswith('removed_1: not a value of this program') for note in values.dropped)
    key = norm({'text': 'x', 'group': '62', 'mode': '0640'})
    assert _keys_target.plan(key, 'a' * 64, stats[0]) == ('none', [])
    assert _keys_target.plan(key, 'b' * 64, stats[0]) == ('update', ['content'])
    assert _keys_target.plan(key, 'b' * 64, stats[1]) == ('create', ['absent'])
    with pytest.raises(_keys.KeysError, match="key 'db': /run/keys/db is a symbolic link"):
        _keys_target.plan(key, 'a' * 64, {'kind': 'link'})
