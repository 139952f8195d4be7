"""A role variable whose template fails is found before anything is
evaluated (issue 79), without the lab: the host fails at the first task the
role runs, whatever the tags, naming the variable, the file and line
ansible-core gives for it and the fix.

ansible-core templates a variable only when something reads it: a
`nix_confirm_timeout: "{{ 30 + 15 }"` in a host's vars is read by the activate
phase alone, so without the check it passed evaluation, build and copy and
failed at activate, after the host's store had changed, and `--tags build`
ended with rc 0. The deploy role's first phase (nix_eval, tagged `always`)
now templates every variable of the option table, whichever phase reads it.

The host here fails before any Nix or ssh runs, so no lab is needed (the lab
test beside healthy hosts: test_role_var_checks.py). The rollback and publish
roles template their variables at their first task too: ansible-core's own
check of a role's argument spec (tagged always), which their playbooks keep.
"""

import os

import pytest

from tests.collection import run_playbook

PLAYBOOK = 'nixdeploy.fleet.deploy'
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
LATER = ('nixdeploy.fleet.deploy : Build the system of each host',
         'nixdeploy.fleet.deploy : Copy the closure to each host',
         'nixdeploy.fleet.deploy : Activate and confirm the new system',
         'nixdeploy.fleet.deploy : Upload the keys only (--tags keys)')
BAD = 'nix_confirm_timeout: "{{ 30 + 15 }"\n'
FIX = "fix its template where it is set, or remove it to use the default (30)"


def inventory(workdir, host_vars):
    """A one-host inventory (a host no test reaches: it must fail before
    anything talks to it) whose host_vars/h2.yml is ``host_vars``."""
    folder = os.path.join(workdir, 'inventory')
    os.makedirs(os.path.join(folder, 'host_vars'), exist_ok=True)
    with open(os.path.join(folder, 'hosts.yml'), 'w') as handle:
        handle.write('all:\n  hosts:\n    h2:\n      ansible_host: 192.0.2.1\n'
                     '      nix_flake: /nonexistent/flake\n      nix_platform: nixos\n')
    path = os.path.join(folder, 'host_vars', 'h2.yml')
    with open(path, 'w') as handle:
        handle.write('---\n# h2\n' + host_vars)
    return folder, path


@pytest.mark.parametrize('tags', [
    ['--tags', 'build'], ['--tags', 'copy'], ['--tags', 'activate'], ['--tags', 'eval'],
    ['--tags', 'keys'], ['--skip-tags', 'activate'],
], ids=' '.join)
def test_a_template_error_fails_its_host_before_evaluation_whatever_the_tags(tmp_path, tags):
    workdir = str(tmp_path)
    folder, path = inventory(workdir, BAD)
    run = run_playbook(PLAYBOOK, folder, workdir, args=list(tags))
    assert run.rc != 0, run
    text = run.stdout + run.stderr
    assert 'Traceback' not in text, run
    refused = run.result(EVAL, 'h2')
    assert refused['status'] == 'failed', refused
    # the variable, ansible-core's words with the file and line, the fix
    assert refused['result']['msg'] == (
        "h2: nix_confirm_timeout: Syntax error in template: unexpected '}' (Origin: %s:3:22); %s"
        % (path, FIX)), refused
    assert 'out_path' not in refused['result'] and 'evaluation' not in refused['result']
    assert not any(r['task'] in LATER and r['status'] != 'skipped'
                   for r in run.results(host='h2')), run


@pytest.mark.parametrize('playbook,variable', [
    ('nixdeploy.fleet.rollback', 'nix_activation_timeout'),
    ('nixdeploy.fleet.publish', 'nix_channel_force'),
])
def test_the_rollback_and_publish_roles_template_their_variables_first(tmp_path, playbook,
                                                                       variable):
    """ansible-core's check of the role's argument spec, the first task
    (tagged always), templates each variable of the spec: a template error
    fails the host there, ansible-core's words and origin (the file, the
    line, the line itself) in the output. A guard: their playbooks must keep
    that check (the deploy playbook turns it off, its own check is nix_eval's)."""
    workdir = str(tmp_path)
    folder, path = inventory(workdir, '%s: "{{ 30 + 15 }"\n' % variable)
    run = run_playbook(playbook, folder, workdir, args=[
        '-e', 'nix_publish_cache=file:///nonexistent', '-e', 'nix_signing_key=/nonexistent',
        '-e', 'nix_channel_repo=/nonexistent'])
    assert run.rc != 0, run
    first = list(run.results(host='h2'))
    assert first and first[0]['task'].split(' : ')[-1].startswith('Validating arguments'), run
    assert first[0]['status'] == 'failed' and len(first) == 1, run
    text = run.stdout + run.stderr
    assert "Syntax error in template: unexpected '}'" in text, run
    assert 'Origin: %s:3:' % path in text and '%s: "{{ 30 + 15 }"' % variable in text, run
