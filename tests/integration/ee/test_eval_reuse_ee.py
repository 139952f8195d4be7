"""Evaluations reused across commits inside the execution environment, as
AWX runs a job there (docs/eval-cache.md "Reuse across commits",
docs/execution-environment.md): the EE image with its default security
profile, a persistent volume at /nix holding the store and the evaluation
cache (NIXDEPLOY_EVAL_CACHE on it), the project a `path:` flake (AWX copies
the checkout without .git). A first job records every host's reads; after a
commit that changes one host's file, the next job reuses the others. Each
job only evaluates (a check job), with the summary callback enabled: the
container ends with ansible-playbook, so the records are kept before then
or never. The hosts' results come from the suite's ``record`` callback.

Two ways AWX runs the EE: a container group's pod (any UID, group 0) and a
VM execution node (its user's rootless podman, ``--user=root``)."""

import base64
import json
import os
import pathlib
import shutil
import subprocess
import uuid

import pytest

from tests.integration.ee import node
from tests.integration.ee.jobs import CONTAINERS_CONF, IMAGE, JOB_UID, podman

pytestmark = pytest.mark.lab

CACHE = '/nix/var/nixdeploy/eval-cache'
HOSTS = ('r1', 'r2', 'r3')
FLAKE = '''{
  outputs = { self }: {
    nixosConfigurations = builtins.listToAttrs (map (name: {
      inherit name;
      value.config.system.build.toplevel = derivation {
        inherit name; system = "x86_64-linux"; builder = "/bin/sh";
        args = [ "-c" "echo > $out" ];
        own = builtins.readFile (./hosts + "/${name}.txt");
      };
    }) [ "r1" "r2" "r3" ]);
  };
}
'''
PLAY = '''- name: Evaluate
  hosts: all
  gather_facts: false
  tasks:
    - name: Evaluate each host
      nixdeploy.fleet.nix_eval:
        flake: /runner/project
        attr: "nixosConfigurations.{{ inventory_hostname }}.config.system.build.toplevel"
        nix_options: {substituters: ''}
'''
INVENTORY = {'all': {'hosts': dict((h, {'ansible_connection': 'local',
                                        'ansible_python_interpreter': '/usr/bin/python3'})
                                   for h in HOSTS)}}


# the evaluation cache's signing key, as a custom credential gives it to
# every job of the team: the same key file in each job's private data dir
# (each job's HOME is new: a key made there would sign for that job alone)
KEY_FILE = '/runner/credentials/eval-cache.key'


def team_key():
    """A secret key in Nix's format (name:base64 of the seed and the public
    key), made once for the test's jobs."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding, NoEncryption, PrivateFormat, PublicFormat)
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()) + \
        private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return 'awx-team:%s\n' % base64.b64encode(raw).decode('ascii')


def make_job(private, versions, key):
    """A job's private data dir: the project (flake and files), the play and
    the team's cache key."""
    shutil.rmtree(private, ignore_errors=True)
    os.makedirs(os.path.join(private, 'project', 'hosts'))
    os.makedirs(os.path.join(private, 'out'))
    os.makedirs(os.path.join(private, 'credentials'))
    key_path = os.path.join(private, 'credentials', 'eval-cache.key')
    with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), 'w') as handle:
        handle.write(key)
    with open(os.path.join(private, 'project', 'flake.nix'), 'w') as handle:
        handle.write(FLAKE)
    for host in HOSTS:
        with open(os.path.join(private, 'project', 'hosts', '%s.txt' % host), 'w') as handle:
            handle.write(versions.get(host, 'one'))
    with open(os.path.join(private, 'play.yml'), 'w') as handle:
        handle.write(PLAY)
    os.makedirs(os.path.join(private, 'callbacks'))
    shutil.copy(RECORD, os.path.join(private, 'callbacks'))
    with open(os.path.join(private, 'inventory.json'), 'w') as handle:
        json.dump(INVENTORY, handle)


def output(job):
    text = job.stdout
    if isinstance(text, bytes):
        text = text.decode(errors='replace')
    return (text + (job.stderr or '') if isinstance(job.stderr, str) else text)[-3000:]


def results(private):
    """{host: its nix_eval result}, from the job's record."""
    with open(os.path.join(private, 'out', 'record.jsonl')) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return dict((r['host'], r['result']) for r in records
                if r.get('task') == 'Evaluate each host')


