"""The deploy role checks its variables before any phase (issue 61), on a
small mixed lab fleet, as users run it (`ansible-playbook
nixdeploy.fleet.deploy`):

- one run where h2's own nix_goal is `bot` (a host variable) and every host
  gets `-e nix_gaol=boot` (a typo'd name): h2 fails at the eval task, before
  anything of it is evaluated, with a message naming nix_goal and its fix;
  the typo is warned of once, with the name it was meant to be; h1 and h3
  deploy with the default goal (the typo changed nothing);
- one run with `-e nix_bin=/opt/nonexistent/nix`: every host fails with the
  sentence naming nix_bin and the way out.

Neither run shows a Python traceback anywhere in its output.
"""

import json
import os

import pytest

from tests.collection import run_playbook
from tests.deploy_fleet import DeployFleet, prepare, write_inventory

pytestmark = pytest.mark.lab

PLAYBOOK = 'nixdeploy.fleet.deploy'
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'
PHASES = (EVAL, 'nixdeploy.fleet.deploy : Build the system of each host',
          'nixdeploy.fleet.deploy : Copy the closure to each host', ACTIVATE)
HOSTS = [{'name': 'h1', 'persona': 'nixos'}, {'name': 'h2', 'persona': 'nixos'},
         {'name': 'h3', 'persona': 'darwin'}]
GOAL_FIX = "nix_goal: 'bot' is not one of switch, boot, test, dry-activate (did you mean boot?)"
TYPO = 'nix_gaol: not a variable of the deploy role; did you mean nix_goal?'
NIX_BIN = ("nix_bin: cannot run /opt/nonexistent/nix (No such file or directory); set nix_bin "
           "to the nix executable or put nix on the controller's PATH")


