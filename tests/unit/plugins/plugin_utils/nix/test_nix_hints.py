# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A failed evaluation whose cause is certain says the fix (issue 79;
plugin_utils/nix/_nix_hints.py, used by the nix_eval action):

- a file the flake imports that is in the work tree but not tracked by git:
  Nix names only the missing path of its store copy; the message adds
  ``git add <file>``;
- a configuration name the flake's ``nixosConfigurations`` lacks: the
  message adds the names of that set nearest to it.

The real ``ansible-playbook`` with this checkout as the collection, real Nix
and git on this machine, a git flake in a temporary folder (no nixpkgs: the
systems are plain derivations)."""

import shutil
import subprocess
import sys

import pytest

from tests.collection import collections_path, run_playbook

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_hints  # noqa: E402

GIT = shutil.which('git')
needs_nix_and_git = pytest.mark.skipif(shutil.which('nix') is None or GIT is None,
                                       reason='needs nix and git')

FLAKE = r'''{
  outputs = { self }:
    let
      system = drv: { config.system.build.toplevel = drv; };
      drv = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; };
    in {
      nixosConfigurations = {
        web1 = system (drv "web1");
        web2 = system (import ./hosts/common.nix drv);
        db = system (drv "db");
      };
    };
}
'''

SOURCE = "'/nix/store/%s-source/" % ('a' * 32)


def git(folder, *args):
    subprocess.run([GIT, '-C', str(folder)] + list(args), check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def git_flake(folder):
    """A committed git flake whose web2 imports hosts/ (tracked: only
    hosts/other.nix) hosts/common.nix, which is in the work tree, untracked."""
    (folder / 'hosts').mkdir(parents=True)
    (folder / 'flake.nix').write_text(FLAKE)
    (folder / 'hosts' / 'common.nix').write_text('drv: drv "web2"\n')
    (folder / 'hosts' / 'other.nix').write_text('{ }\n')
    git(folder, 'init', '-q')
    git(folder, 'add', 'flake.nix', 'hosts/other.nix')
    git(folder, '-c', 'user.email=t@example.org', '-c', 'user.name=t', 'commit', '-q', '-m', 'fleet')


@pytest.fixture(scope='module', params=['committed', 'uncommitted'])
def evaluated(request, tmp_path_factory):
    """One nix_eval run of four hosts of the flake, its work tree as
    committed or with a change not committed yet (the run then evaluates a
    store copy of the tree, not a commit): (the flake's folder, {host: its
    result})."""
    if shutil.which('nix') is None or GIT is None:
        pytest.skip('needs nix and git')
    base = tmp_path_factory.mktemp('hints')
    flake = base / 'fleet'
    git_flake(flake)
    if request.param == 'uncommitted':
        (flake / 'flake.nix').write_text(FLAKE.replace('db = system', '# a change\n        db = system'))
    hosts = dict((name, {'ansible_connection': 'local', 'nix_flake': str(flake),
                         'nix_platform': 'nixos', 'nix_configuration': configuration})
                 for name, configuration in (('web1', 'web1'), ('web2', 'web2'),
                                             ('web3', 'web3'), ('gone', 'zzzzzz')))
    play = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'evaluate', 'nixdeploy.fleet.nix_eval': {
            'nix_options': {'substituters': ''}, 'eval_cache': False, 'eval_workers': 1}}]}]
    # run from a folder outside the flake's: the fix names the work tree (git -C)
    run = run_playbook(play, {'all': {'hosts': hosts}}, str(base / 'run'))
    results = dict((r['host'], r) for r in run.records if r.get('task') == 'evaluate')
    assert set(results) == set(hosts), run
    assert results['web1']['status'] == 'ok', results['web1']
    assert all(results[h]['status'] == 'failed' for h in ('web2', 'web3', 'gone')), results
    # what the run evaluated: the commit, or a store copy of the changed tree
    evaluated = results['web1']['result']['source']['evaluated']
    assert evaluated.startswith('path:/nix/store/' if request.param == 'uncommitted'
                                else 'git+file://'), evaluated
    return flake, dict((h, r['result']) for h, r in results.items())


def test_an_untracked_import_says_git_add(evaluated):
    flake, results = evaluated
    said = results['web2']['msg']
    # Nix's words stay; the fix is the last line (the summary keeps it)
    assert 'getting status of' in said or 'not tracked by Git' in said \
        or 'does not exist' in said, said
    assert said.split('\n')[-1] == (
        'hosts/common.nix is not tracked by git, and a git flake sees only tracked files: '
        'git -C %s add hosts/common.nix' % flake), said


def test_a_misspelt_configuration_name_says_the_nearest(evaluated):
    _flake, results = evaluated
    said = results['web3']['msg']
    assert "(no 'web3')" in said, said
    assert said.split('\n')[-1] == (
        'nixosConfigurations has no attribute web3; the nearest names it has: web1, web2'), said
    # none near: a set this small is listed whole
    assert results['gone']['msg'].split('\n')[-1] == (
        'nixosConfigurations has no attribute zzzzzz; the names it has: db, web1, web2'), results


@needs_nix_and_git
def test_untracked_file_only_when_git_says_so(tmp_path):
    git_flake(tmp_path)
    ref = 'git+file://%s' % tmp_path
    said = 'error: getting status of %shosts/common.nix\': No such file or directory' % SOURCE
    assert _nix_hints.untracked_file(said, ref, cwd=str(tmp_path)) == (
        'hosts/common.nix is not tracked by git, and a git flake sees only tracked files: '
        'git add hosts/common.nix')
    # from a folder inside the work tree: the path from there
    assert _nix_hints.untracked_file(said, ref, cwd=str(tmp_path / 'hosts')).endswith(
        ': git add common.nix')
    # a subflake (?dir=): the store copy is the whole repository's
    assert _nix_hints.untracked_file(said, ref + '?dir=sub', cwd=str(tmp_path)) is not None
    # a folder git tracks nothing of: Nix names the folder, and so does the fix
    (tmp_path / 'modules').mkdir()
    (tmp_path / 'modules' / 'a.nix').write_text('{ }')
    folder = "error: getting status of %smodules': No such file or directory" % SOURCE
    assert _nix_hints.untracked_file(folder, ref, cwd=str(tmp_path)).endswith(': git add modules')
    # later Nix's words for a path: snapshot
    later = "error: path %shosts/common.nix' does not exist" % SOURCE
    assert _nix_hints.untracked_file(later, ref, cwd=str(tmp_path)) is not None
    # ignored by .gitignore: git add -f
    (tmp_path / '.gitignore').write_text('hosts/common.nix\n')
    assert _nix_hints.untracked_file(said, ref, cwd=str(tmp_path)).endswith(
        'git add -f hosts/common.nix (.gitignore leaves it out: -f adds it all the same)')
    # tracked (staged is enough: Nix reads the index), missing from the work
    # tree too, a path: flake, a path outside the repository: no hint
    git(tmp_path, 'add', '-f', 'hosts/common.nix')
    assert _nix_hints.untracked_file(said, ref) is None
    assert _nix_hints.untracked_file(said.replace('common.nix', 'gone.nix'), ref) is None
    git(tmp_path, 'rm', '-q', '--cached', 'hosts/common.nix')
    assert _nix_hints.untracked_file(said, 'path:%s' % tmp_path) is None
    assert _nix_hints.untracked_file(said.replace('hosts/', '../'), ref) is None
    # a folder that is no git work tree: git cannot say, no hint
    plain = tmp_path.parent / ('plain-' + tmp_path.name)
    (plain / 'hosts').mkdir(parents=True)
    (plain / 'hosts' / 'common.nix').write_text('{ }')
    assert _nix_hints.untracked_file(said, 'git+file://%s' % plain) is None


def test_missing_attribute_and_nearest_names():
    attr = ['nixosConfigurations', 'web3', 'config', 'system', 'build', 'toplevel']
    said = ("error: nixdeploy: the flake has no attribute "
            "nixosConfigurations.web3.config.system.build.toplevel (no 'web3')")
    assert _nix_hints.missing_attribute(said, attr) == (['nixosConfigurations'], 'web3')
    assert _nix_hints.missing_attribute(said.replace("'web3'", "'nixosConfigurations'"), attr) == (
        [], 'nixosConfigurations')
    # Nix's own words about the configuration's code: not ours to judge
    assert _nix_hints.missing_attribute("error: attribute 'web3' missing", attr) is None
    assert _nix_hints.nearest_names(['nixosConfigurations'], 'web3', ['web1', 'db', 'web2']) == (
        'nixosConfigurations has no attribute web3; the nearest names it has: web1, web2')
    many = ['host%02d' % n for n in range(20)]
    assert _nix_hints.nearest_names(['nixosConfigurations'], 'zzz', many) == (
        'nixosConfigurations has no attribute zzz, nor one close to it among its 20 names')
    assert _nix_hints.nearest_names([], 'nixosConfiguration', ['nixosConfigurations']) == (
        'the flake has no attribute nixosConfiguration; the nearest names it has: '
        'nixosConfigurations')
    assert _nix_hints.nearest_names(['darwinConfigurations'], 'mac', []) is None
    # names quoted as Nix writes them
    assert _nix_hints.nearest_names(['homeConfigurations'], 'me@box', ['me@box1']).endswith(
        ': "me@box1"')


def test_nix_trace_pointer_reads_as_the_setting_the_user_has():
    """Nix's ``(use '--show-trace' ...)`` names a command line option the
    user never types: a failure says the role variable (or, in a task of
    the user's own, the task's option) instead, wherever it stands."""
    said = ("evaluating x failed: error: attribute 'lab' missing\n"
            "       at /nix/store/aaa-source/flake.nix:5:3:\n"
            "(use '--show-trace' to show detailed location information)")
    rewritten = _nix_hints.trace_hint(said)
    assert rewritten.split('\n')[-1] == (
        "(run again with -e nix_show_trace=true for Nix's full trace)"), rewritten
    assert '--show-trace' not in rewritten and rewritten.split('\n')[:2] == said.split('\n')[:2]
    assert _nix_hints.trace_hint(said, role_vars=False).split('\n')[-1] == (
        "(run again with the task's option show_trace: true for Nix's full trace)")
    # on the message's line, as some Nix versions print it
    assert _nix_hints.trace_hint("error: x (use '--show-trace' to show more)") == (
        "error: x (run again with -e nix_show_trace=true for Nix's full trace)")
    # later Nix, after the frames it shows: what it says before stays
    assert _nix_hints.trace_hint(
        "(stack trace truncated; use '--show-trace' to show the full, detailed trace)") == (
        "(stack trace truncated; run again with -e nix_show_trace=true for Nix's full trace)")
    # nothing to rewrite: the text as it was
    assert _nix_hints.trace_hint('error: x') == 'error: x'
    assert _nix_hints.trace_hint(None) == ''


def test_the_summary_drops_the_trace_pointer_as_it_did_nixs():
    """The one-line cause of a failure (common/_cause.py) leaves the
    pointer out, as it left Nix's out: it says where to learn more, not why."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._cause import cause
    said = _nix_hints.trace_hint("evaluating x failed:\nerror: attribute 'lab' missing\n"
                                 "(use '--show-trace' to show detailed location information)")
    assert 'show_trace' not in cause(said) and "attribute 'lab' missing" in cause(said)
    later = _nix_hints.trace_hint("evaluating x failed:\nerror: attribute 'lab' missing\n"
                                  "(stack trace truncated; use '--show-trace' to show the full, "
                                  "detailed trace)")
    assert 'show_trace' not in cause(later), cause(later)