COMMAND = ['ansible-playbook', '-i', '/runner/inventory.json', '/runner/play.yml']
ENV = ['-e', 'HOME=/runner', '-e', 'NIXDEPLOY_EVAL_CACHE=%s' % CACHE,
       '-e', 'NIXDEPLOY_EVAL_CACHE_KEY_FILE=%s' % KEY_FILE,
       '-e', 'ANSIBLE_CALLBACK_PLUGINS=/runner/callbacks',
       '-e', 'ANSIBLE_CALLBACKS_ENABLED=record,nixdeploy.fleet.summary',
       '-e', 'NIXDEPLOY_TEST_RECORD=/runner/out/record.jsonl']
RECORD = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      'callback_plugins', 'record.py')


def pod_job(private, volume):
    """A container group's pod: the image's default profile, any UID in group 0."""
    for root, dirs, files in os.walk(private):
        for name in [root] + [os.path.join(root, f) for f in dirs + files]:
            os.lchown(name, JOB_UID, 0)
    return podman('run', '--rm', '--net=host', '--passwd=false', '--user', '%d:0' % JOB_UID,
                  '--group-add=root', *ENV, '-v', '%s:/runner:Z' % private,
                  '-v', '%s:/nix' % volume, IMAGE, *COMMAND, check=False)


def node_job(private, volume):
    """A VM execution node: the node user's rootless podman, ``--user=root``."""
    info = node.env(CONTAINERS_CONF)
    uid = int(subprocess.run(['id', '-u', node.USER], stdout=subprocess.PIPE, check=True,
                             env=info).stdout)
    for root, dirs, files in os.walk(private):
        for name in [root] + [os.path.join(root, f) for f in dirs + files]:
            os.lchown(name, uid, uid)
    argv = node.as_user(['podman', 'run', '--rm'] + node.CONTAINER_OPTIONS + ENV + [
        '-v', '%s:/runner:Z' % private, '-v', '%s:/nix' % volume, IMAGE] + COMMAND,
        CONTAINERS_CONF)
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


def node_folder(request):
    """A folder of the test on the node's disk, gone after it."""
    folder = pathlib.Path(node.HOME) / ('reuse-test-%s' % uuid.uuid4().hex[:8])
    request.addfinalizer(lambda: shutil.rmtree(str(folder), ignore_errors=True))
    return folder


@pytest.mark.parametrize('where', ['container group', 'execution node'])
def test_a_job_after_a_commit_reuses_the_hosts_it_did_not_change(tmp_path, where, request):
    if shutil.which('podman') is None or podman('image', 'exists', IMAGE,
                                                check=False).returncode != 0:
        pytest.skip('needs podman and the EE image (make ee)')
    base = tmp_path / 'reuse'
    if where == 'execution node':
        reason, _seconds = node.prepare(CONTAINERS_CONF)
        if reason:
            pytest.skip('no VM execution node here: %s' % reason)
        node.load_image(IMAGE, CONTAINERS_CONF)
        # the node's own disk: its user cannot reach pytest's root-only folder
        base = node_folder(request)
    os.makedirs(str(base), exist_ok=True)
    os.chmod(str(base), 0o755)
    volume = str(base / 'nix-volume')
    os.makedirs(volume)
    if where == 'execution node':
        uid = int(subprocess.run(['id', '-u', node.USER], stdout=subprocess.PIPE,
                                 check=True).stdout)
        os.chown(volume, uid, uid)
        run = node_job
    else:
        # the persistent volume: an empty folder of group 0, as fsGroup 0 gives a
        # claim, with the sticky bit the cache needs above it (docs/eval-cache.md)
        os.chown(volume, -1, 0)
        os.chmod(volume, 0o3775)
        run = pod_job
    private = str(base / 'job')

    key = team_key()
    make_job(private, {}, key)
    job = run(private, volume)
    assert job.returncode == 0, output(job)
    first = results(private)
    assert [first[h]['answered'] for h in HOSTS] == ['evaluated'] * 3, first

    # a commit: r2's own file changes
    make_job(private, {'r2': 'two'}, key)
    job = run(private, volume)
    assert job.returncode == 0, output(job)
    second = results(private)
    assert {h: second[h]['answered'] for h in HOSTS} == {
        'r1': 'reused', 'r2': 'evaluated', 'r3': 'reused'}, second
    assert second['r2']['drv_path'] != first['r2']['drv_path']
    for host in ('r1', 'r3'):
        assert second[host]['drv_path'] == first[host]['drv_path']
        assert second[host]['reused']['from']['nar_hash'] == first[host]['source']['nar_hash']
        assert second[host]['reused']['checked'] > 0
    assert not any('no host is reused' in w for r in second.values()
                   for w in r.get('warnings', ())), second
