"""nix_channel's request (``_channel_stage.ChannelRequest``): its fields
for a sample host, and its data exactly as a run before the type wrote it
(the batch file's entries hold it, compared with each host's own)."""

import dataclasses
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.publish._channel_stage import (  # noqa: E402
    ChannelRequest)

BASE = '/nonexistent-nixdeploy/play'
SYSTEM = '/nix/store/' + 'b' * 32 + '-nixos-system-web1'
REVISION = 'c' * 40
VARS = {'nix_flake': 'git+file:///srv/site?dir=hosts', 'nix_flake_revision': REVISION,
        'nix_out_path': SYSTEM, 'nix_published_path': SYSTEM}
PRESENT = {'state': 'present', 'require_published': True}


def test_a_move_is_the_dict_it_was():
    request = ChannelRequest.for_host('web1', PRESENT, VARS, BASE)
    # written out from the dicts ChannelStage._request made
    assert request.data() == {'ref': 'refs/heads/nixos-tested-web1', 'revision': REVISION,
                              'path': SYSTEM, 'git_dir': '/srv/site'}
    assert list(request.data()) == ['ref', 'revision', 'path', 'git_dir']
    assert request.git_dir == '/srv/site' and not request.query and request.error is None
    other = ChannelRequest.for_host(
        'web1', dict(PRESENT, require_published=False, git_dir='/srv/other'),
        dict(VARS, nix_flake='github:org/site', nix_channel_ref='refs/heads/live'), BASE)
    assert other.data() == {'ref': 'refs/heads/live', 'revision': REVISION, 'path': SYSTEM,
                            'git_dir': '/srv/other'}
    # the stage compares a host's request formed twice
    assert request == ChannelRequest.for_host('web1', PRESENT, dict(VARS), BASE)
    assert request != other
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.ref = 'refs/heads/main'


def test_a_query_is_the_dict_it_was():
    request = ChannelRequest.for_host('web1', dict(PRESENT, state='query', ref='tested/web1'),
                                      VARS, BASE)
    assert request.data() == {'ref': 'refs/heads/tested/web1',
                              'flake': 'git+file:///srv/site?dir=hosts'}
    assert list(request.data()) == ['ref', 'flake']
    assert request.query and request.flake == 'git+file:///srv/site?dir=hosts'


def test_a_host_without_a_request_is_its_error():
    request = ChannelRequest.for_host('web1', PRESENT, dict(VARS, nix_published_path=None), BASE)
    assert request.data() == {'error': (
        'its system %s is not in the cache: a channel moves only to a published system (run '
        'nixdeploy.fleet.nix_publish first, or require_published=false)' % SYSTEM)}
    assert ChannelRequest.for_host('web1', dict(PRESENT, state='query'),
                                   dict(VARS, nix_flake=None), BASE).data() == {
        'error': 'no flake: give flake, or set the host var nix_flake'}
    bad = ChannelRequest.for_host('web1', PRESENT, dict(VARS, nix_flake_revision='main'), BASE)
    assert list(bad.data()) == ['error'] and 'full commit id' in bad.error
