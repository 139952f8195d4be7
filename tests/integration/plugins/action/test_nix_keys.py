# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keys on the `key` lab: a real deploy (eval, build, copy, then
nix_activate with ``keys``: keys before activation, activation with its
confirmation, keys after, in the one task, as the deploy role runs it) of a
vault-encrypted ``text`` key, a ``src`` key and a ``command`` key to four
hosts at once: two NixOS (root), a nix-darwin (deploy + sudo) and a
home-manager host (app, no root, its own key folder). nixdeploy.fleet.nix_keys
itself (keys without an activation) in the errors test.

The tests run in order on one fleet; each asserts on every host of its run.
Secrets are random per run, so finding one anywhere is a leak.
"""

import hashlib
import json
import os
import secrets
import stat
import subprocess

import pytest

from tests.collection import run_playbook
from tests.deploy_fleet import lab_group_vars, prepare

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'n1', 'persona': 'nixos'}, {'name': 'n2', 'persona': 'nixos'},
         {'name': 'd1', 'persona': 'darwin'}, {'name': 'm1', 'persona': 'home-manager'}]
NAMES = [h['name'] for h in HOSTS]
ROOT_HOSTS = ['n1', 'n2', 'd1']
ACTIVATE = 'activate'
# Where each host keeps its keys, and who owns them (m1 has no root).
PLACE = dict([(h, {'dir': '/run/keys', 'user': 'root', 'group': 'deploy'}) for h in ROOT_HOSTS]
             + [('m1', {'dir': '/home/app/keys', 'user': 'app', 'group': 'app'})])

# What each new system's activation sees: the pre-activation key (copied where
# the test reads it) and whether the post-activation key is there yet.
HOOK = ('cp {dir}/db /nix/var/lab/seen-db; '
        'if [ -e {dir}/token ]; then echo present; else echo absent; fi >/nix/var/lab/token-at-activation'
        ' # {nonce}')


def secret(kind):
    return 'nixdeploy-secret-%s-%s' % (kind, secrets.token_hex(12))


class KeyFleet:
    def __init__(self, lab, flake, base, signing_key):
        self.lab, self.flake, self.base, self.signing_key = lab, flake, base, signing_key
        self.runs = 0
        self.play = os.path.join(base, 'play')
        self.inventory = os.path.join(base, 'inventory')
        self.vault_pass = os.path.join(base, 'vault-pass')
        self.secrets = []  # every secret ever used, to look for anywhere
        self.out_paths = {}

    def remember(self, *values):
        self.secrets.extend(values)
        return values[0] if len(values) == 1 else values

    def rundir(self):
        self.runs += 1
        path = os.path.join(self.base, 'run%d' % self.runs)
        os.makedirs(path)
        return path

    def deploy(self, inventory=None, args=(), env=None):
        return run_playbook(os.path.join(self.play, 'site.yml'), inventory or self.inventory,
                            self.rundir(), args=['--vault-password-file', self.vault_pass] + list(args),
                            env=env, timeout=600)

    def cat(self, host, path):
        proc = self.lab.run_in(host, ['cat', path], check=False)
        return proc.stdout if proc.returncode == 0 else None

    def facts(self, host, path):
        return self.lab.run_in(host, ['stat', '-c', '%a %U %G', path]).stdout.split()


def vault(text, password):
    from ansible.parsing.vault import VaultLib, VaultSecret
    blob = VaultLib([('default', VaultSecret(password.encode()))]).encrypt(text)
    return blob.decode()


def write(path, text, mode=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, mode)


def keys_yaml(fleet, db_text, extra=''):
    """group_vars/all/keys.yml: the db key's text vault-encrypted, as people keep it."""
    with open(fleet.vault_pass) as handle:
        block = vault(db_text, handle.read().strip())
    indented = '\n'.join('      ' + line for line in block.splitlines())
    return ('nix_keys:\n'
            '  db:\n'
            '    text: !vault |\n%s\n'
            '    dest_dir: "{{ keys_dir }}"\n'
            '    user: "{{ keys_user }}"\n'
            '    group: "{{ keys_group }}"\n'
            '    mode: "0640"\n'
            '  token:\n'
            '    command: [cat, "{{ playbook_dir }}/tokens/{{ inventory_hostname }}"]\n'
            '    dest_dir: "{{ keys_dir }}"\n'
            '    user: "{{ keys_user }}"\n'
            '    group: "{{ keys_user }}"\n'
            '    upload_at: post-activation\n' % indented) + extra


