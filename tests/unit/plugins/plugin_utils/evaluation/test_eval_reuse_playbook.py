"""The reviewer's three reproductions of a stale reuse, through the real
``ansible-playbook`` (issue 76): a commit that revokes a user in an
imported ``outputs.nix``, an edit of ``conf/café.txt`` and a file added to
a folder named ``zürich``, and a host that uses ``me.shortRev`` of an
input that follows the flake itself. Each deployed the previous commit's
system (``answered: reused``). And a job that only evaluates, which ends as
soon as every host has its answer: its evaluators' records (kept after
those answers) serve the job right after it. nix_eval runs on the
controller: the hosts are local, the flake a git repository, the cache and
its key in folders of the test's own. Real Nix, git and strace."""

import json
import os
import shutil
import subprocess
import time

import pytest

from tests.collection import CONTAINED, run_playbook

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ('nix', 'git', 'strace')),
    reason='needs nix, git and strace')

NIX_CONFIG = 'experimental-features = nix-command flakes\nsubstituters ='

FLAKE = '''{
  inputs.me.follows = "";
  outputs = inputs: import ./outputs.nix inputs;
}
'''
OUTPUTS = u'''{ self, me }:
let
  users = [ "ann" "bob" ];
  mk = name: args: { config.system.build.toplevel = derivation ({
    inherit name; system = "x86_64-linux"; builder = "/bin/sh"; } // args); };
in assert users != [ ]; {
  nixosConfigurations = {
    users = mk "users" { users = builtins.concatStringsSep "," users; };
    cafe = mk "cafe" { v = builtins.readFile (./conf + "/caf\u00e9.txt"); };
    zurich = mk "zurich" { v = builtins.toJSON (builtins.readDir (./sites + "/z\u00fcrich")); };
    revision = mk "revision" { v = me.shortRev or "dirty"; };
    plain = mk "plain" { v = "plain"; };
  };
}
'''
HOSTS = ('users', 'cafe', 'zurich', 'revision', 'plain')


def git(repo, *args):
    subprocess.run(['git', '-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t'] + list(args),
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def write(repo, rel, text):
    path = os.path.join(repo, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)


def truth(repo):
    """Every host's drvPath as a plain, uncached `nix eval` gives it."""
    out = subprocess.run(
        ['nix', 'eval', '--json', 'git+file://%s#nixosConfigurations' % repo, '--apply',
         'cs: builtins.mapAttrs (n: c: c.config.system.build.toplevel.drvPath) cs'],
        check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(os.environ, NIX_CONFIG=NIX_CONFIG))
    return json.loads(out.stdout)


def first_commit(base):
    """The flake's git repository at its first commit (its lock written)."""
    repo = os.path.join(base, 'flake')
    write(repo, 'flake.nix', FLAKE)
    write(repo, 'outputs.nix', OUTPUTS)
    write(repo, u'conf/caf\u00e9.txt', 'one')
    write(repo, u'sites/z\u00fcrich/web.nix', '{ }')
    git(repo, 'init', '-q')
    git(repo, 'add', '-A')
    truth(repo)  # nix writes the lock of the input that follows the flake
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    return repo


def deploy_eval(base, repo, step, names=HOSTS, args=None, env=None, wrapper=(), runs=None):
    """One ansible-playbook run of nix_eval for every host: {host: result}.
    ``args``: more arguments of the task; ``wrapper``: run_playbook's;
    ``runs``: a list the run is added to."""
    hosts = dict((name, {'ansible_connection': 'local', 'nix_flake': 'git+file://%s' % repo,
                         'nix_platform': 'nixos', 'nix_configuration': name,
                         'my_attr': 'nixosConfigurations.%s.config.system.build.toplevel' % name})
                 for name in names)
    play = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'evaluate', 'nixdeploy.fleet.nix_eval': dict({
            # an evaluator per host: each record is its own host's reads
            'nix_options': {'substituters': ''}, 'eval_workers': len(names)}, **(args or {}))}]}]
    env = dict({'NIXDEPLOY_EVAL_CACHE': os.path.join(base, 'cache'),
                'XDG_CONFIG_HOME': os.path.join(base, 'config'), 'NIX_CONFIG': NIX_CONFIG},
               **(env or {}))
    run = run_playbook(play, {'all': {'hosts': hosts}}, os.path.join(base, 'run-%d' % step),
                       env=env, wrapper=wrapper)
    assert run.rc == 0, run
    if runs is not None:
        runs.append(run)
    return dict((r['host'], r['result']) for r in run.records if r.get('task') == 'evaluate')


