# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The config file and the flake it names, checked before Nix runs: each
mistake in the user's words with its fix (issue 61)."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
if 'ansible_collections.nixdeploy.fleet' not in sys.modules:
    sys.path.insert(0, REPO)
    from tests.collection import collections_path  # noqa: E402
    sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (  # noqa: E402
    _inventory_config as config)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (  # noqa: E402
    _inventory_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import flake_ref  # noqa: E402

InventoryError = _inventory_error.InventoryError
GIT = shutil.which('git')
needs_git = pytest.mark.skipif(GIT is None, reason='needs git')
KNOWN = ['plugin', 'flake', 'source', 'attribute', 'nix_bin', 'nix_options', 'compose', 'strict']


def git(path, *args):
    subprocess.run([GIT, '-C', str(path)] + list(args), check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)


def test_known_keys_pass():
    config.check_keys({'plugin': 'nixdeploy.fleet.nix', 'flake': '..', 'strict': True}, KNOWN, '/p/f.nix.yml')


@pytest.mark.parametrize('key, hint', [
    ('flak', 'did you mean flake?'),
    ('nix_option', 'did you mean nix_options?'),
    ('sorce', 'did you mean source?'),
    ('qwertyuiop', 'the options: ansible-doc -t inventory nixdeploy.fleet.nix'),
])
def test_an_unknown_key_is_refused_with_the_nearest(key, hint):
    with pytest.raises(InventoryError) as exc:
        config.check_keys({'plugin': 'nixdeploy.fleet.nix', key: 1}, KNOWN, '/p/f.nix.yml')
    assert str(exc.value) == 'unknown option %s in /p/f.nix.yml; %s' % (key, hint)


def test_a_missing_nix_names_the_option(tmp_path):
    with pytest.raises(InventoryError) as exc:
        config.check_nix('/opt/nonexistent/nix', '/p/f.nix.yml')
    assert str(exc.value) == ('nix_bin /opt/nonexistent/nix in /p/f.nix.yml is no program on this '
                              'controller: set nix_bin to the path of nix (command -v nix), or remove '
                              'it to use nix from PATH')
    with pytest.raises(InventoryError) as exc:
        config.check_nix('nix-not-on-path-here', '/p/f.nix.yml')
    assert str(exc.value) == ('nix-not-on-path-here is not on the PATH of this controller: install Nix '
                              'here, or set nix_bin in /p/f.nix.yml to the path of the nix program')
    program = tmp_path / 'nix'
    program.write_text('#!/bin/sh\n')
    program.chmod(0o755)
    config.check_nix(str(program), '/p/f.nix.yml')


def test_a_folder_without_flake_nix(tmp_path):
    inventory = tmp_path / 'inventory'
    inventory.mkdir()
    path = str(inventory / 'fleet.nix.yml')
    with pytest.raises(InventoryError) as exc:
        config.check_flake_folder('../nonexistent', flake_ref('../nonexistent', str(inventory)), path)
    assert str(exc.value) == 'no flake.nix in %s/nonexistent (flake: ../nonexistent relative to %s)' % (
        tmp_path, path)
    absolute = str(tmp_path / 'elsewhere')
    with pytest.raises(InventoryError) as exc:
        config.check_flake_folder(absolute, flake_ref(absolute, str(inventory)), path)
    assert str(exc.value) == 'no flake.nix in %s (flake: %s in %s)' % (absolute, absolute, path)
    (tmp_path / 'flake.nix').write_text('{ outputs = _: { }; }')
    config.check_flake_folder('..', flake_ref('..', str(inventory)), path)


def test_a_flake_reference_is_left_to_nix():
    for ref in ('github:example/infra', 'path:/nonexistent', 'git+https://example.org/x.git'):
        config.check_flake_folder(ref, flake_ref(ref, '/p'), '/p/f.nix.yml')


@needs_git
def test_an_untracked_flake_nix(tmp_path):
    (tmp_path / 'inventory').mkdir()
    (tmp_path / 'flake.nix').write_text('{ outputs = _: { }; }')
    git(tmp_path, 'init', '-q')
    path = str(tmp_path / 'inventory' / 'fleet.nix.yml')
    ref = flake_ref('..', str(tmp_path / 'inventory'))
    assert ref == 'git+file://%s' % tmp_path
    with pytest.raises(InventoryError) as exc:
        config.check_flake_folder('..', ref, path)
    assert str(exc.value) == ('flake.nix is not tracked by git in %s: git add flake.nix (Nix reads '
                              'only the files git tracks)' % tmp_path)
    git(tmp_path, 'add', 'flake.nix')  # staged is enough: Nix reads the index
    config.check_flake_folder('..', ref, path)


@needs_git
def test_an_untracked_file_the_flake_imports(tmp_path):
    """Nix's own words for it name the store copy; the work tree's file is
    named instead when it is there but untracked."""
    (tmp_path / 'hosts').mkdir()
    (tmp_path / 'hosts' / 'web.nix').write_text('{ }')
    (tmp_path / 'flake.nix').write_text('{ }')
    git(tmp_path, 'init', '-q')
    git(tmp_path, 'add', 'flake.nix')
    ref = 'git+file://%s' % tmp_path
    said = ("error: getting status of '/nix/store/%s-source/hosts/web.nix': No such file or directory"
            % ('a' * 32))
    assert config.untracked_source(said, ref) == (
        'hosts/web.nix is not tracked by git in %s: git add hosts/web.nix (Nix reads only the files '
        'git tracks)' % tmp_path)
    git(tmp_path, 'add', 'hosts/web.nix')
    assert config.untracked_source(said, ref) is None
    # a file missing from the work tree too, or a path: flake: Nix's words stand
    gone = said.replace('hosts/web.nix', 'hosts/db.nix')
    assert config.untracked_source(gone, ref) is None
    assert config.untracked_source(said, 'path:%s' % tmp_path) is None


def test_nixs_own_untracked_sentence_is_ours():
    """Nix 2.20+ say it themselves, under frames of the plugin's expression."""
    said = ('error:\n       … while calling the \'seq\' builtin\n         at «string»:196:1:\n'
            '       error: Path \'hosts.nix\' in the repository "/home/me/fleet" is not tracked by Git.\n'
            '       To make it visible to Nix, run:\n       git -C "/home/me/fleet" add "hosts.nix"')
    assert config.untracked_source(said, 'git+file:///home/me/fleet') == (
        'hosts.nix is not tracked by git in /home/me/fleet: git add hosts.nix (Nix reads only the '
        'files git tracks)')


TRACE = '''error:
       … while calling the 'seq' builtin
         at «string»:196:1:
          196| builtins.seq sourceFound {
             | ^
       … while evaluating attribute 'tags'
         at /nix/store/aaaa-source/flake.nix:3:5:
            3|     tags = throw "boom";
       (stack trace truncated; use '--show-trace' to show the full, detailed trace)
       error: boom'''


def test_nix_error_drops_the_frames_of_the_plugins_expression():
    short = config.nix_error(TRACE)
    assert '«string»' not in short and 'seq' not in short
    # the user's own frame and Nix's message stay, and the hint to see more
    assert "… while evaluating attribute 'tags'" in short and '3|     tags = throw "boom";' in short
    assert short.startswith('error:') and short.endswith('error: boom')
    assert '(stack trace truncated' in short


def test_nix_error_with_only_the_plugins_frames_is_the_message():
    only_ours = '\n'.join(line for line in TRACE.splitlines()
                          if 'tags' not in line and 'aaaa' not in line)
    assert config.nix_error(only_ours) == 'error: boom'


def test_nix_error_keeps_a_message_without_frames():
    said = ("error: syntax error, unexpected '}', expecting ';'\n"
            "       at /nix/store/aaaa-source/flake.nix:6:57:\n"
            "(use '--show-trace' to show detailed location information)")
    assert config.nix_error(said) == said
