"""tests/coverage_run.py counts the collection's lines where they run: in an
``ansible-playbook`` worker (forked, ended with ``os._exit``) and in the
batch process an action detaches from its worker (forked twice, its file
descriptors closed, ended with ``os._exit``), neither of which coverage.py
sees without its ``patch`` settings; ``--compare`` names the files whose
covered lines dropped. One real nix_eval run on the controller (real Nix and
git, as the evaluation's own tests). A tool of the suite's own, run on this
machine's stack: the current stack skips it (here_only)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests import coverage_run
from tests.collection import REPO

pytestmark = pytest.mark.here_only

NIX_CONFIG = 'experimental-features = nix-command flakes\nsubstituters ='

FLAKE = '''{
  outputs = { self }: {
    nixosConfigurations.one.config.system.build.toplevel = derivation {
      name = "one"; system = "x86_64-linux"; builder = "/bin/sh"; };
  };
}
'''


def line_after(rel, anchor, text):
    """The number of the first line of ``rel`` that reads ``text`` (stripped)
    after the line holding ``anchor``."""
    with open(os.path.join(REPO, rel)) as handle:
        lines = handle.read().split('\n')
    start = next(n for n, line in enumerate(lines) if anchor in line)
    return next(n + 1 for n in range(start, len(lines)) if lines[n].strip() == text)


# only a forked worker runs it (the main process never runs a task)
WORKER_LINE = ('plugins/plugin_utils/task/_action.py', 'if in_forked_worker():',
               'freeze_inherited()')
# only the batch's detached process runs it (the work of the whole batch)
DETACHED_LINE = ('plugins/plugin_utils/task/_detached.py', 'def _run(self, work, main_pid):',
                 'work()')


def flake(base):
    repo = os.path.join(base, 'flake')
    os.makedirs(repo)
    with open(os.path.join(repo, 'flake.nix'), 'w') as handle:
        handle.write(FLAKE)
    for args in (['init', '-q'], ['add', '-A'], ['commit', '-qm', 'one']):
        subprocess.run(['git', '-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t'] + args,
                       check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return repo


# The suite coverage_run measures: one nix_eval run through ansible-playbook,
# as the lab and evaluation tests start it (tests/collection.py).
INNER = '''
import json
from tests.collection import run_playbook

def test_one_evaluation():
    run = run_playbook(*json.loads(%r))
    assert run.rc == 0, run
'''


@pytest.mark.skipif(not all(shutil.which(tool) for tool in ('nix', 'git')),
                    reason='needs nix and git')
def test_a_worker_and_a_detached_batch_process_are_counted(tmp_path):
    pytest.importorskip('coverage')
    base = str(tmp_path)
    host = {'ansible_connection': 'local', 'nix_flake': 'git+file://%s' % flake(base),
            'nix_platform': 'nixos', 'nix_configuration': 'one'}
    play = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'evaluate', 'nixdeploy.fleet.nix_eval': {'nix_options': {'substituters': ''}}}]}]
    env = {'NIX_CONFIG': NIX_CONFIG, 'XDG_CONFIG_HOME': os.path.join(base, 'config')}
    inner = os.path.join(base, 'test_inner.py')
    with open(inner, 'w') as handle:
        handle.write(INNER % json.dumps([play, {'all': {'hosts': {'one': host}}},
                                         os.path.join(base, 'run'), [], env]))
    # the tool's own run: pytest under coverage, in this checkout
    out = os.path.join(base, 'coverage')
    code, _seconds = coverage_run.run_suite(sys.executable, REPO, out, 0, '', [inner])
    with open(os.path.join(out, 'pytest.log')) as handle:
        assert code == 0, handle.read()
    found, text = coverage_run.report(sys.executable, REPO, out)
    for rel, anchor, line in (WORKER_LINE, DETACHED_LINE):
        number = line_after(rel, anchor, line)
        assert number in found['files'][rel]['executed_lines'], (rel, number, line)
    # the per-file table, under the checkout's own names
    assert 'plugins/action/nix_eval.py' in text
    with open(os.path.join(out, 'coverage.json')) as handle:
        assert json.load(handle)['total'] == found['total']


def report_of(**covered):
    return {'commit': None, 'files': dict(
        ('plugins/%s.py' % name, {'covered': count, 'statements': 10})
        for name, count in covered.items()),
        'total': {'covered': sum(covered.values()), 'statements': 10 * len(covered),
                  'percent': 10.0 * sum(covered.values()) / len(covered)}}


def test_compare_names_the_files_with_fewer_covered_lines(tmp_path, capsys):
    old, new = str(tmp_path / 'old.json'), str(tmp_path / 'new.json')
    for path, data in ((old, report_of(same=5, fewer=8, gone=3)),
                       (new, report_of(same=5, fewer=6, more=9))):
        with open(path, 'w') as handle:
            json.dump(data, handle)
    assert coverage_run.main(['--compare', old, new]) == 0
    said = capsys.readouterr().out
    assert 'lower: plugins/fewer.py 8 -> 6 covered lines' in said, said
    assert 'lower: plugins/gone.py 3 -> 0 covered lines (file gone)' in said, said
    assert 'same.py' not in said and 'more.py' not in said, said
    # a lower total is a failure
    assert coverage_run.main(['--compare', new, old]) == 1
