# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A broken or empty inventory fails the run (issue 61): real
``ansible-playbook nixdeploy.fleet.deploy -l vps`` in a user's project (a git
checkout with the flake at its top and inventory/fleet.nix.yml), for each
mistake a new user makes with the inventory.

Under the documented ``[inventory]`` block the inventory's own sentence is
the one error (no yaml or ini plugin's noise) and the run exits non-zero.
Under an ansible.cfg without it (ansible-core then only warns and goes on
with no host) the playbook's ``hosts:`` (the filter nixdeploy.fleet.selection)
still fails the run, with one sentence. No lab host is needed: the inventory
fails before any host is contacted.
"""

import os
import re
import shutil
import subprocess
import textwrap

import pytest

from tests.collection import BIN, ansible_env

NIX = shutil.which('nix')
GIT = shutil.which('git')
pytestmark = pytest.mark.skipif(NIX is None or GIT is None, reason='needs nix and git on PATH')

FLAKE = textwrap.dedent('''\
    {
      outputs = { self }: {
        inventory = {
          web1 = { targetHost = "192.0.2.1"; tags = [ "vps" ]; };
          web2 = { targetHost = "192.0.2.2"; tags = [ "vps" ]; };
          db1 = { targetHost = "192.0.2.3"; tags = [ "db" ]; };
        };
      };
    }
    ''')

# The block docs/inventory.md gives a user's ansible.cfg.
RECOMMENDED = textwrap.dedent('''\
    [defaults]
    inventory = inventory/

    [inventory]
    enable_plugins = nixdeploy.fleet.nix, ansible.builtin.host_list
    unparsed_is_failed = True
    any_unparsed_is_failed = True
    ''')
# A user's ansible.cfg that names the inventory and nothing else.
BARE = '[defaults]\ninventory = inventory/\n'

EMPTY = "no host to deploy: the inventory holds no host (did the flake's inventory fail to parse?"


def git(path, *args):
    subprocess.run([GIT, '-C', path] + list(args), check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE,
                   env=dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@t',
                            GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@t'))


def project(path, cfg, flake=FLAKE, config='flake: ..\n', add=True, untracked=None):
    """A user's project at ``path``: a git checkout whose top holds the flake
    (committed when ``add``), ansible.cfg and inventory/fleet.nix.yml; and
    ``untracked`` files ({name: text}) git is not told of."""
    os.makedirs(os.path.join(path, 'inventory'))
    for name, text in (untracked or {}).items():
        with open(os.path.join(path, name), 'w') as handle:
            handle.write(text)
    with open(os.path.join(path, 'flake.nix'), 'w') as handle:
        handle.write(flake)
    with open(os.path.join(path, 'ansible.cfg'), 'w') as handle:
        handle.write(cfg)
    with open(os.path.join(path, 'inventory', 'fleet.nix.yml'), 'w') as handle:
        handle.write("plugin: nixdeploy.fleet.nix\nnix_options: {substituters: ''}\n" + config)
    git(path, 'init', '-q')
    if add:
        git(path, 'add', 'flake.nix')
        git(path, 'commit', '-q', '-m', 'fleet')
    return path


def deploy(path, *args, env=None):
    extra = {'ANSIBLE_CONFIG': os.path.join(path, 'ansible.cfg')}
    extra.update(env or {})
    return subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'nixdeploy.fleet.deploy'] + list(args),
                          cwd=path, env=ansible_env(extra), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, check=False)


def flat(text):
    """``text`` without the line breaks and indents Ansible wraps messages in."""
    return re.sub(r'\s+', ' ', text)


def events(output):
    """The warnings and errors ansible-core printed, one string each."""
    return [flat(e) for e in re.split(r'^(?=\[(?:WARNING|ERROR|DEPRECATION WARNING)\]:)', output, flags=re.M)
            if e.startswith('[')]


def no_path_bin(tmp_path):
    """A PATH folder with git but no nix (the venv's bin comes first)."""
    folder = tmp_path / 'bin'
    folder.mkdir()
    os.symlink(GIT, str(folder / 'git'))
    return {'PATH': BIN + os.pathsep + str(folder)}


# (case, how the project is broken, the inventory's sentence: a string, or the
# parts one message holds)
CASES = [
    ('syntax', dict(flake=FLAKE.replace('tags = [ "db" ]; };', 'tags = [ "db" ] };')),
     ('nix eval of the inventory in {path}/inventory/fleet.nix.yml: error:', 'syntax error')),
    ('wrong-path', dict(config='flake: ../nonexistent\n'),
     'no flake.nix in {path}/nonexistent (flake: ../nonexistent relative to {path}/inventory/fleet.nix.yml)'),
    ('untracked', dict(add=False),
     'flake.nix is not tracked by git in {path}: git add flake.nix'),
    ('untracked-import', dict(flake=FLAKE.replace('inventory = {', 'inventory = import ./hosts.nix // {'),
                              untracked={'hosts.nix': '{ web3 = { targetHost = "192.0.2.4"; tags = [ "vps" ]; }; }'}),
     'hosts.nix is not tracked by git in {path}: git add hosts.nix'),
    ('throw', dict(flake=FLAKE.replace('tags = [ "db" ];', 'tags = throw "db1 has no tags yet";')),
     # Nix 2.13+ put frames (where in the flake) between the two
     ('nix eval of the inventory in {path}/inventory/fleet.nix.yml: error:', 'error: db1 has no tags yet')),
    ('nix-missing', dict(),
     'nix is not on the PATH of this controller: install Nix here, or set nix_bin in '
     '{path}/inventory/fleet.nix.yml to the path of the nix program'),
    ('wrong-nix-bin', dict(config='flake: ..\nnix_bin: /opt/nonexistent/nix\n'),
     'nix_bin /opt/nonexistent/nix in {path}/inventory/fleet.nix.yml is no program on this controller'),
    ('unknown-key', dict(config='flak: ..\n'),
     'unknown option flak in {path}/inventory/fleet.nix.yml; did you mean flake?'),
]


def broken(tmp_path, case, cfg):
    name, how, sentence = case
    path = project(str(tmp_path / 'fleet'), cfg, **how)
    env = no_path_bin(tmp_path) if name == 'nix-missing' else None
    parts = (sentence,) if isinstance(sentence, str) else sentence
    return deploy(path, '-l', 'vps', env=env), [flat(p.format(path=path)) for p in parts]


def saying(messages, parts):
    return [m for m in messages if all(p in m for p in parts)]


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_the_documented_block_makes_it_one_error(tmp_path, case):
    proc, parts = broken(tmp_path, case, RECOMMENDED)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    # the sentence in one of ansible-core's messages, from one plugin only
    assert len(saying(events(output), parts)) == 1, output
    # no frame of the plugin's own --apply expression (Nix calls it «string»)
    assert '«string»' not in output, output
    assert output.count('[WARNING]: Failed to parse inventory with') == 1, output
    assert 'Invalid host pattern' not in output and "'yaml' plugin" not in output, output
    assert 'Traceback' not in output, output
    # nothing ran: no play started
    assert 'PLAY [' not in output, output


# each case's message: the documented block's test of it; the bare run: [syntax], [unknown-key]
BARE_CASES = [case if case[0] in ('syntax', 'unknown-key')
              else pytest.param(case, marks=pytest.mark.here_only) for case in CASES]


@pytest.mark.parametrize('case', BARE_CASES, ids=[c[0] for c in CASES])
def test_without_the_block_the_playbook_fails_the_run(tmp_path, case):
    """A user's ansible.cfg without [inventory]: ansible-core warns (the
    inventory's sentence among the yaml and ini plugins' words) and goes on
    with no host; the playbook's hosts: stops it with one sentence."""
    proc, parts = broken(tmp_path, case, BARE)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert saying(events(output), parts), output
    assert len([e for e in events(output) if EMPTY in e]) == 1, output
    assert 'Traceback' not in output, output
    assert 'skipping: no hosts matched' not in output, output


@pytest.mark.parametrize('cfg', [RECOMMENDED, BARE], ids=['block', 'bare'])
def test_a_healthy_flake_selects_its_hosts(tmp_path, cfg):
    """The same project with nothing broken: -l vps selects web1 and web2
    (so each failure above comes from its mistake alone)."""
    path = project(str(tmp_path / 'fleet'), cfg)
    proc = deploy(path, '-l', 'vps', '--list-hosts')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = re.findall(r'^\s+(\w+)\s*$', proc.stdout.split('hosts (', 1)[1], re.M)
    assert sorted(listed) == ['web1', 'web2'], proc.stdout
    assert 'WARNING' not in proc.stderr, proc.stderr


def test_a_limit_matching_no_host_fails(tmp_path):
    """Hosts in the inventory, none matched by -l: ansible-core refuses the
    run itself (before the play's hosts: is templated)."""
    path = project(str(tmp_path / 'fleet'), BARE)
    proc = deploy(path, '-l', 'vpss')
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert 'no hosts to target' in flat(output), output
    assert 'Traceback' not in output and 'PLAY [' not in output, output
