"""The roles' argument specs, defaults and docs say the same thing."""

import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = ['deploy', 'rollback', 'publish', 'status']


def load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize('role', ROLES)
def test_defaults_match_the_argument_spec(role):
    options = load('roles', role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']
    defaults = load('roles', role, 'defaults', 'main.yml')
    for name, value in defaults.items():
        assert name in options, '%s: default %s is not in the argument spec' % (role, name)
        assert options[name].get('default') == value, (role, name)
    for name, spec in options.items():
        if 'default' in spec:
            assert name in defaults, '%s: %s has a spec default but none in defaults/main.yml' % (role, name)
        assert spec.get('description'), (role, name)


def test_issue_names_are_public_variables_of_the_deploy_role():
    options = load('roles', 'deploy', 'meta', 'argument_specs.yml')['argument_specs']['main']['options']
    for name in ('nix_flake', 'nix_goal', 'nix_build_on', 'nix_copy_mode', 'nix_caches',
                 'nix_magic_rollback', 'nix_confirm_timeout', 'nix_auto_rollback',
                 'nix_activation_timeout'):
        assert name in options
