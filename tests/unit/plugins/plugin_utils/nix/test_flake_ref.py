"""Flake references from paths (plugin_utils/nix/_flake_ref.py), as Nix reads a
path given on its command line."""

import sys

import pytest

from tests.collection import collections_path

# module_utils import each other as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _flake_ref  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError  # noqa: E402


def test_flake_ref_for_paths_and_refs(tmp_path):
    assert _flake_ref.flake_ref('github:owner/repo') == 'github:owner/repo'
    assert _flake_ref.flake_ref('.', base_dir=str(tmp_path)) == 'path:%s' % tmp_path
    (tmp_path / 'repo' / '.git').mkdir(parents=True)
    assert _flake_ref.flake_ref(str(tmp_path / 'repo')) == 'git+file://%s' % (tmp_path / 'repo')
    # a folder below the top of a work tree is that git flake, with ?dir= (as Nix reads it)
    (tmp_path / 'repo' / 'nix' / 'fleet').mkdir(parents=True)
    assert _flake_ref.flake_ref('../nix/fleet', base_dir=str(tmp_path / 'repo' / 'inventory')) == (
        'git+file://%s?dir=nix/fleet' % (tmp_path / 'repo'))
    # a worktree or submodule: .git is a file
    (tmp_path / 'wt').mkdir()
    (tmp_path / 'wt' / '.git').write_text('gitdir: /elsewhere\n')
    assert _flake_ref.flake_ref(str(tmp_path / 'wt')) == 'git+file://%s' % (tmp_path / 'wt')
    with pytest.raises(NixError):
        _flake_ref.flake_ref('')
