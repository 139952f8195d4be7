"""The eval batch's side of the role variable check (issue 61): the
batch's process evaluates nothing of a host its own task refuses, lists
the hosts of each unknown nix_* variable for one warning, and a nix_bin
that cannot run is the error family's sentence, not a traceback."""

import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage import (  # noqa: E402
    _stage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixError, NixOptions)

SENTENCE = ("nix_bin: cannot run /opt/nonexistent/nix (No such file or directory); set nix_bin "
            "to the nix executable or put nix on the controller's PATH")


def test_a_host_with_a_bad_variable_is_refused_with_its_own_tasks_message():
    unknown = {}
    refused = _stage.refused_vars('h2', {'nix_goal': 'bot', 'nix_gaol': 'boot'}, unknown)
    assert refused == ("nix_goal: 'bot' is not one of switch, boot, test, dry-activate "
                       "(did you mean boot?)")
    # its typo is still listed for the warning
    assert unknown == {'nix_gaol': ['nix_goal', ['h2']]}
    assert _stage.refused_vars('h1', {'nix_goal': 'boot', 'nix_gaol': 'boot'}, unknown) is None
    assert unknown == {'nix_gaol': ['nix_goal', ['h2', 'h1']]}


def test_an_unknown_variable_is_the_hosts_error_when_it_says_so():
    unknown = {}
    refused = _stage.refused_vars('h1', {'nix_gaol': 'boot', 'nix_unknown_vars': 'error'},
                                  unknown)
    assert refused == ('nix_gaol: not a variable of the deploy role; did you mean nix_goal? '
                       '(nix_unknown_vars is error)')
    assert unknown == {}


def test_a_template_that_fails_is_left_to_the_hosts_own_task():
    class Failing(dict):
        def get(self, key, default=None):
            raise ValueError('undefined')
    assert _stage.refused_vars('h1', Failing(nix_goal='bot'), {}) is None


def test_one_warning_a_variable_naming_its_hosts():
    notes = _stage.unknown_notes({
        'nix_gaol': ['nix_goal', ['h%d' % n for n in range(7, 0, -1)]],
        'nix_zzz': [None, ['h1']]})
    assert notes == {
        'nix_gaol': 'nix_gaol: not a variable of the deploy role; did you mean nix_goal? '
                    '(set for 7 hosts: h1, h2, h3, h4, h5 and 2 more)',
        'nix_zzz': 'nix_zzz: not a variable of the deploy role (set for 1 host: h1)'}


def test_a_nix_bin_that_does_not_exist_is_the_sentence(tmp_path):
    stage = _stage.EvalStage(NixOptions(nix_bin='/opt/nonexistent/nix'), workers=1)
    with pytest.raises(NixError) as info:
        stage.evaluate({'h1': {'flake': str(tmp_path), 'attr': ['x'], 'attr_string': 'x',
                               'platform': 'nixos'}}, lambda host, entry: None)
    assert str(info.value) == SENTENCE


def test_a_nix_bin_that_is_not_executable_says_so(tmp_path):
    plain = tmp_path / 'nix'
    plain.write_text('not a program')
    stage = _stage.EvalStage(NixOptions(nix_bin=str(plain)), workers=1)
    with pytest.raises(NixError) as info:
        stage.runner.features()
    assert str(info.value).startswith('nix_bin: cannot run %s (Permission denied' % plain)
