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


# ---- a run outside the fleet's folder -------------------------------------------

def fleet_folder(path):
    """A folder laid out as the quickstart's: ansible.cfg, inventory/*.nix.yml."""
    (path / 'inventory').mkdir(parents=True)
    (path / 'inventory' / 'fleet.nix.yml').write_text('plugin: nixdeploy.fleet.nix\n')
    (path / 'ansible.cfg').write_text('[defaults]\ninventory = inventory/\n')
    return path


def test_no_ansible_cfg_read_names_the_fleet_folder_near(tmp_path, monkeypatch, cliargs):
    """Run from the folder above the fleet's, from inside its inventory/, or
    far from any: the line says no ansible.cfg was read and where to cd."""
    monkeypatch.setattr(plugin.C, 'CONFIG_FILE', None)
    # ansible-core's default inventory, without an ansible.cfg
    cliargs(inventory=['/etc/ansible/hosts'])
    fleet = fleet_folder(tmp_path / 'work' / 'fleet')
    said = plugin.wrong_folder(str(tmp_path))
    assert said == ('wrong folder: Ansible read no ansible.cfg in %s, so it has no inventory of '
                    'your fleet; cd work/fleet and run again' % tmp_path)
    assert plugin.wrong_folder(str(fleet / 'inventory')).endswith(
        '; cd %s and run again' % fleet)
    (tmp_path / 'far').mkdir()
    assert plugin.wrong_folder(str(tmp_path / 'far')).endswith(
        "; cd to your fleet's folder (the one with ansible.cfg and inventory/) and run again")
    # the fleet's folder itself, world-writable: ansible-core ignores its ansible.cfg
    os.chmod(str(fleet), 0o777)
    assert plugin.wrong_folder(str(fleet)) == (
        'Ansible read no ansible.cfg: it ignores the one in %s, a world-writable folder; '
        'chmod o-w %s and run again' % (fleet, fleet))


def test_every_fleet_folder_near_is_named_but_not_others_work(tmp_path, monkeypatch, cliargs):
    """Two fleets below the run's folder: both named (the user chooses), a
    few at most; a clone's own examples/ is not the user's fleet; nothing
    below a folder every user writes in (as /tmp: another session's fleet
    there is not this user's) is named."""
    monkeypatch.setattr(plugin.C, 'CONFIG_FILE', None)
    cliargs(inventory=['/etc/ansible/hosts'])
    work = tmp_path / 'work'
    fleet_folder(work / 'fleet-a')
    fleet_folder(work / 'lab' / 'fleet-b')
    assert plugin.wrong_folder(str(work)).endswith(
        "; cd to your fleet's folder and run again: fleet-a or lab/fleet-b")
    for name in ('fleet-c', 'fleet-d'):
        fleet_folder(work / name)
    assert plugin.wrong_folder(str(work)).endswith(
        "; cd to your fleet's folder and run again: fleet-a, fleet-c or fleet-d")
    # a clone of the collection: neither its demo layout nor its examples
    # are the user's fleet (run from above it, or from inside it)
    clone = fleet_folder(tmp_path / 'clone')
    fleet_folder(clone / 'examples' / 'demo')
    (clone / 'galaxy.yml').write_text('namespace: nixdeploy\nname: fleet\n')
    for where in (tmp_path / 'clone', tmp_path / 'clone' / 'inventory'):
        assert plugin.wrong_folder(str(where)).endswith(
            "; cd to your fleet's folder (the one with ansible.cfg and inventory/) and run again")
    fleet_folder(clone / '.lab' / 'try')
    assert plugin.wrong_folder(str(clone)).endswith('; cd .lab/try and run again')
    # a shared folder: another session's fleet below it is not named
    shared = tmp_path / 'shared'
    fleet_folder(shared / 'session' / 'fleet')
    os.chmod(str(shared), 0o1777)
    assert plugin.wrong_folder(str(shared)).endswith(
        "; cd to your fleet's folder (the one with ansible.cfg and inventory/) and run again")


def test_an_inventory_that_is_not_a_fleets_is_named(tmp_path, monkeypatch, cliargs):
    """ansible.cfg read, but its inventory holds no file of the nix plugin."""
    other = tmp_path / 'other'
    (other / 'hosts').mkdir(parents=True)
    monkeypatch.setattr(plugin.C, 'CONFIG_FILE', str(other / 'ansible.cfg'))
    cliargs(inventory=[str(other / 'hosts')])
    fleet_folder(tmp_path / 'other' / 'fleet')
    assert plugin.wrong_folder(str(other)) == (
        'wrong folder: the inventory %s (from %s) holds no host and no .nix.yml file of the '
        'nixdeploy.fleet.nix plugin; cd fleet and run again' % (other / 'hosts', other / 'ansible.cfg'))
    # the fleet's own inventory that parsed to no host is not a wrong folder
    cliargs(inventory=[str(tmp_path / 'other' / 'fleet' / 'inventory')])
    assert plugin.wrong_folder(str(other)) is None
    cliargs(inventory=['web1,web2,'])
    assert plugin.wrong_folder(str(other)) is None
    # -i of the fleet's inventory from a folder without ansible.cfg: its own warnings say why
    monkeypatch.setattr(plugin.C, 'CONFIG_FILE', None)
    cliargs(inventory=[str(tmp_path / 'other' / 'fleet' / 'inventory' / 'fleet.nix.yml')])
    assert plugin.wrong_folder(str(tmp_path)) is None


def test_a_wrong_folder_is_one_line_and_exit_code_1(tmp_path):
    """What the user sees: ansible-playbook in a folder without ansible.cfg,
    the collection found: one [ERROR] line naming the folder, no playbook
    source quoted, exit code 1 (docs/troubleshooting.md)."""
    fleet_folder(tmp_path / 'fleet')
    env = ansible_env()
    for key in ('ANSIBLE_CONFIG', 'ANSIBLE_INVENTORY'):
        env.pop(key, None)
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'nixdeploy.fleet.deploy',
                           '-l', 'vps'], cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    errors = [line for line in proc.stderr.splitlines() if '[ERROR]' in line]
    assert proc.returncode == 1, proc.stderr
    assert errors == ['[ERROR]: wrong folder: Ansible read no ansible.cfg in %s, so it has no '
                      'inventory of your fleet; cd fleet and run again' % tmp_path], proc.stderr
    assert 'hosts:' not in proc.stderr and 'Origin' not in proc.stderr, proc.stderr
