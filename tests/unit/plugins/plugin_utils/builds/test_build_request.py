"""The build phase's request (``_build.BuildRequest``): its fields for a
sample host, and its data exactly as a run before the type wrote it (the
build server's request files and entries hold it)."""

import dataclasses
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _build  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds._builders import (  # noqa: E402
    BuildOnError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (  # noqa: E402
    EvalError, EvalRequest)

# a folder no git work tree holds: its flake is a plain path: flake
BASE = '/nonexistent-nixdeploy/play'
WEB_VARS = {'nix_flake': './flakes/site', 'nix_platform': 'nixos', 'nix_configuration': 'web-01'}
DRV = '/nix/store/' + 'a' * 32 + '-nixos-system-web1.drv'


def test_a_request_to_evaluate_first_is_the_dict_it_was():
    request = _build.BuildRequest.for_host(
        'web1', {'drv_path': None, 'flake': './flakes/site', 'build_on': 'b1, ssh-ng://b2'},
        WEB_VARS, BASE)
    data = request.data()
    # written out from the dict nix_build's ActionModule._request made
    assert data == {
        'drv': None,
        'eval': {
            'flake': 'path:/nonexistent-nixdeploy/play/flakes/site',
            'attr': ['nixosConfigurations', 'web-01', 'config', 'system', 'build', 'toplevel'],
            'attr_string': 'nixosConfigurations.web-01.config.system.build.toplevel',
            'platform': 'nixos',
        },
        'build_on': ['b1', 'ssh-ng://b2'],
    }
    assert list(data) == ['drv', 'eval', 'build_on']
    assert isinstance(request.evaluation, EvalRequest)
    assert request.build_on == ('b1', 'ssh-ng://b2') and request.drv is None


@pytest.mark.parametrize('build_on, place', [(None, 'controller'), ('target', 'target'),
                                             ('b1', 'b1')])
def test_a_request_with_its_derivation_is_the_dict_it_was(build_on, place):
    request = _build.BuildRequest.for_host('web1', {'drv_path': DRV, 'build_on': build_on},
                                           WEB_VARS, BASE)
    assert request.data() == {'drv': DRV, 'eval': None, 'build_on': place}
    assert list(request.data()) == ['drv', 'eval', 'build_on']
    assert request.build_on == place and request.evaluation is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.drv = None


def test_no_request_for_a_file_that_is_no_derivation_or_a_bad_place():
    with pytest.raises(EvalError):
        _build.BuildRequest.for_host('web1', {'drv_path': '/etc/passwd'}, WEB_VARS, BASE)
    with pytest.raises(EvalError):
        _build.BuildRequest.for_host('web1', {'drv_path': DRV[:-4]}, WEB_VARS, BASE)
    with pytest.raises(BuildOnError):
        _build.BuildRequest.for_host('web1', {'drv_path': DRV, 'build_on': 'b1,target'},
                                     WEB_VARS, BASE)
