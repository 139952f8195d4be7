"""Whole ansible-playbook runs with the stdout callback nixdeploy.fleet.console,
and with ansible-core's plain ``default`` beside it: no lab, hosts on the
local connection.

The deploy playbook on three hosts that name no flake fails them all at
evaluation with one message (a cause the whole batch shares): the console
says it once for the three hosts, and the role's rescue adds nothing; the
default callback, which still works with the collection, says it on every
host. A playbook of a user's own whose task fails keeps ansible-core's
[ERROR] block (where the task is) and says the message once. What the
tests in the lab check of the console: tests/integration/test_new_user.py."""

import os
import re
import subprocess

import pytest

from tests.collection import BIN, ansible_env

pytestmark = pytest.mark.slow

HOSTS = ('web1', 'web2', 'mac')
CAUSE = 'no flake: set the flake option or the host var nix_flake'
OWN_PLAYBOOK = """\
- name: A play of the user's own
  hosts: all
  gather_facts: false
  strategy: host_pinned
  tasks:
    - name: Check the disk
      ansible.builtin.fail:
        msg: the disk is full
      when: inventory_hostname != 'mac'
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
"""


def run(folder, playbook, callback, env=None):
    inventory = os.path.join(folder, 'hosts')
    with open(inventory, 'w') as handle:
        handle.write(''.join('%s ansible_connection=local\n' % host for host in HOSTS))
    env = ansible_env(dict({'ANSIBLE_STDOUT_CALLBACK': callback,
                            'ANSIBLE_CALLBACKS_ENABLED': 'nixdeploy.fleet.summary'}, **(env or {})))
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', inventory, playbook],
                          cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                          check=False)
    return proc.returncode, proc.stdout


def recap(out):
    return dict((m.group(1), int(m.group(2))) for m in re.finditer(
        r'^(\S+)\s*: ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=(\d+)', out, re.M))


def outside_summary(out):
    """The console's lines, without the NIXDEPLOY SUMMARY's (which says each
    failed host's cause again, once)."""
    before, _banner, _after = out.partition('NIXDEPLOY SUMMARY')
    return before


def test_the_console_says_a_cause_the_batch_shares_once(tmp_path):
    # (a loaded machine may start the three hosts' tasks seconds apart: the
    # console waits for them longer than its one second)
    rc, out = run(str(tmp_path), 'nixdeploy.fleet.deploy', 'nixdeploy.fleet.console',
                  env={'NIXDEPLOY_CONSOLE_GROUP_WAIT': '3'})
    assert rc == 2, out
    assert recap(out) == dict((host, 1) for host in HOSTS), out
    # one line for the three hosts, in name order
    assert [line for line in out.splitlines() if line.startswith('fatal')] == [
        'fatal: [mac, web1, web2] at eval: %s' % CAUSE], out
    # once before the summary, once in it (its other hosts point to the first)
    assert outside_summary(out).count(CAUSE) == 1, out
    assert out.count(CAUSE) == 2, out
    assert out.count('FAILED at eval: the same as mac') == len(HOSTS) - 1, out
    # no second error, no result dump, no [ERROR] block, no rescue task
    for needle in ('see its error above', 'FAILED!', '[ERROR]', '"msg"', 'Keep the failed host',
                   'End the play'):
        assert needle not in out, (needle, out)
    assert out.count('TASK [nixdeploy.fleet.deploy : Evaluate the system of each host]') == 1, out


def test_the_default_callback_still_works_with_the_collection(tmp_path):
    """ansible-core's own stdout callback: the deploy fails the hosts, each
    with its message, the recap and the summary agree (as before the
    console: the cause printed on every host, three times each)."""
    rc, out = run(str(tmp_path), 'nixdeploy.fleet.deploy', 'default')
    assert rc == 2, out
    assert recap(out) == dict((host, 1) for host in HOSTS), out
    for host in HOSTS:
        assert [line for line in out.splitlines()
                if line.startswith('fatal: [%s]: FAILED!' % host) and CAUSE in line], out
    # the summary says the cause under the first host, the others point to it
    assert re.search(r'^mac .*FAILED at eval: %s' % re.escape(CAUSE), out, re.M), out
    for host in ('web1', 'web2'):
        assert re.search(r'^%s .*FAILED at eval: the same as mac$' % host, out, re.M), out
    assert 'nixdeploy: 3 hosts: 3 failed' in out, out


def test_a_users_own_failed_task_says_its_message_once(tmp_path):
    playbook = os.path.join(str(tmp_path), 'own.yml')
    with open(playbook, 'w') as handle:
        handle.write(OWN_PLAYBOOK)
    rc, out = run(str(tmp_path), playbook, 'nixdeploy.fleet.console')
    assert rc == 2, out
    assert recap(out) == {'web1': 1, 'web2': 1, 'mac': 0}, out
    # ansible-core's block names the task's file and line, and says the message
    assert out.count('the disk is full') == 1, out
    assert re.search(r'\[ERROR\]: Task failed: .*the disk is full', out), out
    assert 'own.yml:6' in out, out
    # each host's fatal line, its result without the message the block said
    # (under host_pinned, mac may print the next task's header before web2's
    # result comes: web2's line then names its own task, as the console's
    # other lines do)
    assert sorted(line.split(' =>')[0].replace(' at Check the disk]', ']')
                  for line in out.splitlines()
                  if line.startswith('fatal')) == ['fatal: [web1]: FAILED!',
                                                   'fatal: [web2]: FAILED!'], out
    # one header a task, and the skipped host not listed
    assert out.count('TASK [Check the disk]') == 1, out
    assert 'skipping' not in out, out


SERIAL_PLAYBOOK = """\
- name: Evaluate one host at a time
  hosts: all
  gather_facts: false
  serial: 1
  tasks:
    - name: Evaluate the system
      nixdeploy.fleet.nix_eval: {}
      ignore_errors: true
"""


@pytest.mark.parametrize('callback', ['nixdeploy.fleet.console', 'default'])
def test_each_batch_is_summarised_before_the_next_batch_starts(tmp_path, callback):
    """serial: 1, three batches. With the console, each batch's summary
    comes before the next batch's PLAY header; the default prints that
    header before the summary callback hears the batch is over."""
    playbook = os.path.join(str(tmp_path), 'serial.yml')
    with open(playbook, 'w') as handle:
        handle.write(SERIAL_PLAYBOOK)
    rc, out = run(str(tmp_path), playbook, callback)
    assert rc == 0, out
    marks = [line.split()[0] for line in out.splitlines()
             if line.startswith(('PLAY [', 'TASK [', 'NIXDEPLOY SUMMARY'))]
    batch = ['PLAY', 'TASK']
    if callback == 'default':
        assert marks == batch + (['PLAY', 'NIXDEPLOY', 'TASK']) * 2 + ['NIXDEPLOY'], out
        return
    # each batch has its task's header (the same task as the batch before)
    assert marks == (batch + ['NIXDEPLOY']) * 3, out
    # each summary holds its own batch's host, once
    batches = out.split('NIXDEPLOY SUMMARY')[1:]
    hosts = [[h for h in HOSTS if re.search(r'^%s .*FAILED at eval' % h, text, re.M)]
             for text in batches]
    assert sorted(sum(hosts, [])) == sorted(HOSTS) and all(len(h) == 1 for h in hosts), out