API_KEY = ('  api:\n'
           '    src: api.key\n'
           '    name: api-token\n'
           '    dest_dir: "{{ keys_dir }}/svc"\n'
           '    user: "{{ keys_user }}"\n'
           '    group: "{{ keys_user }}"\n'
           '    mode: "0400"\n')
CERT_KEY = ('  cert:\n'
            '    src: cert.pem\n'
            '    dest_dir: "{{ keys_dir }}"\n'
            '    user: "{{ keys_user }}"\n'
            '    group: "{{ keys_group }}"\n'
            '    mode: 0440\n'  # unquoted: YAML's octal, as Ansible's file modules take it
            '    upload_at: post-activation\n')


def site():
    """eval -> build -> copy -> activate (keys before, confirms itself, keys after):
    the deploy role's tasks."""
    nix = {'nix_options': '{{ nix_options }}'}
    return [{'name': 'deploy with keys', 'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'eval', 'nixdeploy.fleet.nix_eval': dict(nix), 'register': 'ev'},
        # closure_diff as the role sets it: --check --diff builds on the controller
        {'name': 'build', 'nixdeploy.fleet.nix_build': dict(
            nix, drv_path='{{ ev.drv_path }}', closure_diff=True)},
        {'name': 'copy', 'nixdeploy.fleet.nix_copy_closure': dict(
            nix, path='{{ ev.out_path }}', signing_key='{{ nix_signing_key }}')},
        {'name': ACTIVATE, 'nixdeploy.fleet.nix_activate': dict(
            nix, path='{{ ev.out_path }}', keys='{{ nix_keys }}', keys_prune='{{ nix_keys_prune }}')},
    ]}]


def private_run_keys(lab, host):
    """/run/keys private to the host: the lab gives each host its own tmpfs
    /run; a lab that shares the machine's /run gets a tmpfs on /run/keys."""
    inside = lab.run_in(host, ['stat', '-c', '%d', '/run']).stdout.strip()
    if inside != str(os.stat('/run').st_dev):
        return False
    os.makedirs('/run/keys', exist_ok=True)
    lab.run_in(host, ['mount', '-t', 'tmpfs', '-o', 'mode=0755,size=1m', 'lab-keys', '/run/keys'])
    return True