def assert_summary_says(run, results):
    """The summary callback's closing line counts what the hosts' results
    say and names the revisions reused answers came from; no result of a
    host made the callback fail (ansible-core's warning)."""
    output = run.stdout + run.stderr
    assert 'Callback dispatch' not in output, output
    answered = [r['answered'] for r in results.values()]
    line = [text for text in run.stdout.splitlines() if text.startswith('nixdeploy: evaluation:')]
    assert len(line) == 1, run.stdout
    assert line[0].startswith('nixdeploy: evaluation: %d evaluated, %d reused' % (
        answered.count('evaluated'), answered.count('reused'))), line
    for result in results.values():
        if result['answered'] == 'reused':
            assert ' %s' % result['reused']['from']['revision'][:7] in line[0], (line, result)


def test_the_reviewers_reproductions_deploy_the_new_commit(tmp_path):
    base = str(tmp_path)
    repo = first_commit(base)
    first = deploy_eval(base, repo, 1)
    assert set(r['answered'] for r in first.values()) == {'evaluated'}, first
    steps = [
        # a user revoked in the imported outputs.nix, read when the outputs
        # are called: every host read it
        ('revoke bob', 'outputs.nix', OUTPUTS.replace(' "bob" ', ' '), HOSTS),
        (u'edit caf\u00e9.txt', u'conf/caf\u00e9.txt', 'two', ('cafe', 'revision')),
        (u'a second host in z\u00fcrich', u'sites/z\u00fcrich/db.nix', '{ }',
         ('zurich', 'revision')),
        # a file nobody reads: only the host that uses the revision
        ('readme', 'README', 'x', ('revision',)),
    ]
    for step, (message, rel, text, changed) in enumerate(steps, start=2):
        write(repo, rel, text)
        git(repo, 'add', '-A')
        git(repo, 'commit', '-qm', message)
        expected = truth(repo)
        runs = []
        results = deploy_eval(base, repo, step, runs=runs)
        assert_summary_says(runs[0], results)
        for host in HOSTS:
            assert results[host]['drv_path'] == expected[host], (message, host, results[host])
        assert dict((h, r['answered']) for h, r in results.items()) == dict(
            (h, 'evaluated' if h in changed else 'reused') for h in HOSTS), (message, results)


def test_a_retry_evaluates_again(tmp_path):
    """Through ansible-playbook: a retry of the task (``until``) evaluates
    again rather than reading the first attempt's stored answer (which says
    ``evaluated``): the retry's answer comes from the cache the first
    attempt filled. ``plain`` asks with another evaluator setting (its own
    eval_max_memory_mb, templated per host), so it is evaluated on its own
    both times; every answer is what ``nix eval`` gives."""
    base = str(tmp_path)
    repo = first_commit(base)
    expected = truth(repo)
    hosts = dict((name, {'ansible_connection': 'local', 'nix_flake': 'git+file://%s' % repo,
                         'nix_platform': 'nixos', 'nix_configuration': name,
                         'memory': 2048 if name == 'plain' else 4096})
                 for name in HOSTS)
    play = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'evaluate', 'register': 'evaluated', 'until': 'evaluated.attempts >= 2',
         'retries': 2, 'delay': 0, 'nixdeploy.fleet.nix_eval': {
             'nix_options': {'substituters': ''},
             'eval_max_memory_mb': '{{ memory }}'}}]}]
    env = {'NIXDEPLOY_EVAL_CACHE': os.path.join(base, 'cache'),
           'XDG_CONFIG_HOME': os.path.join(base, 'config'), 'NIX_CONFIG': NIX_CONFIG}
    run = run_playbook(play, {'all': {'hosts': hosts}}, os.path.join(base, 'run'), env=env)
    assert run.rc == 0, run
    results = dict((r['host'], r['result']) for r in run.records if r.get('task') == 'evaluate')
    for host in HOSTS:
        assert results[host]['drv_path'] == expected[host], (host, results[host])
        # the last attempt: evaluated again, from the cache of the first
        assert results[host]['attempts'] == 2, results[host]
        assert results[host]['answered'] == 'cached', (host, results[host])


