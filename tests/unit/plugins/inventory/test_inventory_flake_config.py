# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's evaluation and a flake's own nixConfig: not applied
(accept-flake-config = false after the user's configuration), said in one
warning naming the settings; the operator's opting in is said too. A real
``ansible-inventory`` and Nix on this machine."""

import json
import os
import shutil
import subprocess

import pytest

from tests.collection import BIN, ansible_env

pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')

FLAKE = '''{
  nixConfig.sandbox = false;
  nixConfig.pure-eval = false;
  outputs = { self }: {
    inventory.web = { targetHost = "192.0.2.7"; tags = [ (builtins.getEnv "NIXDEPLOY_TEST_WORD") ]; };
  };
}
'''


def inventory(tmp_path, options):
    folder = tmp_path / 'flake'
    folder.mkdir(exist_ok=True)
    (folder / 'flake.nix').write_text(FLAKE)
    config = tmp_path / ('fleet-%d.nix.yml' % len(options))
    config.write_text(json.dumps({'plugin': 'nixdeploy.fleet.nix', 'flake': 'path:%s' % folder,
                                  'nix_options': dict(options, substituters='')}))
    # as a CI's user configuration has it: the collection's own line still wins
    config_home = tmp_path / 'config'
    (config_home / 'nix').mkdir(parents=True, exist_ok=True)
    (config_home / 'nix' / 'nix.conf').write_text(
        'experimental-features = nix-command flakes\naccept-flake-config = true\n')
    return subprocess.run(
        [os.path.join(BIN, 'ansible-inventory'), '-i', str(config), '--list'],
        env=ansible_env({'XDG_CONFIG_HOME': str(config_home), 'NIXDEPLOY_TEST_WORD': 'fromenv',
                         'ANSIBLE_INVENTORY_ENABLED': 'nixdeploy.fleet.nix',
                         'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True'}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300,
        check=False)


def test_the_flakes_refused_settings_are_one_warning(tmp_path):
    run = inventory(tmp_path, {})
    assert run.returncode == 0, run.stderr
    assert 'web' in json.loads(run.stdout)['_meta']['hostvars']
    assert 'fromenv' not in run.stdout
    said = ' '.join(run.stderr.split())
    assert said.count('nixConfig sets pure-eval, sandbox: not applied') == 1, run.stderr
    assert 'flake configuration accepted' not in said


def test_the_operators_opting_in_is_a_warning(tmp_path):
    run = inventory(tmp_path, {'accept-flake-config': True})
    assert run.returncode == 0, run.stderr
    said = ' '.join(run.stderr.split())
    assert 'nixConfig sets' not in said, run.stderr
    assert said.count('flake configuration accepted') == 1, run.stderr
