"""The eval phase's request (``_eval.EvalRequest``): its fields for a
sample host, and its data exactly as a run before the type wrote it (batch
entries, batch server request files and ``request_key`` compare and hash it)."""

import dataclasses
import json
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import _eval  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import (  # noqa: E402
    flake_ref)

# a folder no git work tree holds: its flake is a plain path: flake
BASE = '/nonexistent-nixdeploy/play'
WEB_VARS = {'nix_flake': './flakes/site', 'nix_platform': 'nixos', 'nix_configuration': 'web-01'}


def request_of(host, hostvars, args=None):
    """The request ``host``'s task forms: its arguments filled from its
    variables as the option table says."""
    filled = _role_vars.fill(_role_vars.EVAL, args or {}, hostvars, lambda v: v, False)
    return _eval.EvalRequest.for_host(host, filled.args, hostvars,
                                      lambda flake: flake_ref(flake, BASE))


def test_the_data_is_what_the_dict_before_the_type_was():
    data = request_of('web1', WEB_VARS).data()
    # written out from the dict host_request made before EvalRequest
    assert data == {
        'flake': 'path:/nonexistent-nixdeploy/play/flakes/site',
        'attr': ['nixosConfigurations', 'web-01', 'config', 'system', 'build', 'toplevel'],
        'attr_string': 'nixosConfigurations.web-01.config.system.build.toplevel',
        'platform': 'nixos',
    }
    # key order too: a request file and an entry are JSON text
    assert list(data) == ['flake', 'attr', 'attr_string', 'platform']
    assert _eval.normalised(data) == data
    # the key of a cache's or a batch's earlier run
    assert _eval.request_key(data) == (
        '["path:/nonexistent-nixdeploy/play/flakes/site", ["nixosConfigurations", "web-01", '
        '"config", "system", "build", "toplevel"]]')


def test_a_quoted_attribute_and_a_platform_read_from_its_output():
    hostvars = {'nix_flake': 'github:org/site',
                'nix_attr': 'homeConfigurations."app@h.example".activationPackage'}
    data = request_of('h', hostvars).data()
    assert json.dumps(data) == (
        '{"flake": "github:org/site", "attr": ["homeConfigurations", "app@h.example", '
        '"activationPackage"], "attr_string": "homeConfigurations.\\"app@h.example\\".'
        'activationPackage", "platform": "home-manager"}')


def test_fields_are_named_and_the_request_is_frozen():
    request = request_of('web1', WEB_VARS)
    assert request.flake == 'path:/nonexistent-nixdeploy/play/flakes/site'
    assert request.attr == ('nixosConfigurations', 'web-01', 'config', 'system', 'build',
                            'toplevel')
    assert request.platform == 'nixos'
    assert request == request_of('web1', dict(WEB_VARS))
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.flake = 'github:other/flake'
    # the data form a caller that only passes data on still gets
    assert _eval.host_request('web1', {'flake': './flakes/site'}, WEB_VARS,
                              lambda flake: flake_ref(flake, BASE)) == request.data()


def test_no_request_without_a_flake_or_an_attribute():
    with pytest.raises(_eval.EvalError):
        request_of('h', {'nix_platform': 'nixos'})
    with pytest.raises(_eval.EvalError):
        request_of('h', {'nix_flake': 'github:org/site'})