@pytest.fixture(scope='module')
def key(make_lab, tmp_path_factory):
    lab = make_lab('key', HOSTS)
    base = str(tmp_path_factory.mktemp('key'))
    nonce = secrets.token_hex(6)  # new systems: no earlier store path can match
    configurations = {}
    for host in HOSTS:
        platform = {'nixos': 'nixos', 'darwin': 'darwin', 'home-manager': 'home-manager'}[host['persona']]
        configurations[host['name']] = {'platform': platform,
                                        'on_activate': HOOK.format(dir=PLACE[host['name']]['dir'], nonce=nonce)}
    flake, signing_key = prepare(lab, os.path.join(base, 'flake'), configurations=configurations)
    fleet = KeyFleet(lab, flake, base, signing_key)
    shared_run = [h for h in ROOT_HOSTS if private_run_keys(lab, h)]

    # the colmena hive of the same NixOS hosts, with deployment.keys
    write(os.path.join(flake.path, 'flake.nix'), COLMENA_FLAKE, 0o644)
    write(fleet.vault_pass, secrets.token_hex(16))
    # the controller side: key files and the playbook, outside the flake (a
    # flake's folder is copied to the store whole)
    write(os.path.join(fleet.play, 'site.yml'), json.dumps(site()), 0o644)
    write(os.path.join(fleet.play, 'files', 'api.key'), fleet.remember(secret('api')))
    for host in NAMES:
        write(os.path.join(fleet.play, 'tokens', host), fleet.remember(secret('token-' + host)))

    inv = fleet.inventory
    write(os.path.join(inv, 'fleet.nix.yml'), json.dumps(
        {'plugin': 'nixdeploy.fleet.nix', 'flake': flake.path, 'source': 'inventory',
         'nix_options': {'substituters': ''}}), 0o644)
    common = dict(lab_group_vars(lab, signing_key), nix_keys_prune=False,
                  ansible_python_interpreter='/nonexistent/python3')  # nothing may need Python
    write(os.path.join(inv, 'group_vars', 'all', 'lab.json'), json.dumps(common), 0o644)
    write(os.path.join(inv, 'group_vars', 'darwin.json'), json.dumps({'ansible_become': True}), 0o644)
    for host, place in PLACE.items():
        write(os.path.join(inv, 'host_vars', '%s.json' % host), json.dumps(
            {'keys_dir': place['dir'], 'keys_user': place['user'], 'keys_group': place['group']}), 0o644)
    fleet.db = fleet.remember(secret('db') + '\n')
    write(os.path.join(inv, 'group_vars', 'all', 'keys.yml'), keys_yaml(fleet, fleet.db) + API_KEY)

    colmena_inv = os.path.join(base, 'inventory-colmena')
    # keyFile and keyCommand make the controller act: an explicit choice of the inventory's
    write(os.path.join(colmena_inv, 'hive.nix.yml'), json.dumps(
        {'plugin': 'nixdeploy.fleet.nix', 'flake': flake.path, 'source': 'colmena',
         'hive_keys': ['text', 'keyFile', 'keyCommand'], 'nix_options': {'substituters': ''}}), 0o644)
    write(os.path.join(colmena_inv, 'group_vars', 'all.json'), json.dumps(common), 0o644)
    fleet.colmena_inventory = colmena_inv
    fleet.colmena_file = fleet.remember(secret('colmena-file'))
    fleet.colmena_cmd = fleet.remember(secret('colmena-cmd'))
    write(os.path.join(base, 'colmena-secrets', 'file'), fleet.colmena_file)
    write(os.path.join(base, 'colmena-secrets', 'cmd'), fleet.colmena_cmd)
    hive_keys = {
        'cfile': {'keyFile': os.path.join(base, 'colmena-secrets', 'file'), 'destDir': '/run/keys/colmena',
                  'group': 'deploy', 'permissions': '0440'},
        'ccmd': {'keyCommand': ['cat', os.path.join(base, 'colmena-secrets', 'cmd')],
                 'destDir': '/run/keys/colmena', 'uploadAt': 'post-activation', 'name': 'cmd.key'},
    }
    write(os.path.join(flake.path, 'colmena-keys.json'),
          json.dumps({h: hive_keys for h in ('n1', 'n2')}), 0o644)
    fleet.marker = os.path.join(base, 'started')
    open(fleet.marker, 'w').close()
    yield fleet
    if shared_run:
        for host in shared_run:
            lab.run_in(host, ['umount', '/run/keys'], check=False)
        try:
            os.rmdir('/run/keys')
        except OSError:
            pass


# The lab's flake with colmena's deployment.keys added to its hive's nodes
# (paths on the controller only: the secrets stay outside the flake).
COLMENA_FLAKE = r'''
{
  outputs = { self }:
    let
      fleet = builtins.fromJSON (builtins.readFile ./fleet.json);
      base = import ./lib.nix { inherit fleet; busyboxDir = ./busybox; };
      keys = builtins.fromJSON (builtins.readFile ./colmena-keys.json);
    in
    base // {
      colmena = base.colmena // builtins.mapAttrs
        (n: k: [ base.colmena.${n} ({ name, ... }: { deployment.keys = k; }) ]) keys;
    };
}
'''


def results(run, task):
    return {r['host']: r for r in run.results(task)}


def ok(run, task, host):
    res = run.result(task, host)
    assert res['status'] == 'ok', (host, res, run)
    return res['result']


def keys_of(run, host):
    """The activate task's result (ok or failed) and its keys_pre and keys_post (None
    when that part did not run)."""
    res = run.result(ACTIVATE, host)['result']
    return res, res.get('keys_pre'), res.get('keys_post')


def phase_names(res):
    """The steps inside the activate task, in order (none when it failed before any)."""
    return [p['name'] for p in res.get('phases') or []]


