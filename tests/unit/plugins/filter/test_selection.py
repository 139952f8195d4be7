"""The filter nixdeploy.fleet.selection: the playbooks' hosts, `all` when the
selection names a host, one sentence (a failed run) when it names none."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from ansible import context
from ansible.errors import AnsibleFilterError

from tests.collection import BIN, REPO, ansible_env, collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.filter import selection as plugin  # noqa: E402

selection = plugin.FilterModule().filters()['selection']

EMPTY = ("no host to deploy: the inventory holds no host (did the flake's inventory fail to "
         "parse? see the warnings above)")


@pytest.fixture
def cliargs(monkeypatch):
    """ansible-playbook's parsed command line, as the filter reads it."""
    def set_args(**args):
        monkeypatch.setattr(context, 'CLIARGS', args)
    set_args()
    return set_args


def test_a_selection_with_hosts_is_all(cliargs):
    assert selection(['web1'], 'deploy', ['web1', 'db1'], 'web1') == 'all'
    assert selection(['web1', 'db1'], 'deploy', ['web1', 'db1'], None) == 'all'


def test_an_empty_inventory_fails_with_its_cause(cliargs):
    with pytest.raises(AnsibleFilterError) as exc:
        selection([], 'deploy', [], 'vps')
    assert str(exc.value) == EMPTY
    with pytest.raises(AnsibleFilterError) as exc:
        selection([], 'roll back', None, None)
    assert str(exc.value).startswith('no host to roll back: the inventory holds no host')


def test_a_limit_matching_none_names_the_limit_and_the_count(cliargs):
    with pytest.raises(AnsibleFilterError) as exc:
        selection([], 'publish', ['web1', 'web2', 'db1'], 'vpss')
    assert str(exc.value) == 'no host to publish: -l vpss matched none of the 3 hosts of the inventory'
    with pytest.raises(AnsibleFilterError) as exc:
        selection([], 'deploy', ['web1'], None)
    assert str(exc.value) == 'no host to deploy: the play selected none of the 1 host of the inventory'


def test_a_syntax_check_passes_without_hosts(cliargs):
    """ansible-lint runs --syntax-check, often with no inventory."""
    cliargs(syntax=True)
    assert selection([], 'deploy', [], None) == 'all'
    cliargs(syntax=False, check=True)
    with pytest.raises(AnsibleFilterError):
        selection([], 'deploy', [], None)


def test_bad_input_is_a_filter_error(cliargs):
    with pytest.raises(AnsibleFilterError):
        selection('web1')
    with pytest.raises(AnsibleFilterError):
        selection(None)


@pytest.mark.parametrize('playbook, what', [('deploy', 'deploy'), ('rollback', 'roll back'),
                                            ('publish', 'publish')])
def test_the_playbooks_select_through_it(playbook, what):
    with open(os.path.join(REPO, 'playbooks', playbook + '.yml')) as handle:
        play = yaml.safe_load(handle)[0]
    assert play['hosts'] == ("{{ ansible_play_hosts_all | nixdeploy.fleet.selection(%r, groups['all'], "
                             "ansible_limit | default(none)) }}" % what)


def test_ansible_doc_reads_the_filter():
    proc = subprocess.run([os.path.join(BIN, 'ansible-doc'), '-t', 'filter', '--json',
                           'nixdeploy.fleet.selection'], env=ansible_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)['nixdeploy.fleet.selection']
    assert set(doc['doc']['options']) == {'_input', 'what', 'inventory', 'limit'}
    assert doc['return']['_value']['type'] == 'str'
