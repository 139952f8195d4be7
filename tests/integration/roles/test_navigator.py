"""`ansible-navigator run deploy.yml --ee false -m stdout`, as many users run a
playbook, against a fleet of three lab hosts where one fails its activation.

ansible-navigator drives ansible-playbook through ansible-runner: the
collection's summary callback, the custom stats and the exit code must come
through it as they do with ansible-playbook.
"""

import os
import shutil
import json
import subprocess

import pytest

from tests.collection import BIN, REPO, PlaybookRun, ansible_env
from tests.deploy_fleet import prepare, write_inventory

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'nav1', 'persona': 'nixos'}, {'name': 'nav2', 'persona': 'darwin'},
         {'name': 'nav3', 'persona': 'nixos'}]


def navigator(workdir, inventory, *args):
    """ansible-navigator run deploy.yml (this repository's) in ``workdir``."""
    shutil.copy(os.path.join(REPO, 'deploy.yml'), os.path.join(workdir, 'deploy.yml'))
    record = os.path.join(workdir, 'record.jsonl')
    env = ansible_env({'NIXDEPLOY_TEST_RECORD': record})
    argv = [os.path.join(BIN, 'ansible-navigator'), 'run', 'deploy.yml', '--ee', 'false',
            '-m', 'stdout', '--pae', 'false', '--lf', os.path.join(workdir, 'navigator.log'),
            '-i', inventory] + list(args)
    proc = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=600,
                          check=False)
    records = []
    if os.path.exists(record):
        with open(record) as handle:
            records = [json.loads(line) for line in handle if line.strip()]
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, records)


def test_navigator_deploys_a_mixed_fleet(make_lab, tmp_path):
    lab = make_lab('nav', HOSTS)
    flake, secret = prepare(lab, str(tmp_path / 'flake'))
    inventory = write_inventory(str(tmp_path / 'inventory'), lab, flake, secret)
    before = {host: lab.active(host) for host in lab.hosts}
    flake.set_config('nav3', behaviour='fail')
    run = navigator(str(tmp_path), inventory)
    assert run.rc != 0, run
    summary = run.summary()
    assert sorted(summary) == ['nav1', 'nav2', 'nav3'], run
    for host in ('nav1', 'nav2'):
        assert not summary[host]['failed'] and summary[host]['outcome'] == 'switched', summary
        assert lab.active(host) != before[host], host
    # its first system fails to activate: failed at activate, nothing active
    assert summary['nav3']['failed'] and summary['nav3']['phase'] == 'activate', summary
    assert lab.active('nav3') == before['nav3']
    # what ansible-playbook prints comes through: the summary, no deprecation
    assert 'NIXDEPLOY SUMMARY' in run.stdout, run
    assert 'DEPRECATION' not in run.stdout + run.stderr, run
