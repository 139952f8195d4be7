"""The cascade copy's request (``_cascade_stage.CascadeRequest``): its
fields for a sample host, and its data exactly as a run before the type
wrote it (the batch file's entries hold it, compared with each host's own)."""

import dataclasses
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _cascade_stage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy._cascade_stage import (  # noqa: E402
    CascadeRequest)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (  # noqa: E402
    StorePathError)

SYSTEM = '/nix/store/' + 'b' * 32 + '-nixos-system-web1'
ARGS = {'path': SYSTEM + '/sw/bin', 'copy_mode': 'cascade', 'remote_nix_dir': ''}


def test_the_data_is_what_the_dict_before_the_type_was():
    request = CascadeRequest.for_host(ARGS)
    # written out from the dict _cascade_stage._request made
    assert request.data() == {'path': SYSTEM, 'mode': 'cascade', 'remote_nix_dir': None}
    assert list(request.data()) == ['path', 'mode', 'remote_nix_dir']
    assert (request.path, request.mode, request.remote_nix_dir) == (SYSTEM, 'cascade', None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.path = '/nix/store/other'


def test_a_peers_request_is_its_own_tasks():
    args = dict(ARGS, remote_nix_dir='/opt/nix/bin')
    request = _cascade_stage._peer_request(args, {})
    assert request == CascadeRequest.for_host(args)
    assert request.data() == {'path': SYSTEM, 'mode': 'cascade',
                              'remote_nix_dir': '/opt/nix/bin'}


def test_no_peer_request_where_the_host_copies_otherwise():
    assert _cascade_stage._peer_request(dict(ARGS, copy_mode='push'), {}) is None
    assert _cascade_stage._peer_request(ARGS, {'ansible_connection': 'local'}) is None
    assert _cascade_stage._peer_request(ARGS, {'nix_build_on': 'target'}) is None
    assert _cascade_stage._peer_request(dict(ARGS, path='/etc'), {}) is None
    with pytest.raises(StorePathError):
        CascadeRequest.for_host(dict(ARGS, path='/etc'))
