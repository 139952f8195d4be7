"""Publishing: cache gaps, signatures, channel refs and git's answers.

Pure logic first; then the two pieces that run tools, each for real and
without a lab: a publish of a small store path to a file:// cache with the
controller's own nix, and channel moves in throwaway git repositories.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _closure  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixOptions)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.publish import (  # noqa: E402
    _channel, _publish)

P1 = '/nix/store/yp65nwcm3qq6n5j1ccmpgvgxhlxbn14m-nixos-system-h1-1'
P2 = '/nix/store/110879g0d9slzx4b09aizcm4wnnl0v0c-lab-extra-base-1'
P3 = '/nix/store/nxxmf3i31a2xgz6z724x3xanbinx4pkc-busybox'
C1 = '39eef89d807085e15bbcbe8cfdcf738d06143aac'
C2 = '9488d9ce56ac8c1aa8d5d89c2ed1b97ade3d8caf'


# ------------------------------------------------------------------ keys, URIs
def test_key_name_reads_only_the_name(tmp_path):
    key = tmp_path / 'key'
    key.write_text('fleet-cache-1:c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n')
    assert _publish.key_name(str(key)) == 'fleet-cache-1'


@pytest.mark.parametrize('text', ['', 'no-colon-here', ':c2VjcmV0', 'name with space:abc'])
def test_key_name_refuses_what_is_not_a_nix_key_without_echoing_it(tmp_path, text):
    key = tmp_path / 'key'
    key.write_text(text)
    with pytest.raises(_publish.PublishError) as exc:
        _publish.key_name(str(key))
    assert 'c2VjcmV0' not in str(exc.value) and 'no-colon' not in str(exc.value)


def test_key_name_of_a_missing_file(tmp_path):
    with pytest.raises(_publish.PublishError, match='cannot read the signing key file'):
        _publish.key_name(str(tmp_path / 'absent'))


@pytest.mark.parametrize('uri,binary', [
    ('file:///srv/cache', True), ('s3://bucket?region=eu-west-1', True),
    ('https://cache.example.org', True), ('HTTP://cache', True),
    ('ssh-ng://cache.example.org', False), ('ssh://cache', False),
    ('/srv/chroot-store', False), ('daemon', False)])
def test_binary_caches_sign_on_upload(uri, binary):
    assert _publish.is_binary_cache(uri) is binary


def test_signing_uri_appends_the_key_percent_encoded():
    assert _publish.signing_uri('file:///c', '/k/a key&x') == 'file:///c?secret-key=/k/a%20key%26x'
    assert (_publish.signing_uri('s3://b?region=x', '/k') == 's3://b?region=x&secret-key=/k')
    # the user's own secret-key= wins
    assert _publish.signing_uri('file:///c?secret-key=/mine', '/k') == 'file:///c?secret-key=/mine'


# ------------------------------------------------------------------ closures
# (every shape of path-info --json: test_nix_output.py)
def test_closures_and_cache_gaps():
    infos = _nix_output.path_infos([
        {'path': P1, 'references': [P1, P2]}, {'path': P2, 'references': [P3]},
        {'path': P3, 'references': []}])
    closure = _closure.walk(infos, P1)
    assert closure == {P1, P2, P3}
    cached = {P1: None, P2: {'signatures': ['other-1:x']},
              P3: {'signatures': ['other-1:x', 'fleet-1:y']}}
    assert _publish.cache_gaps(closure, cached, 'fleet-1') == ([P1], [P2])
    assert _publish.signed_by(cached[P3], 'fleet-1')
    assert not _publish.signed_by(cached[P3], 'fleet')  # the name, not a prefix of it


def test_describe_names_a_few_paths():
    paths = ['/nix/store/%032d-p' % i for i in range(8)]
    text = _publish.describe(paths)
    assert text.endswith('and 3 more') and text.count('/nix/store/') == 5


# ------------------------------------------------------------------ channel names
@pytest.mark.parametrize('name,full', [
    ('nixos-tested-web1', 'refs/heads/nixos-tested-web1'),
    ('tested/web1', 'refs/heads/tested/web1'),
    ('refs/tags/tested-web1', 'refs/tags/tested-web1')])
def test_full_ref(name, full):
    assert _channel.full_ref(name) == full


@pytest.mark.parametrize('name', ['', '-x', 'a b', 'a..b', 'a~1', 'a^', 'a:b', 'a?', 'a*',
                                  'a[b', 'a\\b', 'x/.hidden', 'x.lock', 'x/', 'x.', 'a//b',
                                  'a@{b', '@', 'tab\there', '{{ inventory_hostname }}'])
def test_unusable_refs_are_refused(name):
    with pytest.raises(_channel.ChannelError):
        _channel.full_ref(name)


def test_default_ref_and_commits():
    assert _channel.default_ref('web1') == 'nixos-tested-web1'
    assert _channel.check_commit(C1) == C1
    for bad in ('', 'HEAD', 'main', C1[:12], C1.upper(), C1 + ' '):
        with pytest.raises(_channel.ChannelError):
            _channel.check_commit(bad)


@pytest.mark.parametrize('repo,local', [
    ('/srv/fleet.git', True), ('fleet.git', True), ('../fleet', True),
    ('file:///srv/fleet.git', True), ('git@github.com:org/fleet.git', False),
    ('host:fleet', False), ('https://git.example.org/fleet', False),
    ('ssh://git@host/fleet', False)])
def test_local_repositories(repo, local):
    assert _channel.is_local_repo(repo) is local


def test_repo_location(tmp_path):
    (tmp_path / 'chan.git').mkdir()
    assert _channel.repo_location('chan.git', str(tmp_path)) == str(tmp_path / 'chan.git')
    assert _channel.repo_location('./new.git', '/play') == '/play/new.git'
    # a bare word that is no folder there: the checkout's remote
    assert _channel.repo_location('origin', str(tmp_path)) == 'origin'
    assert _channel.repo_location('git@github.com:o/f.git', '/play') == 'git@github.com:o/f.git'
    for bad in ('', '--upload-pack=x'):
        with pytest.raises(_channel.ChannelError):
            _channel.repo_location(bad)


def test_checkout_of_a_flake():
    assert _channel.checkout_of('git+file:///srv/my%20fleet?ref=main&dir=nix') == '/srv/my fleet'
    assert _channel.checkout_of('path:/srv/fleet') is None
    assert _channel.checkout_of('github:org/fleet') is None


# ------------------------------------------------------------------ git's outputs
def test_ls_remote_keeps_exact_refs_only():
    text = '%s\trefs/heads/nixos-tested-h1\n%s\trefs/heads/x/refs/heads/nixos-tested-h1\n' % (C1, C2)
    assert _channel.parse_ls_remote(text, ['refs/heads/nixos-tested-h1']) == {
        'refs/heads/nixos-tested-h1': C1}


def test_push_porcelain():
    text = ('To /srv/channels.git\n'
            ' \t%s:refs/heads/nixos-tested-h1\t39eef89..9488d9c\n'
            '!\t%s:refs/heads/nixos-tested-h2\t[rejected] (non-fast-forward)\n'
            '*\t%s:refs/heads/nixos-tested-h3\t[new branch]\n'
            '=\t%s:refs/heads/nixos-tested-h4\t[up to date]\nDone\n') % (C2, C1, C2, C2)
    found = _channel.parse_push(text)
    assert found['refs/heads/nixos-tested-h1'] == {'flag': ' ', 'summary': '39eef89..9488d9c'}
    assert found['refs/heads/nixos-tested-h2']['flag'] == '!'
    assert _channel.not_fast_forward(found['refs/heads/nixos-tested-h2']['summary'])
    assert found['refs/heads/nixos-tested-h3']['flag'] == '*'
    assert len(found) == 4


def test_plan():
    requests = {'h1': ('refs/heads/a', C2), 'h2': ('refs/heads/b', C2),
                'h3': ('refs/heads/shared', C1), 'h4': ('refs/heads/shared', C2)}
    decided = _channel.plan(requests, {'refs/heads/a': C2, 'refs/heads/b': C1})
    assert decided['h1'] == 'current' and decided['h2'] == 'move'
    # one ref, two commits: neither host moves it
    assert 'h4' in decided['h3'] and 'h3' in decided['h4']


def test_pin_clean_dirty_and_not_git():
    clean = {'revision': C1, 'locked': {'type': 'git', 'rev': C1},
             'url': 'git+file:///srv/fleet?ref=main&rev=%s' % C1}
    assert _channel.pin(clean) == (C1, clean['url'])
    with pytest.raises(_channel.ChannelError, match='uncommitted'):
        _channel.pin({'locked': {'type': 'git'}, 'url': 'git+file:///srv/fleet'})
    with pytest.raises(_channel.ChannelError, match='uncommitted'):   # Nix >= 2.20 says so
        _channel.pin({'dirtyRevision': C1 + '-dirty', 'locked': {'type': 'git'}})
    with pytest.raises(_channel.ChannelError, match='not a git flake'):
        _channel.pin({'locked': {'type': 'path'}, 'url': 'path:/srv/fleet'})


@pytest.mark.parametrize('version', ['2.8', '2.34'])
def test_pin_reads_what_nix_printed(version):
    samples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'nix',
                           'nix_samples')

    def sample(kind):
        with open(os.path.join(samples, 'flake-metadata-%s-%s.json' % (version, kind))) as handle:
            return json.load(handle)
    rev = '45c6883893e7b99ecb04dac18750727d200b44e2'
    revision, url = _channel.pin(sample('git'))
    assert revision == rev and url.startswith('git+file:///') and url.endswith('rev=' + rev)
    with pytest.raises(_channel.ChannelError, match='uncommitted'):
        _channel.pin(sample('dirty'))
    with pytest.raises(_channel.ChannelError, match='not a git flake'):
        _channel.pin(sample('path'))


# ------------------------------------------------------------------ real git
def git(cwd, *args):
    return subprocess.run(['git', '-c', 'user.name=t', '-c', 'user.email=t@localhost'] + list(args),
                          cwd=cwd, check=True, universal_newlines=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.strip()


def commit(work, name):
    with open(os.path.join(work, name), 'w') as handle:
        handle.write(name)
    git(work, 'add', name)
    git(work, 'commit', '-q', '-m', name)
    return git(work, 'rev-parse', 'HEAD')


@pytest.fixture
def repos(tmp_path):
    work, bare = str(tmp_path / 'work'), str(tmp_path / 'channels.git')
    os.makedirs(work)
    git(work, 'init', '-q')
    git(str(tmp_path), 'init', '-q', '--bare', bare)
    return work, bare


def test_refs_move_once_forward_never_back(repos):
    work, bare = repos
    first, second = commit(work, 'a'), commit(work, 'b')
    ref1, ref2 = 'refs/heads/nixos-tested-h1', 'refs/heads/nixos-tested-h2'
    g = _channel.Git()
    out = _channel.move(g, work, bare, {'h1': (ref1, first), 'h2': (ref2, first)})
    assert [out[h]['status'] for h in ('h1', 'h2')] == ['new', 'new']
    # check mode: a dry run says what would move and moves nothing
    out = _channel.move(g, work, bare, {'h1': (ref1, second)}, check_mode=True)
    assert (out['h1']['status'], out['h1']['before']) == ('would move', first)
    assert g.read(bare, [ref1]) == {ref1: first}
    out = _channel.move(g, work, bare, {'h1': (ref1, second), 'h2': (ref2, first)})
    assert (out['h1']['status'], out['h2']['status']) == ('moved', 'current')
    # a second identical move runs ls-remote only
    before = g.processes
    out = _channel.move(g, work, bare, {'h1': (ref1, second)})
    assert out['h1']['status'] == 'current' and g.processes == before + 1
    # publishing the older commit later leaves the newer one in place
    out = _channel.move(g, work, bare, {'h1': (ref1, first)})
    assert out['h1']['status'] == 'ahead' and 'error' not in out['h1']
    assert g.read(bare, [ref1]) == {ref1: second}
    # force rewinds, from the commit it read
    out = _channel.move(g, work, bare, {'h1': (ref1, first)}, force=True)
    assert out['h1']['status'] == 'moved'
    assert g.read(bare, [ref1]) == {ref1: first}


def test_a_refused_ref_holds_back_no_other(repos, tmp_path):
    work, bare = repos
    base = commit(work, 'a')
    # someone else's unrelated history on h2's ref
    other = str(tmp_path / 'other')
    os.makedirs(other)
    git(other, 'init', '-q')
    git(other, 'push', '-q', bare, '%s:refs/heads/nixos-tested-h2' % commit(other, 'z'))
    out = _channel.move(_channel.Git(), work, bare, {
        'h1': ('refs/heads/nixos-tested-h1', base), 'h2': ('refs/heads/nixos-tested-h2', base)})
    assert out['h1']['status'] == 'new'
    assert out['h2']['status'] == 'refused' and 'git refused' in out['h2']['error']


def test_no_checkout_to_push_from(repos):
    _work, bare = repos
    out = _channel.move(_channel.Git(), None, bare, {'h1': ('refs/heads/x', C1)})
    assert out['h1']['status'] == 'refused' and 'no local git checkout' in out['h1']['error']


# ------------------------------------------------------------------ real nix
def nix(*args):
    return subprocess.run(['nix', '--extra-experimental-features', 'nix-command flakes']
                          + list(args), check=True, universal_newlines=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout


def test_publish_to_a_file_cache_then_nothing_to_do(tmp_path):
    content = tmp_path / ('published-%s' % os.getpid())
    content.write_text('a system, for the test %s\n' % tmp_path)
    path = nix('store', 'add-file', str(content)).strip()
    other = tmp_path / ('unsigned-%s' % os.getpid())
    other.write_text('pushed earlier without our key %s\n' % tmp_path)
    unsigned = nix('store', 'add-file', str(other)).strip()
    secret, public = str(tmp_path / 'key'), str(tmp_path / 'key.pub')
    subprocess.run(['nix-store', '--generate-binary-cache-key', 'unit-1', secret, public],
                   check=True)
    cache = 'file://%s' % (tmp_path / 'cache')
    nix('copy', '--to', cache, unsigned)   # in the cache, but not signed by unit-1
    opts = NixOptions(options={'substituters': ''})

    publisher = _publish.Publisher(opts, cache, secret)
    planned = publisher.publish([path, unsigned], check_mode=True)
    assert planned[path]['missing_paths'] == 1 and planned[path]['changed']
    assert planned[unsigned]['unsigned_paths'] == 1 and planned[unsigned]['missing_paths'] == 0

    done = publisher.publish([path, unsigned])
    assert 'error' not in done[path] and 'error' not in done[unsigned], done
    assert done[path]['copied'] and not done[unsigned]['copied']
    again = _publish.Publisher(opts, cache, secret)
    second = again.publish([path, unsigned])
    assert not second[path]['changed'] and not second[unsigned]['changed']
    assert again.processes == 3   # validity, closure, one cache query: no copy, no signing


def test_an_unbuilt_system_fails_alone(tmp_path):
    secret, public = str(tmp_path / 'key'), str(tmp_path / 'key.pub')
    subprocess.run(['nix-store', '--generate-binary-cache-key', 'unit-1', secret, public],
                   check=True)
    publisher = _publish.Publisher(NixOptions(options={'substituters': ''}),
                                   'file://%s' % (tmp_path / 'cache'), secret)
    absent = '/nix/store/00000000000000000000000000000000-never-built'
    found = publisher.publish([absent, 'not-a-path'])
    assert "not in the controller's store" in found[absent]['error']
    assert 'not a store path' in found['not-a-path']['error']
    assert publisher.publish([absent], check_mode=True)[absent]['would_build']


def test_a_remote_of_the_checkout(repos):
    # CI: a remote (with its credentials) configured in the checkout, by name
    work, bare = repos
    git(work, 'remote', 'add', 'channels', bare)
    head = commit(work, 'a')
    out = _channel.move(_channel.Git(), work, 'channels', {'h1': ('refs/heads/nixos-tested-h1', head)})
    assert out['h1']['status'] == 'new'
    assert _channel.Git().read(bare, ['refs/heads/nixos-tested-h1']) == {
        'refs/heads/nixos-tested-h1': head}