def assert_no_secret(fleet, *texts):
    for text in texts:
        for value in fleet.secrets:
            assert value.strip() not in text, 'a secret leaked into the output'
            # nor its plain sha256, from which a short secret is guessed (issue 43)
            assert sha(value) not in text and sha(value.strip()) not in text, \
                "a secret's sha256 leaked into the output"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def assert_key(fleet, host, name, content, mode, user, group):
    path = '%s/%s' % (PLACE[host]['dir'], name) if not name.startswith('/') else name
    assert fleet.cat(host, path) == content, (host, path)
    assert fleet.facts(host, path) == [mode, user, group], (host, path)


# ---------------------------------------------------------------- tests
def test_keys_reach_every_host_before_and_after_activation(key):
    # ansible-core has no `json` stdout callback (that is ansible.posix's):
    # its own JSON outputs are the default callback's json result format and
    # the tree callback (one JSON file per host); both are read below.
    tree = os.path.join(key.base, 'tree')
    run = key.deploy(args=['-vvv'], env={'ANSIBLE_CALLBACK_RESULT_FORMAT': 'json',
                                         'ANSIBLE_CALLBACKS_ENABLED': 'record,ansible.builtin.tree',
                                         'ANSIBLE_CALLBACK_TREE_DIR': tree})
    assert run.rc == 0, run
    api = open(os.path.join(key.play, 'files', 'api.key')).read()
    for host in NAMES:
        place = PLACE[host]
        res = ok(run, ACTIVATE, host)
        pre, post = res['keys_pre'], res['keys_post']
        assert res['changed'] and pre['changed'] and post['changed'], host
        # the pre-activation keys, the activation and its confirmation, then the others
        assert phase_names(res) == ['keys', 'activate', 'confirm', 'keys'], res['phases']
        assert res['confirmed'] and res['phases'][0]['end'] <= res['phases'][1]['start']
        assert sorted(pre['key_files']) == ['api', 'db'] and sorted(post['key_files']) == ['token']
        db = dict(pre['key_files']['db'])
        db.pop('dir_created', None)
        assert db == {'path': place['dir'] + '/db', 'changed': True, 'action': 'create',
                      'differs': ['absent'], 'user': place['user'],
                      'group': place['group'], 'mode': '0640', 'upload_at': 'pre-activation'}
        assert pre['key_files']['api']['dir_created'] == place['dir'] + '/svc'
        token = open(os.path.join(key.play, 'tokens', host)).read()
        assert_key(key, host, 'db', key.db, '640', place['user'], place['group'])
        assert_key(key, host, 'svc/api-token', api, '400', place['user'], place['user'])
        assert_key(key, host, 'token', token, '600', place['user'], place['user'])
        # a folder it made lets the key's user reach the key, not list its neighbours
        assert key.lab.run_in(host, ['stat', '-c', '%a', place['dir'] + '/svc']).stdout.strip() == '711'
        # the new system's activation read the pre-activation key; the
        # post-activation one was not there yet
        assert key.cat(host, '/nix/var/lab/seen-db') == key.db, host
        assert key.cat(host, '/nix/var/lab/token-at-activation') == 'absent\n', host
        key.out_paths[host] = ok(run, 'eval', host)['out_path']
    trees = [open(os.path.join(tree, host)).read() for host in NAMES]
    assert all(json.loads(t) for t in trees)
    assert_no_secret(key, run.stdout, run.stderr, json.dumps(run.records), *trees)
    # -vvv shows the scripts sent (what ps shows on both sides): names and paths only
    shown = run.stdout + run.stderr
    assert 'SSH: EXEC' in shown and 'The nix_keys probe' in shown, shown[-2000:]


# its vault, key and activation calls: test_keys_reach_every_host_before_and_after_activation
@pytest.mark.here_only
def test_second_run_changes_nothing(key):
    run = key.deploy(args=['-vvv'])
    assert run.rc == 0, run
    for host in NAMES:
        activate = ok(run, ACTIVATE, host)
        assert activate['changed'] is False and activate['state'] == 'unchanged'
        for part in ('keys_pre', 'keys_post'):
            res = activate[part]
            assert res['changed'] is False and all(not k['changed'] for k in res['key_files'].values())
        recap = [ln for ln in run.stdout.splitlines() if ln.startswith(host + ' ') and 'changed=' in ln]
        assert recap and 'changed=0' in recap[-1] and 'failed=0' in recap[-1], (host, recap)
    assert_no_secret(key, run.stdout, run.stderr)


