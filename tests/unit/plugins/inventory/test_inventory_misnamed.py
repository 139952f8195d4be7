# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An inventory file meant for the plugin but named ``fleet.yml`` (issue 79):
the plugin reads only ``*.nix.yml`` / ``*.nix.yaml``, and ansible-core says
only that nothing parsed the file (the plugin's reason at -vvv). The plugin
says why and the fix in a warning at the default verbosity. The real
``ansible-inventory`` with this checkout as the collection; no Nix runs."""

import json
import os
import subprocess
import sys

import pytest

from tests.collection import BIN, ansible_env, collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (  # noqa: E402
    _inventory_config as config)

CONFIG = 'plugin: nixdeploy.fleet.nix\nflake: ..\nnix_options: {substituters: ""}\n'


def inventory(folder, source, enabled=None):
    extra = {}
    if enabled:
        # the quickstart's ansible.cfg: only this plugin, an unparsed source an error
        extra = {'ANSIBLE_INVENTORY_ENABLED': enabled, 'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True'}
    return subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', source, '--list'],
                          cwd=str(folder), env=ansible_env(extra), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300, check=False)


def fix_for(path):
    return ('[WARNING]: nixdeploy.fleet.nix: %s names plugin: nixdeploy.fleet.nix, but the plugin '
            'reads only files whose name ends in .nix.yml or .nix.yaml, so nothing read it: rename '
            'it to fleet.nix.yml' % path)


@pytest.mark.parametrize('enabled', [None, 'nixdeploy.fleet.nix'])
def test_a_misnamed_inventory_file_says_the_fix_without_vvv(tmp_path, enabled):
    (tmp_path / 'fleet.yml').write_text(CONFIG)
    run = inventory(tmp_path, 'fleet.yml', enabled)
    said = ' '.join(run.stderr.split())
    assert said.count(fix_for(tmp_path / 'fleet.yml')) == 1, run.stderr
    assert json.loads(run.stdout or '{}').get('_meta', {}).get('hostvars', {}) == {}
    if enabled:
        assert run.returncode != 0, run


def test_a_misnamed_file_in_an_inventory_folder(tmp_path):
    folder = tmp_path / 'inventory'
    folder.mkdir()
    (folder / 'fleet.yml').write_text(CONFIG)
    run = inventory(tmp_path, 'inventory/', 'nixdeploy.fleet.nix')
    assert ' '.join(run.stderr.split()).count(fix_for(folder / 'fleet.yml')) == 1, run.stderr


def test_only_a_file_meant_for_the_plugin(tmp_path):
    (tmp_path / 'fleet.yml').write_text(CONFIG)
    assert config.misnamed_config(str(tmp_path / 'fleet.yml')) is not None
    (tmp_path / 'fleet.json').write_text(json.dumps({'plugin': 'nixdeploy.fleet.nix'}))
    assert config.misnamed_config(str(tmp_path / 'fleet.json')).endswith('rename it to fleet.nix.yml')
    # another plugin's file, a plain YAML inventory, a file that is no YAML,
    # a well named one: nothing to say
    (tmp_path / 'aws.yml').write_text('plugin: amazon.aws.aws_ec2\n')
    (tmp_path / 'hosts.yml').write_text('all:\n  hosts:\n    web1:\n')
    (tmp_path / 'broken.yml').write_text('plugin: [\n')
    (tmp_path / 'hosts.ini').write_text('plugin: nixdeploy.fleet.nix\n')
    (tmp_path / 'fleet.nix.yml').write_text(CONFIG)
    for name in ('aws.yml', 'hosts.yml', 'broken.yml', 'hosts.ini', 'fleet.nix.yml', 'absent.yml'):
        assert config.misnamed_config(str(tmp_path / name)) is None, name
    run = inventory(tmp_path, 'aws.yml')
    assert 'nixdeploy.fleet.nix:' not in run.stderr, run.stderr
