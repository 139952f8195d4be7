"""A cache address's login kept out of every argv (plugin_utils/nix/_netrc.py):
the split, the netrc, the private file, and real Nix (the controller's)
reading the login from it against a cache that asks for one
(tests/auth_cache.py), for the closure query of nix_copy_closure and for a
whole nix_publish, while every Nix process's argv is recorded."""

import os
import stat
import subprocess
import sys

import pytest

from tests.auth_cache import AuthCache
from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import _copy_send  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _netrc, _nix  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixOptions)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.publish import _publish  # noqa: E402

PASSWORD = 'pw-4d1f9c-s3cret'
NIX = ['nix', '--extra-experimental-features', 'nix-command flakes']


@pytest.mark.parametrize('address, uri, login, password, host', [
    ('https://deploy:%s@cache.example.org/nix' % PASSWORD, 'https://cache.example.org/nix',
     'deploy', PASSWORD, 'cache.example.org'),
    ('http://u:%s@10.0.0.1:8080?priority=30' % PASSWORD, 'http://10.0.0.1:8080?priority=30',
     'u', PASSWORD, '10.0.0.1'),
    # percent-encoded as a URL holds it; the netrc gets the characters
    ('https://u%40corp:p%3Ass%2Fw@cache', 'https://cache', 'u@corp', 'p:ss/w', 'cache'),
    # an unescaped '@' in the password: up to the last '@', as _redact and curl read it
    ('https://u:p@ss@cache/x', 'https://cache/x', 'u', 'p@ss', 'cache'),
    # a bare token: a login without a password, as curl sends the address
    ('https://TOKEN123@cache', 'https://cache', 'TOKEN123', None, 'cache'),
    ('HTTPS://u:pw@[fe80::1]:443/c', 'HTTPS://[fe80::1]:443/c', 'u', 'pw', 'fe80::1'),
])
def test_the_login_leaves_the_address(address, uri, login, password, host):
    cache = _netrc.split(address)
    assert (cache.uri, cache.login, cache.password, cache.host) == (uri, login, password, host)
    assert PASSWORD not in repr(cache)


@pytest.mark.parametrize('address', [
    'https://cache.example.org', 'file:///srv/cache?secret-key=/etc/nix/key',
    's3://bucket?region=eu-west-1&endpoint=minio.example.org', 'ssh-ng://root@cache',
    'ssh://nix-ssh@cache?ssh-key=/k', '/srv/chroot-store', 'daemon', 'https://cache/a@b',
    'https://cache?priority=40&want-mass-query=true&ssl-key=/k&compression=zstd',
])
def test_an_address_without_a_login_stays(address):
    cache = _netrc.split(address)
    assert cache.uri == address and not cache.has_credential and cache.netrc_entry() == ''


@pytest.mark.parametrize('address, said', [
    # Nix sends no query parameter to a cache: a secret there would only be in argv
    ('https://cache?access_token=%s' % PASSWORD, 'access_token'),
    ('https://cache?priority=1&private_key=%s' % PASSWORD, 'private_key'),
    ('s3://bucket?region=x&session_token=%s' % PASSWORD, 'session_token'),
    # a store Nix takes no credential from
    ('s3://key:%s@bucket' % PASSWORD, 'from no s3://'),
    ('file://u:%s@/srv/cache' % PASSWORD, 'from no file://'),
    ('ssh://root:%s@cache' % PASSWORD, 'from no ssh://'),
    # what a netrc cannot carry
    ('https://u:pa%%20ss%s@cache' % PASSWORD, 'password'),
    ('https://u:%s%%22@cache' % PASSWORD, 'password'),
    ('https://u:%%23%s@cache' % PASSWORD, 'password'),
    ('https://u%%0a:%s@cache' % PASSWORD, 'user name'),
])
def test_what_cannot_leave_argv_is_refused_without_showing_it(address, said):
    with pytest.raises(_netrc.CacheAddressError) as info:
        _netrc.split(address)
    assert said in str(info.value) and PASSWORD not in str(info.value)


def test_one_netrc_entry_per_host():
    caches = [_netrc.split(a) for a in (
        'https://a:pw1@c1.example', 'https://TOK@c2.example', 'https://c3.example',
        'https://a:pw1@c1.example/other')]
    assert _netrc.netrc_text(caches) == ('machine c1.example login a password pw1\n'
                                         'machine c2.example login TOK\n')
    with pytest.raises(_netrc.CacheAddressError, match='two different logins') as info:
        _netrc.netrc_text(caches + [_netrc.split('https://a:%s@c1.example:8443' % PASSWORD)])
    assert PASSWORD not in str(info.value)


def test_the_private_netrc_is_this_accounts_alone_and_goes_after():
    with _netrc.private_netrc('machine h login u password p\n') as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        with open(path) as handle:
            assert handle.read() == 'machine h login u password p\n'
    assert not os.path.exists(os.path.dirname(path))
    with pytest.raises(RuntimeError):
        with _netrc.private_netrc('x') as path:
            raise RuntimeError('the block failed')
    assert not os.path.exists(os.path.dirname(path))