THROWING = r'''{
  outputs = { self }: {
    nixosConfigurations.boom.config.system.build.toplevel =
      builtins.throw "the configuration of boom is broken";
  };
}
'''


@needs_nix_and_git
def test_a_failed_evaluation_points_at_the_role_variable(tmp_path):
    """The real ``ansible-playbook`` and Nix: an evaluation that throws says
    Nix's cause and, where Nix pointed at --show-trace, the role variable."""
    flake = tmp_path / 'fleet'
    flake.mkdir()
    (flake / 'flake.nix').write_text(THROWING)
    hosts = {'boom': {'ansible_connection': 'local', 'nix_flake': 'path:%s' % flake,
                      'nix_platform': 'nixos', 'nix_configuration': 'boom',
                      'nix_options': {'substituters': ''}, 'nix_eval_cache': False}}
    play = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'evaluate', 'nixdeploy.fleet.nix_eval': {'from_role_vars': True}}]}]
    run = run_playbook(play, {'all': {'hosts': hosts}}, str(tmp_path / 'run'))
    result = [r for r in run.records if r.get('task') == 'evaluate'][0]
    assert result['status'] == 'failed', result
    said = result['result']['msg']
    assert 'the configuration of boom is broken' in said, said
    # "(run again ...)", or on later Nix "(stack trace truncated; run again ...)"
    assert "run again with -e nix_show_trace=true for Nix's full trace)" in said, said
    assert '--show-trace' not in said, said
