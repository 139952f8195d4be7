"""Credentials masked in every URL shape a flake reference, a store or cache
URI or a Nix or git message can hold (plugin_utils/common/_redact.py)."""

import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact  # noqa: E402


@pytest.mark.parametrize('given, shown', [
    # userinfo with a password: the user name stays
    ('git+https://oauth2:glpat-SECRET@gitlab.example/infra/fleet.git?ref=main',
     'git+https://oauth2:***@gitlab.example/infra/fleet.git?ref=main'),
    ('https://deploy:SECRET@cache.example/nix', 'https://deploy:***@cache.example/nix'),
    ('s3://user:SECRET@bucket?region=eu-west-1', 's3://user:***@bucket?region=eu-west-1'),
    ('ssh://root:SECRET@web1', 'ssh://root:***@web1'),
    # a password holding '@' (unescaped): up to the last '@' before the host
    ('https://u:p@SECRET@host/x', 'https://u:***@host/x'),
    # a bare token in the user's place (GitHub's idiom)
    ('git+https://ghp_SECRET@github.com/org/repo', 'git+https://***@github.com/org/repo'),
    ('tarball+https://SECRET@example.org/a.tar.gz', 'tarball+https://***@example.org/a.tar.gz'),
    # query parameters that carry a secret
    ('https://gitlab.example/api/v4/projects/1/repository/archive.tar.gz?private_token=SECRET&sha=abc',
     'https://gitlab.example/api/v4/projects/1/repository/archive.tar.gz?private_token=***&sha=abc'),
    ('git+https://example.org/r.git?access_token=SECRET', 'git+https://example.org/r.git?access_token=***'),
    ('https://example.org/a?ref=x&token=SECRET#frag', 'https://example.org/a?ref=x&token=***#frag'),
    ('https://b.s3.amazonaws.com/x?X-Amz-Credential=SECRET&X-Amz-Signature=SECRET&X-Amz-Date=1',
     'https://b.s3.amazonaws.com/x?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=1'),
    ('https://h/x?password=SECRET&api_key=SECRET&key=SECRET&sig=SECRET',
     'https://h/x?password=***&api_key=***&key=***&sig=***'),
    # both at once
    ('git+https://oauth2:SECRET@h/r.git?ref=main&access_token=SECRET',
     'git+https://oauth2:***@h/r.git?ref=main&access_token=***'),
    # private and access keys, JWTs, sessions, an OAuth code
    ('https://h/x?private_key=SECRET&privateKey=SECRET&access_key=SECRET&AWSAccessKeyId=SECRET',
     'https://h/x?private_key=***&privateKey=***&access_key=***&AWSAccessKeyId=***'),
    ('https://h/cb?code=SECRET&state=ok&jwt=SECRET&id_jwt=SECRET',
     'https://h/cb?code=***&state=ok&jwt=***&id_jwt=***'),
    ('https://h/x?session=SECRET&sessionid=SECRET&X-Amz-Session=SECRET',
     'https://h/x?session=***&sessionid=***&X-Amz-Session=***'),
])
def test_credentials_are_masked(given, shown):
    assert _redact.url(given) == shown
    assert 'SECRET' not in _redact.text(given)


@pytest.mark.parametrize('kept', [
    # an ssh login names a user, no secret
    'ssh-ng://root@web1', 'ssh://deploy@10.0.0.1:2222', 'git+ssh://git@github.com/org/repo',
    'ssh-ng://nix-ssh@[fe80::1%eth0]?remote-program=/run/current-system/sw/bin/nix-daemon',
    # no credential at all
    'github:org/repo/main?dir=hosts', 'path:/srv/fleet', 'git+file:///srv/fleet?dir=sub',
    'https://cache.nixos.org', '/nix/store/abc-nixos-system-web1-24.05',
    # a store's secret-key= is the path of the key file
    'file:///srv/cache?secret-key=/etc/nix/cache.key&compression=zstd',
    # an empty value, and text that only looks alike
    'https://h/x?token=', 'a = b', 'user@host', 'mail me at ops@example.org',
    # names that only hold `code` or `key` inside another word; store settings
    'https://h/x?zipcode=1&encode=x&barcode=y',
    'https://cache?priority=40&want-mass-query=true&ssl-key=/etc/k&compression=zstd',
    # `name=value` that is no host=TOKEN pair
    'a=b', 'x=github.com=SECRET', '/nix/store/abc-foo.bar=baz', 'system=x86_64-linux',
    'nix_options: the value of access-tokens holds a line break',
])
def test_what_is_no_credential_stays(kept):
    assert _redact.text(kept) == kept


