"""The copy plan: probe parsing, who is trusted, what Nix said it sent.

The probe script itself runs here for real under /bin/sh against the
controller's own store (the lab tests run it on every persona).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _copy, _copy_send)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output  # noqa: E402

P1 = '/nix/store/yp65nwcm3qq6n5j1ccmpgvgxhlxbn14m-nixos-system-h1-1'
P2 = '/nix/store/110879g0d9slzx4b09aizcm4wnnl0v0c-lab-extra-base-1'


def facts(**kw):
    base = {'uid': 1001, 'user': 'deploy', 'groups': ['deploy', 'wheel'],
            'store_writable': False, 'trusted_users': ['root']}
    base.update(kw)
    return base


@pytest.mark.parametrize('kw,trusted', [
    ({'uid': 0, 'user': 'root'}, True),
    ({'store_writable': True}, True),  # single-user store owner (nix-on-droid)
    ({'trusted_users': ['root', 'deploy']}, True),
    ({'trusted_users': ['root', '@wheel']}, True),
    ({'trusted_users': ['*']}, True),
    ({'trusted_users': ['root', '@admin', 'app']}, False),
])
def test_is_trusted(kw, trusted):
    assert _copy.is_trusted(facts(**kw)) is trusted


def test_plan_trust_order():
    untrusted = facts()
    assert _copy.plan_trust(facts(uid=0), 'auto', None, False, None, None) == (True, False, 'trusted')
    # a signing key beats sudo: no root needed for the copy
    assert _copy.plan_trust(untrusted, 'auto', '/k', True, 'sudo', 'root') == (False, False, 'signed')
    assert _copy.plan_trust(untrusted, 'auto', None, True, 'sudo', 'root') == (True, True, 'sudo')
    assert _copy.plan_trust(untrusted, 'auto', None, True, 'su', 'root') == (False, False, 'unsigned')
    assert _copy.plan_trust(untrusted, 'auto', None, False, None, None) == (False, False, 'unsigned')
    assert _copy.plan_trust(facts(uid=0), 'true', None, False, None, None)[0] is False
    assert _copy.plan_trust(untrusted, 'false', None, False, None, None)[0] is True


def run_probe(remote_nix_dir, paths):
    """(the probe run under sh, its facts)."""
    probe = _copy.probe_script(remote_nix_dir)
    proc = subprocess.run(['sh', '-c', probe],
                          input='\n'.join(paths) + '\n', stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    return proc, _copy.parse_probe(proc.stdout, probe)


def test_probe_runs_under_sh_and_reports_missing_paths():
    nix = ['nix', '--extra-experimental-features', 'nix-command']
    info = _nix_output.path_infos(json.loads(subprocess.run(
        nix + ['path-info', '--json', '--all'], check=True, stdout=subprocess.PIPE,
        universal_newlines=True).stdout))
    present = sorted(p for p, i in info.items() if i)[0]
    absent = '/nix/store/00000000000000000000000000000000-not-there'
    proc, found = run_probe(None, [present, absent])
    assert proc.returncode == 0, proc.stderr
    assert found['complete'] and found['invalid'] == [absent]
    assert found['nix_dir'] == '/usr/bin' and found['uid'] == 0
    assert _copy.is_trusted(found)


def test_probe_with_a_wrong_remote_nix_dir_says_no_nix():
    proc, found = run_probe("/opt/it's not here", [P1])
    assert proc.returncode == 3 and found is None


def test_unsigned_message_names_host_and_both_fixes():
    msg = _copy_send.unsigned_message('web1', 'app', "error: cannot add path '%s' because it lacks a "
                                                     "valid signature\n" % P1)
    assert msg.startswith('web1: the target refuses unsigned paths')
    assert 'signing_key' in msg and 'trusted-users' in msg and 'lacks a valid signature' in msg


@pytest.mark.parametrize('words', ['lacks a valid signature',              # Nix 2.8-2.11
                                   'lacks a signature by a trusted key'])  # 2.12+, Lix
def test_looks_unsigned_in_the_words_of_every_nix(words):
    assert _copy_send.looks_unsigned("error: cannot add path '%s' because it %s\n" % (P1, words))
    assert not _copy_send.looks_unsigned('error: cannot connect to socket\n')


def test_fetch_script_quotes_caches():
    script, netrc = _copy_send.fetch_script('/d', P1, ["http://c/x'; rm -rf /; '"], [])
    proc = subprocess.run(['sh', '-n', '-c', script], stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 0 and netrc == ''
    assert "'0 http://c/x'\"'\"'; rm -rf /; '\"'\"''" in script


def test_the_fetch_programs_text_names_no_login():
    """The program is ssh's and sh's argv: the caches' logins go on stdin."""
    script, netrc = _copy_send.fetch_script('/d', P1, [
        'https://deploy:pw-SECRET1@cache.example/nix', 'https://TOKEN-SECRET2@c2.example',
        'https://open.example'], [])
    assert 'SECRET' not in script
    assert ("CACHES='1 https://cache.example/nix\n1 https://c2.example\n0 https://open.example'"
            in script and '\nNETRC=1\n' in script)
    assert netrc == ('machine c2.example login TOKEN-SECRET2\n'
                     'machine cache.example login deploy password pw-SECRET1\n')
    with pytest.raises(_copy.CopyError) as info:
        _copy_send.fetch_script('/d', P1, ['https://cache.example?access_token=SECRET3'], [])
    assert 'access_token' in info.value.message and 'SECRET' not in info.value.message
    assert _copy_send.cache_uris(['http://u:SECRET@h:1/x', 'file:///c']) == ['http://h:1/x', 'file:///c']