def rotate(key):
    """New db text, api dropped (pruned), a new post-activation key cert; n2's
    new system fails to activate (it rolls back)."""
    key.db_new = key.remember(secret('db-rotated') + '\n')
    key.cert = key.remember(secret('cert'))
    write(os.path.join(key.play, 'files', 'cert.pem'), key.cert)
    write(os.path.join(key.inventory, 'group_vars', 'all', 'keys.yml'),
          keys_yaml(key, key.db_new, CERT_KEY))
    key.flake.set_config('n2', version='2', behaviour='fail')


def test_check_and_diff_show_what_changes_and_change_nothing(key):
    rotate(key)
    run = key.deploy(args=['--check', '--diff', '-e', 'nix_keys_prune=true'])
    for host in NAMES:
        place = PLACE[host]
        res = ok(run, ACTIVATE, host)
        pre, post = res['keys_pre'], res['keys_post']
        assert res['changed'] and not res['activated'], host  # check mode: a report
        assert pre['changed'] and pre['key_files']['db']['action'] == 'update', (host, pre)
        assert pre['key_files']['db']['differs'] == ['content']
        assert pre['removed'] == [place['dir'] + '/svc/api-token']
        assert post['key_files']['cert']['action'] == 'create' and not post['key_files']['token']['changed']
        # nothing changed on the host
        assert key.cat(host, place['dir'] + '/db') == key.db
        assert key.cat(host, place['dir'] + '/svc/api-token') is not None
        assert key.cat(host, place['dir'] + '/cert') is None
    # the diff shows whether the content changes, owners and modes: no hash
    assert 'content: old' in run.stdout and 'content: new' in run.stdout
    assert 'sha256: ' not in run.stdout
    assert 'present (pruned key)' in run.stdout
    assert_no_secret(key, run.stdout, run.stderr, json.dumps(run.records))


# its key, prune and rollback calls: test_keys_reach_every_host_... and test_check_and_diff_...
@pytest.mark.here_only
def test_rolled_back_host_gets_no_post_activation_key(key):
    run = key.deploy(args=['-e', 'nix_keys_prune=true'])
    assert run.rc != 0, run
    failed = run.result(ACTIVATE, 'n2')
    assert failed['status'] == 'failed' and failed['result']['rolled_back'], failed
    assert failed['result']['phase'] != 'keys', failed
    assert 'keys_post' not in failed['result'], 'a rolled-back host got its post-activation keys'
    assert 'keys' not in phase_names(failed['result'])[1:]
    cert = key.cert
    for host in NAMES:
        place = PLACE[host]
        res, pre, post = keys_of(run, host)
        assert pre['key_files']['db']['action'] == 'update' and 'sha256' not in pre['key_files']['db']
        assert pre['removed'] == [place['dir'] + '/svc/api-token'], pre
        assert key.cat(host, place['dir'] + '/svc/api-token') is None
        assert_key(key, host, 'db', key.db_new, '640', place['user'], place['group'])
        if host == 'n2':
            assert post is None and key.cat(host, place['dir'] + '/cert') is None
            continue
        # unchanged systems, changed keys
        assert ok(run, ACTIVATE, host)['state'] == 'unchanged' and res['changed']
        assert post['key_files']['cert']['changed']
        assert_key(key, host, 'cert', cert, '440', place['user'], place['group'])
    assert_no_secret(key, run.stdout, run.stderr)