def test_text_masks_every_url_inside_a_message():
    """Nix and git echo URLs inside longer messages, in quotes and colours."""
    message = ("evaluating git+https://oauth2:SECRET1@gitlab.example/infra.git#nixosConfigurations.web1 failed: "
               "error: unable to download 'https://u:SECRET2@cache.example/nix-cache-info?token=SECRET3': "
               "HTTP error 401\n\x1b[35;1mhttps://SECRET4@github.com/o/r\x1b[0m copying to ssh-ng://root@web1"
               "\naccess-tokens = github.com=SECRET5 gitlab.com=SECRET6")
    masked = _redact.text(message)
    assert 'SECRET' not in masked
    assert 'git+https://oauth2:***@gitlab.example/infra.git#nixosConfigurations.web1' in masked
    assert "'https://u:***@cache.example/nix-cache-info?token=***'" in masked
    assert '\x1b[35;1mhttps://***@github.com/o/r\x1b[0m' in masked
    assert 'ssh-ng://root@web1' in masked
    assert masked.endswith('access-tokens = ***')


def test_data_masks_every_string_of_a_result():
    result = {'flake': 'git+https://u:SECRET@h/r', 'hosts': ['a', 'https://t:SECRET@c'],
              'count': 3, 'ok': True, 'none': None, 'nested': {'msg': ('x?token=SECRET',)}}
    masked = _redact.data(result)
    assert masked == {'flake': 'git+https://u:***@h/r', 'hosts': ['a', 'https://t:***@c'],
                      'count': 3, 'ok': True, 'none': None, 'nested': {'msg': ['x?token=***']}}
    assert result['flake'] == 'git+https://u:SECRET@h/r'  # the original is left alone
    assert _redact.text(None) is None and _redact.text(5) == 5


@pytest.mark.parametrize('given, shown', [
    # nix.conf / NIX_CONFIG, YAML, JSON
    ('access-tokens = github.com=ghp_SECRET gitlab.com=PAT:SECRET', 'access-tokens = ***'),
    ('extra-access-tokens = github.com=SECRET\nsandbox = true',
     'extra-access-tokens = ***\nsandbox = true'),
    ('access-tokens: github.com=ghp_SECRET', 'access-tokens: ***'),
    ('{"access-tokens": "github.com=ghp_SECRET", "x": 1}', '{"access-tokens": "***", "x": 1}'),
    ('nix_options: {access_tokens: "gitlab.com=PAT:SECRET"}', 'nix_options: {access_tokens: "***"}'),
    # argv: the setting's name, then its value
    ("--option access-tokens 'github.com=ghp_SECRET gitlab.example.org:8443=PAT:SECRET'",
     "--option access-tokens 'github.com=*** gitlab.example.org:8443=***'"),
    # the value alone (a dict's value, an argv item): host=TOKEN pairs only
    ('github.com=ghp_SECRET', 'github.com=***'),
    ('github.com=ghp_SECRET gitlab.com=PAT:SECRET', 'github.com=*** gitlab.com=***'),
    (' git.example.org/group=SECRET ', ' git.example.org/group=*** '),
])
def test_access_tokens_in_every_form(given, shown):
    assert _redact.text(given) == shown


def test_data_masks_access_tokens_given_as_a_dict():
    """nix_options as a result or a report shows it: the key stays, the value is masked."""
    masked = _redact.data({'nix_options': {'access-tokens': 'github.com=ghp_SECRET',
                                           'max-jobs': 4},
                           'argv': ['nix', '--option', 'access-tokens', 'github.com=ghp_SECRET']})
    assert 'SECRET' not in repr(masked)
    assert masked['nix_options'] == {'access-tokens': 'github.com=***', 'max-jobs': 4}
    assert masked['argv'][-1] == 'github.com=***'