# ``many`` reads thousands of files: its record takes the longest to keep
MANY_FILES = 4000
MANY = '''{
  outputs = { self }:
  let
    mk = name: args: { config.system.build.toplevel = derivation ({
      inherit name; system = "x86_64-linux"; builder = "/bin/sh"; } // args); };
    names = builtins.attrNames (builtins.readDir ./many);
  in {
    nixosConfigurations = {
      many = mk "many" { v = builtins.concatStringsSep ","
        (map (n: builtins.readFile (./many + "/${n}")) names); };
      one = mk "one" { v = builtins.readFile ./one.txt; };
    };
  };
}
'''


@pytest.fixture(scope='module')
def many_repo(tmp_path_factory):
    """The flake of ``many`` and ``one`` as a git repository at its first
    commit, made once for the module: writing and adding its thousands of
    files costs more than all else its tests do outside their runs. Each test
    clones it (hardlinks, one checkout) and commits to its own clone."""
    repo = str(tmp_path_factory.mktemp('many') / 'flake')
    write(repo, 'flake.nix', MANY)
    write(repo, 'one.txt', 'one')
    for index in range(MANY_FILES):
        write(repo, 'many/f%05d' % index, '%d\n' % index)
    git(repo, 'init', '-q')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    return repo


def clone(template, repo, label):
    """A repository of the test's own with ``template``'s files, and no
    remote (the repository a user deploys from knows none of the test's). Its
    first commit is its own (``label`` in its message): Nix has fetched no
    revision of it yet, as when each test made its repository."""
    subprocess.run(['git', 'clone', '-q', template, repo], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    git(repo, 'remote', 'remove', 'origin')
    git(repo, 'commit', '-q', '--amend', '-m', 'one (%s)' % label)


@pytest.mark.parametrize('asked', ['by-the-batch', 'again-on-its-own', 'in-a-container'])
def test_a_job_that_only_evaluates_keeps_its_records_for_the_next(tmp_path, asked, many_repo):
    """The job ends once ``many`` and ``one`` have their answers, before
    their records are kept; the job after a commit to a file nobody reads,
    started right away, reuses both. ``again-on-its-own``: the attribute is
    templated per host from another variable, so the batch (formed from
    ``one``'s value, one fork) answers ``many`` another request and
    ``many`` asks again, served by a process of its own.
    These two run without the summary callback: the batch's process keeps
    the records after the job. ``in-a-container``: the first job runs as in
    an execution environment, whose container (and every process in it)
    ends with ansible-playbook: the summary callback's end of the job waits
    for the records. None leaves a folder in the temporary folder."""
    base = str(tmp_path)
    tmp = os.path.join(base, 'tmp')
    os.makedirs(tmp)
    args = {'attr': '{{ my_attr }}'} if asked == 'again-on-its-own' else None
    env = {'TMPDIR': tmp, 'ANSIBLE_FORKS': '1'}
    if asked != 'in-a-container':
        env['ANSIBLE_CALLBACKS_ENABLED'] = 'record'
    repo = os.path.join(base, 'flake')
    clone(many_repo, repo, asked)
    names = ('one', 'many')
    first = deploy_eval(base, repo, 1, names, args, env,
                        wrapper=CONTAINED if asked == 'in-a-container' else ())
    assert dict((h, r['answered']) for h, r in first.items()) == dict.fromkeys(names, 'evaluated')
    write(repo, 'README', 'nobody reads this')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'readme')
    expected = truth(repo)
    second = deploy_eval(base, repo, 2, names, args, env)
    for host in names:
        assert second[host]['drv_path'] == expected[host], (host, second[host])
        assert second[host]['answered'] == 'reused', (host, second[host])
    # the records are kept within seconds of the job's end, then their folder goes
    deadline = time.monotonic() + 30
    while os.listdir(tmp) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert os.listdir(tmp) == []