# ------------------------------------------------------------------ cascade
def test_probe_with_embedded_paths_over_stdin_free_sh():
    """As the cascade runs it: ``ssh host sh`` with the script on stdin, the
    paths inside the script; it also reports the ssh client a sender needs."""
    absent = '/nix/store/00000000000000000000000000000000-not-there'
    probe = _copy.probe_script(None, paths=[absent])
    proc = subprocess.run(['sh'], input=_copy.stdin_free(probe), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    found = _copy.parse_probe(proc.stdout, probe)
    assert found['complete'] and found['invalid'] == [absent]
    assert found['ssh'].endswith('/ssh')
    assert _copy.openssh_version(found['ssh_version']) >= (8, 9)


def test_openssh_version():
    assert _copy.openssh_version('OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0') == (9, 2)
    assert _copy.openssh_version('OpenSSH_8.4p1') == (8, 4)
    assert _copy.openssh_version('Dropbear v2022.83') is None
    assert _copy.openssh_version('') is None


def test_probe_refuses_anything_but_store_paths():
    with pytest.raises(_copy.CopyError):
        _copy.probe_script(None, paths=['/nix/store/x; rm -rf /'])


STUB_NIX = r'''#!/bin/sh
# stands in for nix on a sender: says what the hop gave it
printf 'argv:%s\n' "$@"
printf 'opts:%s\n' "$NIX_SSHOPTS"
kh=$(printf '%s' "$NIX_SSHOPTS" | sed -n 's/.*UserKnownHostsFile=\([^ ]*\).*/\1/p')
echo "known:$(cat "$kh")"
echo "dir:$(dirname "$kh")"
exit "${STUB_RC:-0}"
'''


@pytest.fixture
def stub_nix(tmp_path):
    folder = tmp_path / 'bin'
    folder.mkdir()
    (folder / 'nix').write_text(STUB_NIX)
    (folder / 'nix').chmod(0o755)
    return str(folder)


@pytest.fixture
def agent_socket(tmp_path):
    """A listening unix socket where the hop script expects the forwarded agent."""
    import socket
    path = str(tmp_path / 'agent.sock')
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(1)
    yield path
    sock.close()


def run_hop(script, env):
    return subprocess.run(['sh'], input=_copy.stdin_free(script), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False,
                          env=dict(os.environ, **env))


def test_hop_script_pins_the_receiver_key_and_leaves_nothing(stub_nix, agent_socket, tmp_path):
    uri = "ssh-ng://root@10.0.0.2?remote-program=/x/nix-daemon%20'q'"
    # the shared words reach nix whole, each one word, none read by the shell
    flags = ['--option', 'narinfo-cache-negative-ttl', '0', "a b'$(touch x)`id`", '', '\\ *']
    script = _copy_send.hop_script(stub_nix, ['ssh-ed25519 AAAAkey1', 'ssh-rsa AAAAkey2'], uri, P1,
                                   flags, port=2222, no_check_sigs=True)
    proc = run_hop(script, {'SSH_AUTH_SOCK': agent_socket, 'TMPDIR': str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    argv = [line[5:] for line in out if line.startswith('argv:')]
    assert argv == ['--extra-experimental-features', 'nix-command', 'copy', '--to', uri] + flags + [
        '--no-check-sigs', P1]
    opts = [line[5:] for line in out if line.startswith('opts:')][0].split()
    for option in ('StrictHostKeyChecking=yes', 'HostKeyAlias=nixdeploy-receiver',
                   'GlobalKnownHostsFile=/dev/null', 'UpdateHostKeys=no', 'ForwardAgent=no',
                   'BatchMode=yes'):
        assert option in opts
    assert opts[-2:] == ['-p', '2222']
    assert [line for line in out if line.startswith('known:')] == [
        'known:nixdeploy-receiver ssh-ed25519 AAAAkey1']
    assert 'nixdeploy-receiver ssh-rsa AAAAkey2' in out
    folder = [line[4:] for line in out if line.startswith('dir:')][0]
    assert folder.startswith(str(tmp_path) + '/nixdeploy-hop.')
    assert not os.path.exists(folder)  # removed on exit


def test_hop_script_exit_codes(stub_nix, agent_socket, tmp_path):
    script = _copy_send.hop_script(stub_nix, ['ssh-ed25519 AAAA'], 'ssh-ng://h', P1, [])
    # no forwarded agent: the sender cannot send
    assert run_hop(script, {'SSH_AUTH_SOCK': ''}).returncode == 96
    # no nix where the probe said
    assert run_hop(_copy_send.hop_script(str(tmp_path / 'none'), ['k k'], 'ssh-ng://h', P1, []),
                   {'SSH_AUTH_SOCK': agent_socket}).returncode == 98
    # nix's own failures pass through, but never as 255 (the controller's ssh)
    for nix_rc, want in (('1', 1), ('255', 1), ('97', 1), ('3', 3)):
        proc = run_hop(script, {'SSH_AUTH_SOCK': agent_socket, 'STUB_RC': nix_rc})
        assert proc.returncode == want, (nix_rc, proc.stderr)
    # a TMPDIR that cannot go into NIX_SSHOPTS: /tmp instead
    odd = tmp_path / 'with space'
    odd.mkdir()
    proc = run_hop(script, {'SSH_AUTH_SOCK': agent_socket, 'TMPDIR': str(odd)})
    assert proc.returncode == 0 and 'dir:/tmp/nixdeploy-hop.' in proc.stdout


def test_hop_script_is_posix_sh():
    script = _copy_send.hop_script('/d', ["ssh-ed25519 AAAA'x"], "ssh-ng://u@h?x='y'", P1, ['-v'])
    proc = subprocess.run(['sh', '-n'], input=_copy.stdin_free(script), stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    if shutil.which('shellcheck'):
        # the file itself (the rendered program adds the values and lib.sh,
        # checked in test_script.py)
        check = subprocess.run(['shellcheck', '-s', 'sh', _script.programs()['copy-hop.sh']],
                               stdout=subprocess.PIPE, universal_newlines=True, check=False)
        assert check.returncode == 0, check.stdout


# ------------------------------------------------------------------ scripts with fakes
FAKE_NIX_STORE = r'''#!/bin/sh
# a target's nix-store: every path whose name ends in -absent is invalid;
# --add and --realise --add-root (the GC root's registration) are logged
case $1 in
  --add) echo "add" >>"${FAKE_LOG:-/dev/null}"
    echo /nix/store/11111111111111111111111111111111-nixdeploy-gc-anchor; exit 0 ;;
  --realise) echo "realise $2 $3 $4" >>"${FAKE_LOG:-/dev/null}"; ln -sfn "$2" "$4"; exit 0 ;;
esac
[ "$1 $2" = "--check-validity --print-invalid" ] || exit 2
shift 2
for p in "$@"; do case $p in *-absent) echo "$p" ;; esac; done
exit "${FAKE_RC:-0}"
'''
FAKE_NIX = r'''#!/bin/sh
# a target's nix: show-config trusts @wheel; copy --from succeeds only from
# the cache named in FAKE_GOOD_CACHE (and logs, with FAKE_SEEN, its argv, its
# NIX_CONFIG and the netrc file named there: content and mode)
case "$*" in
  *show-config*) echo "trusted-users = root @wheel" ;;
  *"copy --from"*)
    if [ -n "${FAKE_SEEN:-}" ]; then
      { echo "argv: $*"; echo "config: ${NIX_CONFIG-(unset)}"
        f=$(printf '%s\n' "${NIX_CONFIG-}" | sed -n 's/^netrc-file = //p')
        [ -n "$f" ] && { echo "netrc $f $(stat -c %a "$f"):"; cat "$f"; }
      } >>"$FAKE_SEEN"
      [ -n "${FAKE_KILL:-}" ] && kill -TERM "$PPID"
    fi
    while [ "$1" != --from ]; do shift; done
    [ "$2" = "$FAKE_GOOD_CACHE" ] && { echo "$2 $3" >>"$FAKE_LOG"; exit 0; }
    echo "error: $2 does not have it" >&2; exit 1 ;;
esac
'''


@pytest.fixture
def fake_nix_dir(tmp_path):
    folder = tmp_path / 'nix bin'
    folder.mkdir()
    for name, text in (('nix-store', FAKE_NIX_STORE), ('nix', FAKE_NIX)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return str(folder)


def test_probe_script_with_a_fake_store_lists_the_invalid_paths(fake_nix_dir):
    gone = '/nix/store/00000000000000000000000000000000-absent'
    script = _copy.probe_script(fake_nix_dir, paths=[P1, gone])
    proc = subprocess.run(['sh'], input=_copy.stdin_free(script), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    found = _copy.parse_probe(proc.stdout, script)
    assert found['nix_dir'] == fake_nix_dir and found['complete']
    assert found['invalid'] == [gone]
    # over stdin, as nix_copy_closure and nix_build run it
    script = _copy.probe_script(fake_nix_dir)
    proc = subprocess.run(['sh', '-c', script],
                          input='%s\n%s\n' % (gone, P1), stdout=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert _copy.parse_probe(proc.stdout, script)['invalid'] == [gone]


@pytest.mark.parametrize('identity,daemon,asked', [
    # root, or a store the user opens itself: trusted, nix is not asked
    ('uid=0(root) gid=0(root)', False, False),
    ('uid=1000(tester) gid=100(users) groups=100(users),1(wheel)', False, False),
    # through a daemon, as a user: its trusted-users decide
    ('uid=1000(tester) gid=100(users) groups=100(users),1(wheel)', True, True),
])
def test_the_probe_asks_nix_who_is_trusted_only_when_that_decides(
        fake_nix_dir, tmp_path, identity, daemon, asked):
    fake_bin = tmp_path / 'id bin'
    fake_bin.mkdir()
    (fake_bin / 'id').write_text('#!/bin/sh\necho %s\n' % shlex.quote(identity))
    (fake_bin / 'id').chmod(0o755)
    env = dict(os.environ, PATH='%s:%s' % (fake_bin, os.environ['PATH']))
    env.pop('NIX_REMOTE', None)
    if daemon:
        env['NIX_REMOTE'] = 'daemon'
    script = _copy.probe_script(fake_nix_dir, paths=[P1], peer_facts=False)
    proc = subprocess.run(['sh', '-c', script],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False, env=env)
    found = _copy.parse_probe(proc.stdout, script)
    assert found['complete'] and 'ssh_version' not in found, proc.stdout
    assert found['trusted_users'] == (['root', '@wheel'] if asked else [])
    assert _copy.is_trusted(found)
    assert found['groups'] == ['users', 'wheel'] or found['uid'] == 0


def test_probe_script_reports_a_failed_validity_query(fake_nix_dir):
    script = _copy.probe_script(fake_nix_dir, paths=[P1])
    proc = subprocess.run(['sh', '-c', script],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False,
                          env=dict(os.environ, FAKE_RC='1'))
    assert proc.returncode == 4 and not _copy.parse_probe(proc.stdout, script)['complete']


def test_fetch_script_tries_each_cache_in_order(fake_nix_dir, tmp_path):
    log = tmp_path / 'log'
    caches = ["http://bad/x'; touch /tmp/pwned; '", 'file:///good cache', 'http://never']
    script, _netrc = _copy_send.fetch_script(fake_nix_dir + '/', P1, caches, [])
    env = dict(os.environ, FAKE_GOOD_CACHE='file:///good cache', FAKE_LOG=str(log))
    proc = subprocess.run(['sh', '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == 'file:///good cache %s\n' % P1
    assert "from http://bad/x'; touch /tmp/pwned; ':" in proc.stderr
    assert 'does not have it' in proc.stderr and 'never' not in proc.stderr
    env['FAKE_GOOD_CACHE'] = 'elsewhere'
    proc = subprocess.run(['sh', '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False, env=env)
    assert proc.returncode == 1 and proc.stderr.count('does not have it') == 3


def test_the_fetch_gives_nix_the_logins_on_stdin_through_a_private_netrc(fake_nix_dir, tmp_path):
    """Only the nix of a cache with a login gets netrc-file (after the
    environment's own NIX_CONFIG), the netrc is 0600 in a folder removed at
    the end, and no process's argv holds the password."""
    seen, log = tmp_path / 'seen', tmp_path / 'log'
    caches = ['https://open.example', 'https://deploy:pw-SECRET@good.example/nix']
    script, netrc = _copy_send.fetch_script(fake_nix_dir, P1, caches, [])
    env = dict(os.environ, FAKE_GOOD_CACHE='https://good.example/nix', FAKE_LOG=str(log),
               FAKE_SEEN=str(seen), NIX_CONFIG='connect-timeout = 5', TMPDIR=str(tmp_path))
    proc = subprocess.run(['sh', '-c', script], input=netrc, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == 'https://good.example/nix %s\n' % P1
    first, second = seen.read_text().split('argv: ')[1:]
    # the open cache: the environment's NIX_CONFIG as it was, no netrc
    assert first.endswith('copy --from https://open.example %s\nconfig: connect-timeout = 5\n'
                          % P1)
    assert 'SECRET' not in second.splitlines()[0]
    folder = re.search(r'\nnetrc-file = (\S+)/netrc\n', second).group(1)
    assert 'config: connect-timeout = 5\nnetrc-file = %s/netrc\n' % folder in second
    assert second.endswith('netrc %s/netrc 600:\nmachine good.example login deploy '
                           'password pw-SECRET\n' % folder)
    assert folder.startswith(str(tmp_path)) and not os.path.exists(folder)
    # killed midway (TERM): the folder goes all the same
    seen.unlink()
    env.update(FAKE_GOOD_CACHE='elsewhere', FAKE_KILL='1')
    proc = subprocess.run(['sh', '-c', script], input=netrc, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False, env=env)
    assert proc.returncode != 0 and seen.read_text().count('argv: ') == 1, proc.stderr
    assert not [p for p in os.listdir(str(tmp_path)) if p.startswith('tmp.')]


# ------------------------------------------------------------------ issue 30
def _as_user(tmp_path, **env):
    """A non-root identity with its own XDG_STATE_HOME (never this machine's)."""
    fake_bin = tmp_path / 'id bin'
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / 'id').write_text('#!/bin/sh\ncase $1 in -u) echo 1000 ;; *) echo '
                                 '"uid=1000(tester) gid=100(users)" ;; esac\n')
    (fake_bin / 'id').chmod(0o755)
    result = dict(os.environ, PATH='%s:%s' % (fake_bin, os.environ['PATH']),
                  XDG_STATE_HOME=str(tmp_path / 'state'), FAKE_LOG=str(tmp_path / 'log'),
                  NIX_REMOTE='daemon')
    result.update(env)
    return result


def test_the_probe_plants_the_gc_root_before_the_copy_and_registers_it_once(
        fake_nix_dir, tmp_path):
    env = _as_user(tmp_path)
    new = '/nix/store/22222222222222222222222222222222-system-absent'
    root = tmp_path / 'state' / 'nixdeploy' / 'gcroots' / '%2E.%2Fevil'

    def probe(path):
        script = _copy.probe_script(fake_nix_dir, paths=[P1, path], peer_facts=False,
                                    root_key='../evil', root_path=path)
        proc = subprocess.run(['sh', '-c', script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, env=env,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        return _copy.parse_probe(proc.stdout, script)

    found = probe(new)
    # the host name is one file name in the user's own state folder
    assert found['gc_root'] == str(root) and found['gc_root_error'] is None, found
    assert os.readlink(str(root)) == new and found['invalid'] == [new]
    assert (tmp_path / 'log').read_text().splitlines() == [
        'add', 'realise /nix/store/11111111111111111111111111111111-nixdeploy-gc-anchor '
        '--add-root %s' % root]
    assert not [n for n in os.listdir(str(root.parent)) if n != root.name]
    # the next copy re-points it: no Nix process, one link per host
    later = '/nix/store/33333333333333333333333333333333-system-absent'
    assert probe(later)['gc_root'] == str(root)
    assert os.readlink(str(root)) == later
    assert len((tmp_path / 'log').read_text().splitlines()) == 2
    assert found['free_kb'] is not None and found['store_mount']


def test_the_probe_says_why_it_could_not_plant_the_root(fake_nix_dir, tmp_path):
    env = _as_user(tmp_path)
    (tmp_path / 'state').write_text('not a folder')
    script = _copy.probe_script(fake_nix_dir, paths=[P1], root_key='h', root_path=P1)
    proc = subprocess.run(['sh', '-c', script], stdout=subprocess.PIPE, universal_newlines=True,
                          env=env, check=False)
    found = _copy.parse_probe(proc.stdout, script)
    assert found['complete'] and found['gc_root'] is None
    assert 'state' in found['gc_root_error'], found


def test_no_root_in_check_mode_or_for_anything_but_a_store_path():
    assert "ROOT_KEY=''" in _copy.probe_script(None, paths=[P1])
    with pytest.raises(_copy.CopyError):
        _copy.probe_script(None, paths=[P1], root_key='h', root_path='/etc/passwd')


def _missing(nar, count=1):
    return [{'path': '/nix/store/%032d-p%d' % (i, i), 'narSize': nar // count}
            for i in range(count)]


@pytest.mark.parametrize('free_kb,missing,margin,refused', [
    # 210 MB to send, 12 MB free
    (12 * 1024, _missing(210 << 20, 100), 1.1, True),
    # room for the NAR times the margin, the blocks and the fixed reserve
    (300 * 1024, _missing(210 << 20, 100), 1.1, False),
    # just short of the margin: 210 MB * 1.1 + 8 MB + 100 blocks
    (235 * 1024, _missing(210 << 20, 100), 1.1, True),
    (235 * 1024, _missing(210 << 20, 100), 1.0, False),
    # nothing missing, the check off, df unreadable: never refused
    (0, [], 1.1, False),
    (0, _missing(1 << 20), 0, False),
    (None, _missing(1 << 20), 1.1, False),
])
def test_space_problem_decides_before_sending(free_kb, missing, margin, refused):
    facts = {'free_kb': free_kb, 'store_mount': '/nix'}
    problem = _copy.space_problem('web3', facts, missing, margin)
    assert bool(problem) == refused, problem
    if refused:
        assert problem.startswith('no space left on /nix on web3: %s free, the closure needs '
                                  % _copy.megabytes(free_kb * 1024)), problem
        assert _copy.megabytes(_copy.space_needed(missing, margin)) in problem


def test_space_needed_and_megabytes():
    assert _copy.space_needed(_missing(1000, 2), 1.5) == 1500 + 2 * 4096 + (8 << 20)
    assert [_copy.megabytes(n) for n in (400 << 10, 12 << 20, 210 << 20, 3 << 30)] == [
        '0.4 MB', '12 MB', '210 MB', '3.0 GB']