def test_nix_gets_the_netrc_file_only_with_a_login():
    opts = NixOptions(options={'netrc-file': '/etc/mine', 'max-jobs': 2})
    with _netrc.nix_options(opts, [_netrc.split('https://cache')]) as same:
        assert same is opts
    with _netrc.nix_options(opts, [_netrc.split('https://u:%s@cache' % PASSWORD)]) as ours:
        path = ours.options['netrc-file']
        assert path != '/etc/mine' and ours.options['max-jobs'] == 2
        # in NIX_CONFIG after the user's own lines, never in argv
        assert ours.environment({})['NIX_CONFIG'].endswith('netrc-file = %s\n' % path)
        assert PASSWORD not in ' '.join(ours.argv('copy', ['--from', 'https://cache']))
    assert not os.path.exists(path)


# ------------------------------------------------------------------ real Nix
@pytest.fixture
def recorded_nix(tmp_path):
    """A nix that records its argv and its netrc file's content, then runs the real nix."""
    log = tmp_path / 'argv.log'
    wrapper = tmp_path / 'nix'
    wrapper.write_text(
        '#!/bin/sh\n{ tr "\\0" " " </proc/$$/cmdline; echo; } >>"%s"\n'
        'printf "%%s\\n" "$NIX_CONFIG" | sed -n "s/^netrc-file = //p" | while read -r f; do\n'
        '  printf "netrc %%s %%s\\n" "$f" "$(stat -c %%a "$f")" >>"%s"; done\n'
        'exec nix "$@"\n' % (log, log))
    wrapper.chmod(0o755)
    return str(wrapper), log


def _store_file(tmp_path, name):
    content = tmp_path / ('%s-%d' % (name, os.getpid()))
    content.write_text('%s, for the test %s\n' % (name, tmp_path))
    return subprocess.run(NIX + ['store', 'add-file', str(content)], check=True,
                          universal_newlines=True, stdout=subprocess.PIPE).stdout.strip()


def test_the_closure_query_logs_in_from_the_netrc_never_argv(tmp_path, recorded_nix):
    wrapper, log = recorded_nix
    path = _store_file(tmp_path, 'closure-query')
    folder = tmp_path / 'cache'
    subprocess.run(NIX + ['copy', '--to', 'file://%s' % folder, path], check=True)
    opts = NixOptions(nix_bin=wrapper, options={'substituters': ''})
    with AuthCache(str(folder), 'deploy', PASSWORD) as cache:
        found = _copy_send.closure(opts, path, store=cache.url_with_login)
        assert [p['path'] for p in found] == [path]
        assert cache.logins() == {'deploy:%s' % PASSWORD} and cache.served()
    # another address (Nix keeps what a cache said per address, in its disk cache)
    with AuthCache(str(folder), 'deploy', PASSWORD) as cache:
        with pytest.raises(_nix.NixError) as info:
            _copy_send.closure(opts, path, store=cache.url_with('deploy', 'wrong-pw'))
        assert cache.logins() == {'deploy:wrong-pw'} and not cache.served()
        assert 'wrong-pw' not in str(info.value) + ' '.join(info.value.argv)
    recorded = log.read_text()
    assert PASSWORD not in recorded and 'wrong-pw' not in recorded
    assert '--store %s ' % cache.url in recorded
    netrcs = [line.split() for line in recorded.splitlines() if line.startswith('netrc ')]
    assert netrcs and all(mode == '600' and not os.path.exists(f) for _n, f, mode in netrcs)


def test_a_publish_to_a_cache_with_a_login_puts_it_in_no_argv(tmp_path, recorded_nix):
    wrapper, log = recorded_nix
    path = _store_file(tmp_path, 'published-with-login')
    secret, public = str(tmp_path / 'key'), str(tmp_path / 'key.pub')
    subprocess.run(['nix-store', '--generate-binary-cache-key', 'unit-login-1', secret, public],
                   check=True)
    folder = tmp_path / 'cache'
    folder.mkdir()
    (folder / 'nix-cache-info').write_text('StoreDir: /nix/store\n')
    opts = NixOptions(nix_bin=wrapper, options={'substituters': ''})
    with AuthCache(str(folder), 'pub', PASSWORD) as cache:
        publisher = _publish.Publisher(opts, cache.url_with_login, secret)
        assert publisher.cache == cache.url
        done = publisher.publish([path])
        assert 'error' not in done[path] and done[path]['copied'], done
        assert cache.logins() == {'pub:%s' % PASSWORD}
        assert [m for m, _p, _l, code in cache.requests if m == 'PUT' and code == 200]
        again = _publish.Publisher(opts, cache.url_with_login, secret).publish([path])
        assert not again[path]['changed']
    recorded = log.read_text()
    assert PASSWORD not in recorded and 'copy ' in recorded
    assert not [f for line in recorded.splitlines() if line.startswith('netrc ')
                for f in line.split()[1:2] if os.path.exists(f)]


def test_publish_refuses_a_secret_query_parameter(tmp_path):
    secret = str(tmp_path / 'key')
    subprocess.run(['nix-store', '--generate-binary-cache-key', 'unit-1', secret,
                    str(tmp_path / 'key.pub')], check=True)
    with pytest.raises(_publish.PublishError) as info:
        _publish.Publisher(NixOptions(), 'https://cache?token=%s' % PASSWORD, secret)
    assert 'token' in str(info.value) and PASSWORD not in str(info.value)
