"""What a platform cannot do is refused at nix_eval's check of the role
variables, before anything of the host is evaluated or built (issue 93):
a goal its platform lacks (``-e nix_goal=boot`` on a fleet with a
nix-darwin host) and an activation that needs root run as the login user
(nix-darwin without become). The rule is the platform table's
(module_utils/_platforms.py), the same one the activation applies late;
only where the inventory gives the platform (nix_platform) and the run
activates (its tags).

The real ``ansible-playbook`` with this checkout as the collection and real
Nix on a plain flake; hosts with the local connection (the check reads the
inventory's user and become, and logs in nowhere)."""

import shutil
import sys

import pytest

from tests.collection import collections_path, run_playbook

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms  # noqa: E402

FLAKE = r'''{
  outputs = { self }:
    let drv = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; };
    in {
      nixosConfigurations.web.config.system.build.toplevel = drv "web";
      darwinConfigurations = {
        mac.system = drv "mac";
        root.system = drv "root";
        sudo.system = drv "sudo";
        boot.system = drv "boot";
      };
    };
}
'''


def test_the_table_says_what_a_platform_cannot_do():
    boot = _platforms.goal_row('boot')
    assert _platforms.goal_problem('darwin', boot) == (
        'darwin supports the goals switch, not boot')
    assert _platforms.goal_problem('nixos', boot) is None
    # a dry goal every platform has
    assert _platforms.goal_problem('darwin', _platforms.goal_row('dry-activate')) is None
    assert _platforms.root_refusal('darwin', 'deploy') == (
        'activating a darwin system needs root, but this runs as deploy: connect as root or '
        'set become')
    assert _platforms.root_refusal('darwin', 'root') is None
    assert _platforms.root_refusal('home-manager', 'app') is None


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    """One play of nix_eval from the role's variables, a host per case: (the
    records of its runs, by the run's tags)."""
    if shutil.which('nix') is None:
        pytest.skip('needs nix')
    base = tmp_path_factory.mktemp('platform-refusals')
    flake = base / 'fleet'
    flake.mkdir()
    (flake / 'flake.nix').write_text(FLAKE)
    common = {'ansible_connection': 'local', 'nix_flake': 'path:%s' % flake,
              'nix_options': {'substituters': ''}, 'nix_eval_cache': False}
    hosts = {
        # NixOS has the boot goal
        'web': dict(common, nix_platform='nixos', nix_configuration='web', nix_goal='boot'),
        # nix-darwin as its deploy user, without become
        'mac': dict(common, nix_platform='darwin', nix_configuration='mac',
                    ansible_user='deploy'),
        # as root, or with become: it activates as root
        'root': dict(common, nix_platform='darwin', nix_configuration='root',
                     ansible_user='root'),
        'sudo': dict(common, nix_platform='darwin', nix_configuration='sudo',
                     ansible_user='deploy', ansible_become=True),
        # a goal nix-darwin lacks
        'boot': dict(common, nix_platform='darwin', nix_configuration='boot',
                     ansible_user='deploy', ansible_become=True, nix_goal='boot'),
    }
    play = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'evaluate', 'nixdeploy.fleet.nix_eval': {'from_role_vars': True},
         'tags': ['eval']}]}]
    runs = {}
    for tags in ('all', 'eval'):
        run = run_playbook(play, {'all': {'hosts': hosts}}, str(base / tags), args=['-t', tags])
        runs[tags] = dict((r['host'], r) for r in run.records if r.get('task') == 'evaluate')
        assert set(runs[tags]) == set(hosts), run
    return runs


def refused(evaluated, host, start, evaluated_first=False):
    """The message of ``host``'s failure at eval, which starts with
    ``start``; nothing of the host was evaluated, unless ``evaluated_first``
    (a rule judged after the login probe, which runs beside the evaluation)."""
    record = evaluated['all'][host]
    assert record['status'] == 'failed', record
    said = record['result']['msg']
    assert said.startswith('%s: %s' % (host, start)), said
    assert record['result']['phase'] == 'eval', record
    assert ('drv_path' in record['result']) == evaluated_first, record
    return said


def test_a_darwin_host_without_become_is_refused_at_its_evaluation(evaluated):
    # judged after the login probe (a user that cannot log in is told so
    # first: tests/integration/plugins/action/test_failure_messages.py, f5)
    said = refused(evaluated, 'mac', 'activating a darwin system needs root, but this runs as '
                   'deploy: connect as root or set become', evaluated_first=True)
    assert 'ansible_user is deploy and ansible_become is not set' in said, said
    # as root, or deploy with become: evaluated
    for host in ('root', 'sudo'):
        assert evaluated['all'][host]['status'] == 'ok', evaluated['all'][host]


def test_a_goal_the_platform_lacks_is_refused_before_its_evaluation(evaluated):
    said = refused(evaluated, 'boot', 'darwin supports the goals switch, not boot (nix_goal is '
                   'boot for this host)')
    assert '(-l)' in said, said
    # NixOS has it
    assert evaluated['all']['web']['status'] == 'ok', evaluated['all']['web']


def test_a_run_that_activates_nothing_refuses_nothing(evaluated):
    """``--tags eval``: no activation, so nothing for it to refuse."""
    assert all(r['status'] == 'ok' for r in evaluated['eval'].values()), evaluated['eval']