def test_colmena_hive_keys_deploy_through_the_inventory_plugin(key):
    run = key.deploy(inventory=key.colmena_inventory)
    hosts = sorted(r['host'] for r in run.results('eval'))
    assert hosts == ['n1', 'n2'], run  # colmena hives are NixOS only
    for host in hosts:
        assert ok(run, 'eval', host)['out_path'] == key.out_paths[host] or host == 'n2'
        _res, pre, _post = keys_of(run, host)
        assert list(pre['key_files']) == ['cfile'] and pre['key_files']['cfile']['changed']
        assert_key(key, host, '/run/keys/colmena/cfile', key.colmena_file, '440', 'root', 'deploy')
    assert ok(run, ACTIVATE, 'n1')['keys_post']['key_files']['ccmd']['path'] == '/run/keys/colmena/cmd.key'
    assert_key(key, 'n1', '/run/keys/colmena/cmd.key', key.colmena_cmd, '600', 'root', 'root')
    # n2's new system still fails: rolled back, no post-activation key
    res, _pre, post = keys_of(run, 'n2')
    assert res['rolled_back'] and post is None
    assert key.cat('n2', '/run/keys/colmena/cmd.key') is None
    assert_no_secret(key, run.stdout, run.stderr)


# its nix_keys and nix_activate calls: test_links_the_keys_owner_... and test_keys_reach_...
@pytest.mark.here_only
@pytest.mark.parametrize('module', ['nix_keys', 'nix_activate'])
def test_errors_name_host_and_key_and_spare_the_others(key, module):
    """One run, one failure per host but n2's: nix_keys alone, and nix_activate
    with keys (each host's current system: the activation changes nothing), where
    d1's key fails after the activation."""
    inv = key.lab.ansible_inventory()
    bad = {
        'n1': {'bad': {'text': 'x', 'src': 'y'}},
        'd1': {'cmd': {'command': ['sh', '-c', 'echo "vault is locked" >&2; exit 3'],
                       'upload_at': 'post-activation'}},
        'm1': {'rootonly': {'text': 'x'}},  # /run/keys as app: not allowed
        'n2': {'fine': {'text': 'fine', 'dest_dir': '/run/keys/e-' + module}},
    }
    for group in inv['all']['children'].values():
        for name, hostvars in group['hosts'].items():
            hostvars.update(nix_keys=bad[name], ansible_python_interpreter='/nonexistent/python3',
                            out_path=key.out_paths[name])
    args = {'keys': '{{ nix_keys }}'}
    if module == 'nix_activate':
        args['path'] = '{{ out_path }}'
    play = [{'name': 'keys', 'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'keys', 'nixdeploy.fleet.' + module: args}]}]
    run = run_playbook(play, inv, key.rundir())
    assert run.rc != 0
    res = results(run, 'keys')
    assert res['n2']['status'] == 'ok' and res['n2']['result']['changed']
    assert key.cat('n2', '/run/keys/e-%s/fine' % module) == 'fine'
    msgs = {h: res[h]['result']['msg'] for h in ('n1', 'd1', 'm1')}
    assert all(res[h]['status'] == 'failed' and res[h]['result']['phase'] == 'keys'
               and res[h]['result']['rolled_back'] is False for h in msgs), res
    assert msgs['n1'] == "n1: key 'bad': give exactly one of text, src or command (got text and src)"
    # a failing command is named by its program (its arguments and stderr may hold a secret)
    assert msgs['d1'].startswith("d1: ") and "key 'cmd': command sh exited with 3" in msgs['d1'], msgs['d1']
    assert msgs['m1'].startswith("m1: key 'rootonly' (/run/keys/rootonly): cannot"), msgs['m1']
    assert 'Permission denied' in msgs['m1'] or 'permission denied' in msgs['m1'].lower()
    if module == 'nix_keys':
        assert msgs['d1'].startswith("d1: key 'cmd': command sh "), msgs['d1']
        return
    out = dict((h, r['result']) for h, r in res.items())
    # failed before the activation: nothing activated, the failure in keys_pre
    for host in ('n1', 'm1'):
        assert not out[host]['activated'] and out[host]['keys_pre']['failed'], out[host]
        assert 'keys_post' not in out[host] and phase_names(out[host]) in ([], ['keys']), out[host]
    # failed after it: the activation (here: nothing to do) stays and says so
    assert out['d1']['state'] == 'unchanged' and out['d1']['keys_post']['failed'], out['d1']
    assert msgs['d1'].startswith('d1: %s stays active (nothing is rolled back), but the post-activation '
                                 "keys failed: key 'cmd': command sh " % key.out_paths['d1']), msgs['d1']
    # no pre-activation key and no prune: no call for them
    assert 'keys_pre' not in out['d1'] and phase_names(out['d1']) == ['activate', 'keys']
    # a host with pre-activation keys only: no call after the activation
    assert out['n2']['state'] == 'unchanged' and out['n2']['keys_pre']['changed']
    assert 'keys_post' not in out['n2'] and phase_names(out['n2']) == ['keys', 'activate']
    assert_no_secret(key, run.stdout, run.stderr, json.dumps(run.records))


def as_app(fleet, host, *argv):
    """``argv`` on ``host`` as the lab user app: the key's owner, a service account."""
    return fleet.lab.run_in(host, ['setpriv', '--reuid=app', '--regid=app', '--init-groups'] + list(argv))


def test_links_the_keys_owner_planted_reach_no_root_file(key):
    """The key's owner (app) owns folders keys go to and plants links there to a
    root-owned file and folder: on n1 it turned the key's folder itself into a
    link (it may write the folder above), on n2 the key's own name is a link, on
    d1 (sudo) its folder holds links beside the key. The root-owned file stays
    as it was on every host; n1's key is refused naming the folder app can
    write, n2's as a link, d1's is written as asked."""
    precious, rootdir = '/nix/var/lab/rootdir/precious', '/nix/var/lab/rootdir'
    for host in ('n1', 'n2', 'd1'):
        key.lab.run_in(host, ['sh', '-c', 'mkdir -p -m 0700 %s && printf "root only\\n" >%s && chmod 0600 %s'
                              % (rootdir, precious, precious)])
        key.lab.run_in(host, ['sh', '-c', 'mkdir -p /run/keys && rm -rf /run/keys/app-%s && mkdir -m 0755 /run/keys/app-%s && '
                              'chown app:app /run/keys/app-%s' % ((host,) * 3)])
    as_app(key, 'n1', 'ln', '-s', rootdir, '/run/keys/app-n1/keys')
    as_app(key, 'n2', 'ln', '-s', precious, '/run/keys/app-n2/precious')
    for name in ('precious', '.fresh.nixdeploy.1', '.nixdeploy-put.1.0', 'fresh.tmp'):
        as_app(key, 'd1', 'ln', '-s', precious, '/run/keys/app-d1/' + name)
    content = key.remember(secret('app'))
    keys = {'n1': {'precious': {'text': content, 'dest_dir': '/run/keys/app-n1/keys'}},
            'n2': {'precious': {'text': content, 'dest_dir': '/run/keys/app-n2'}},
            'd1': {'fresh': {'text': content, 'dest_dir': '/run/keys/app-d1'}}}
    inv = key.lab.ansible_inventory()
    for group in inv['all']['children'].values():
        for name in list(group['hosts']):
            if name not in keys:
                del group['hosts'][name]
                continue
            for spec in keys[name].values():
                spec.update(user='app', group='app', mode='0600')
            group['hosts'][name].update(nix_keys=keys[name], ansible_python_interpreter='/nonexistent/python3')
    play = [{'name': 'keys', 'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'name': 'keys', 'nixdeploy.fleet.nix_keys': {'keys': '{{ nix_keys }}'}}]}]
    run = run_playbook(play, inv, key.rundir())
    res = results(run, 'keys')
    for host in ('n1', 'n2', 'd1'):
        assert key.cat(host, precious) == 'root only\n', host
        assert key.facts(host, precious) == ['600', 'root', 'root'], host
        assert key.lab.run_in(host, ['ls', '-A', rootdir]).stdout.split() == ['precious'], host
    assert res['n1']['status'] == 'failed', res['n1']
    assert res['n1']['result']['msg'] == (
        "n1: key 'precious' (/run/keys/app-n1/keys/precious): refusing to write "
        "/run/keys/app-n1/keys/precious: /run/keys/app-n1 (a folder above /run/keys/app-n1/keys) can be "
        "written by its owner app; the key's folder may be written only by root and the key's owner, and "
        "the folders above it only by root"), res['n1']
    assert res['n2']['status'] == 'failed'
    assert "/run/keys/app-n2/precious is a symbolic link" in res['n2']['result']['msg'], res['n2']
    assert res['d1']['status'] == 'ok' and res['d1']['result']['changed'], res['d1']
    assert_key(key, 'd1', '/run/keys/app-d1/fresh', content, '600', 'app', 'app')
    # the links are where app put them, nothing else is left there
    assert sorted(key.lab.run_in('d1', ['ls', '-A', '/run/keys/app-d1']).stdout.split()) == sorted(
        ['precious', '.fresh.nixdeploy.1', '.nixdeploy-put.1.0', 'fresh.tmp', 'fresh'])
    assert_no_secret(key, run.stdout, run.stderr, json.dumps(run.records))


def test_no_store_path_holds_a_secret(key):
    """Every store path made since the fleet came up, on the controller, and
    every host's whole store: none holds any secret of these runs."""
    patterns = os.path.join(key.base, 'patterns')
    write(patterns, '\n'.join(s.strip() for s in key.secrets) + '\n')
    listing = subprocess.run(['find', '/nix/store', '-mindepth', '1', '-maxdepth', '1',
                              '-cnewer', key.marker], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, check=False)
    # a test beside this one may collect garbage on the controller while find
    # lists its store (CI38, current stack): a path gone meanwhile, no more
    assert listing.returncode == 0 or all(
        line.endswith('No such file or directory') for line in listing.stderr.splitlines()), \
        listing.stderr
    found = listing.stdout.split()
    # the scan does see this run's paths: the systems built for it
    assert set(key.out_paths.values()) <= set(found), 'the store scan misses new paths'
    stores = found + [os.path.join(key.lab.host(h)['dir'], 'nix', 'store') for h in NAMES]
    grep = subprocess.run(['grep', '-rlF', '-f', patterns, '--'] + stores, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert grep.returncode == 1 and not grep.stdout, 'secrets in the store: %s' % grep.stdout
    assert stat.S_IMODE(os.stat(patterns).st_mode) == 0o600


HIVES = r'''
{
  outputs = { self }: let
    lib = { mkDefault = content: { _type = "override"; priority = 1000; inherit content; };
            mkForce = content: { _type = "override"; priority = 50; inherit content; }; };
  in {
    colmena = {
      meta.nixpkgs = { inherit lib; };
      defaults = { lib, ... }: {
        deployment.keys.db = { user = lib.mkDefault "nobody"; permissions = "0640"; };
        deployment.keys.shared.keyFile = "/etc/nixdeploy/shared.key";
      };
      web1 = { lib, ... }: {
        deployment.targetHost = "10.0.0.1";
        deployment.keys.db = { keyCommand = [ "pass" "show" "db" ]; user = "postgres"; };
        deployment.keys.inline = { text = "already in the store"; uploadAt = "post-activation"; };
      };
      web2 = { ... }: { deployment.targetHost = "10.0.0.2"; deployment.keys = throw "no keys"; };
    };
  };
}
'''


def test_colmena_keys_merge_as_the_module_system(tmp_path):
    """Real `nix eval` of a raw hive: defaults merged per key and field with
    priorities; keys that throw cost the node its keys only, with a warning."""
    from tests.collection import BIN, ansible_env, unsafe_free
    write(str(tmp_path / 'flake.nix'), HIVES, 0o644)
    write(str(tmp_path / 'hive.nix.yml'), json.dumps({'plugin': 'nixdeploy.fleet.nix', 'flake': '.',
                                                      'hive_keys': ['text', 'keyFile', 'keyCommand']}),
          0o644)
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', str(tmp_path / 'hive.nix.yml'),
                           '--list'], env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=True)
    hostvars = json.loads(proc.stdout)['_meta']['hostvars']

    web1 = unsafe_free(hostvars['web1'])
    assert web1['nix_keys'] == {
        'db': {'command': ['pass', 'show', 'db'], 'user': 'postgres', 'mode': '0640'},
        'shared': {'src': '/etc/nixdeploy/shared.key'},
        'inline': {'text': 'already in the store', 'upload_at': 'post-activation'},
    }
    assert 'keys' not in json.dumps(web1['nix_node'])
    assert 'nix_keys' not in hostvars['web2'] and unsafe_free(hostvars['web2'])['ansible_host'] == '10.0.0.2'