@pytest.fixture(scope='module')
def rvc_fleet(make_lab, tmp_path_factory):
    lab = make_lab('rvc', HOSTS)
    base = str(tmp_path_factory.mktemp('rvc'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    return DeployFleet(lab, flake, inventory, base)


def output(run):
    return run.stdout + run.stderr


def test_a_bad_and_a_typod_variable_beside_healthy_hosts(rvc_fleet):
    lab = rvc_fleet.lab
    before = lab.active('h2')
    workdir = rvc_fleet.rundir()
    host_vars = os.path.join(workdir, 'host-vars.json')
    with open(host_vars, 'w') as handle:
        json.dump({'all': {'hosts': {'h2': {'nix_goal': 'bot'}}}}, handle)
    run = run_playbook(PLAYBOOK, rvc_fleet.inventory, workdir,
                       args=['-i', host_vars, '-e', 'nix_gaol=boot'])
    assert run.rc != 0, run
    text = output(run)
    assert 'Traceback' not in text, run
    # h2: refused at its first task, naming the variable and the fix, and
    # nothing of it evaluated, built, copied or activated
    refused = run.result(EVAL, 'h2')
    assert refused['status'] == 'failed', refused
    assert refused['result']['msg'] == 'h2: ' + GOAL_FIX, refused
    assert 'out_path' not in refused['result'] and 'evaluation' not in refused['result']
    assert not any(r['task'] in PHASES[1:] and r['status'] != 'skipped'
                   for r in run.results(host='h2')), run
    assert lab.active('h2') == before
    # not the module option's words
    assert 'value of goal' not in text
    # the typo: one warning for the run, naming the hosts that have it
    assert text.count(TYPO) == 1, text
    warning = [line for line in text.splitlines() if TYPO in line][0]
    assert '(set for 3 hosts: h1, h2, h3)' in warning, warning
    # the healthy hosts deploy, with the default goal (the typo set nothing)
    summary = run.summary()
    assert summary['h2']['failed'], summary
    for host in ('h1', 'h3'):
        assert not summary[host]['failed'], summary
        activated = run.result(ACTIVATE, host)['result']
        assert activated.get('goal') == 'switch', activated
        assert lab.active(host) == run.result(EVAL, host)['result']['out_path']


def test_an_unknown_variable_is_an_error_when_asked(rvc_fleet):
    """nix_unknown_vars=error: each host with the typo fails before
    evaluation; nothing is deployed."""
    run = run_playbook(PLAYBOOK, rvc_fleet.inventory, rvc_fleet.rundir(),
                       args=['-e', 'nix_gaol=boot', '-e', 'nix_unknown_vars=error'])
    assert run.rc != 0, run
    assert 'Traceback' not in output(run), run
    for host in ('h1', 'h2', 'h3'):
        result = run.result(EVAL, host)
        assert result['status'] == 'failed', result
        assert result['result']['msg'] == '%s: %s (nix_unknown_vars is error)' % (host, TYPO)
        assert 'out_path' not in result['result']
        assert not any(r['task'] in PHASES[1:] and r['status'] != 'skipped'
                       for r in run.results(host=host)), run


def test_a_nix_bin_that_does_not_exist(rvc_fleet):
    run = run_playbook(PLAYBOOK, rvc_fleet.inventory, rvc_fleet.rundir(),
                       args=['-e', 'nix_bin=/opt/nonexistent/nix'])
    assert run.rc != 0, run
    assert 'Traceback' not in output(run), run
    summary = run.summary()
    for host in ('h1', 'h2', 'h3'):
        result = run.result(EVAL, host)
        assert result['status'] == 'failed', result
        assert NIX_BIN in result['result']['msg'], result
        assert result['result']['msg'].startswith(host + ': '), result
        assert summary[host]['failed'], summary
        assert not any(r['task'] in PHASES[1:] and r['status'] != 'skipped'
                       for r in run.results(host=host)), run


def test_a_template_error_in_a_variable_only_activate_reads(rvc_fleet):
    """Issue 79: h2's `nix_confirm_timeout: "{{ 30 + 15 }"` (a Jinja syntax
    error; only the activate phase reads it) fails h2 at the eval task,
    naming the variable, its file and line and the fix, before anything of
    it is evaluated; h1 and h3 deploy. With `--tags build` the run fails
    too (it ended with rc 0 when only activate templated it)."""
    lab = rvc_fleet.lab
    before = lab.active('h2')
    workdir = rvc_fleet.rundir()
    host_vars = os.path.join(workdir, 'host-vars.yml')
    with open(host_vars, 'w') as handle:
        handle.write('all:\n  hosts:\n    h2:\n      nix_confirm_timeout: "{{ 30 + 15 }"\n')
    said = ("h2: nix_confirm_timeout: Syntax error in template: unexpected '}' (Origin: %s:4:28); "
            "fix its template where it is set, or remove it to use the default (30)" % host_vars)
    run = run_playbook(PLAYBOOK, rvc_fleet.inventory, workdir, args=['-i', host_vars])
    assert run.rc != 0, run
    assert 'Traceback' not in output(run), run
    refused = run.result(EVAL, 'h2')
    assert refused['status'] == 'failed', refused
    assert refused['result']['msg'] == said, refused
    assert 'out_path' not in refused['result'] and 'evaluation' not in refused['result']
    assert not any(r['task'] in PHASES[1:] and r['status'] != 'skipped'
                   for r in run.results(host='h2')), run
    assert lab.active('h2') == before
    summary = run.summary()
    assert summary['h2']['failed'], summary
    for host in ('h1', 'h3'):
        assert not summary[host]['failed'], summary
        assert lab.active(host) == run.result(EVAL, host)['result']['out_path']
    # --tags build: h2 fails the same way, the run with it; h1 and h3 build
    run = run_playbook(PLAYBOOK, rvc_fleet.inventory, rvc_fleet.rundir(),
                       args=['-i', host_vars, '--tags', 'build'])
    assert run.rc != 0, run
    refused = run.result(EVAL, 'h2')
    assert refused['status'] == 'failed' and refused['result']['msg'].startswith(
        "h2: nix_confirm_timeout: Syntax error in template"), refused
    for host in ('h1', 'h3'):
        assert run.result(PHASES[1], host)['status'] == 'ok', run
