"""nix_publish's server rebuilds its work from the context a host wrote
(``serve_publish``: its Nix options, cache, signing key, check mode): a
real ``ansible-playbook`` publishes two hosts' systems to a ``file://``
cache with a real Nix, once in check mode and once for real. Nothing may
be lost on the way: check mode copies nothing, the real run signs with
the task's key into the task's cache, and every Nix process of the
server runs the task's ``nix_bin`` with the task's ``nix_options``."""

import json
import os
import stat
import subprocess
import textwrap

import pytest

from tests.collection import BIN, ansible_env

HOSTS = ('h1', 'h2')
KEY_NAME = 'serve-context-test-1'
# a setting every Nix process of the task must get (NIX_CONFIG), with the
# empty substituters the tests run with
MARKER_OPTION = 'connect-timeout'

PLAYBOOK = textwrap.dedent('''\
    - name: Publish each host's system
      hosts: all
      gather_facts: false
      tasks:
        - name: Publish
          nixdeploy.fleet.nix_publish:
            cache: "file://{{ playbook_dir }}/cache"
            signing_key: "{{ playbook_dir }}/secret.key"
            nix_bin: "{{ playbook_dir }}/nix-logged"
            nix_options: {substituters: "", %(marker)s: "7"}
          register: published
        - name: Keep the result
          ansible.builtin.copy:
            content: "{{ published | to_json }}"
            dest: "{{ playbook_dir }}/{{ inventory_hostname }}-{{ ansible_check_mode }}.json"
          delegate_to: localhost
          check_mode: false
    ''' % {'marker': MARKER_OPTION})

# the task's nix_bin: the real Nix, each call's argv and NIX_CONFIG kept
# in one write (the server's Nix processes run at once)
LOGGED_NIX = textwrap.dedent('''\
    #!/bin/sh
    record="argv: $*
    $(printf '%%s\\n' "$NIX_CONFIG" | sed 's/^/config: /')
    --"
    printf '%%s\\n' "$record" >> '%(log)s'
    exec '%(nix)s' "$@"
    ''')


def _real_nix():
    for folder in os.environ.get('PATH', '').split(os.pathsep):
        candidate = os.path.join(folder, 'nix')
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.skip('no nix on PATH')
    return None


@pytest.fixture(scope='module')
def play(tmp_path_factory):
    """A playbook folder: each host's own new store path (its
    ``nix_out_path``, as nix_eval sets it), a signing key,
    the logging nix_bin; ``run(check)`` plays it."""
    folder = str(tmp_path_factory.mktemp('serve-publish'))
    nix = _real_nix()
    subprocess.run(['nix-store', '--generate-binary-cache-key', KEY_NAME,
                    os.path.join(folder, 'secret.key'), os.path.join(folder, 'public.key')],
                   check=True)
    lines = []
    for host in HOSTS:
        payload = os.path.join(folder, '%s-system' % host)
        with open(payload, 'w') as handle:
            # a path no earlier run added: the cache misses it
            handle.write('%s %s\n' % (host, folder))
        system = subprocess.run(['nix-store', '--add', payload], check=True,
                                stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
        lines.append('%s ansible_connection=local nix_out_path=%s\n' % (host, system))
    with open(os.path.join(folder, 'hosts'), 'w') as handle:
        handle.write(''.join(lines))
    with open(os.path.join(folder, 'play.yml'), 'w') as handle:
        handle.write(PLAYBOOK)
    logged = os.path.join(folder, 'nix-logged')
    with open(logged, 'w') as handle:
        handle.write(LOGGED_NIX % {'log': os.path.join(folder, 'nix.log'), 'nix': nix})
    os.chmod(logged, stat.S_IRWXU)

    def run(check):
        with open(os.path.join(folder, 'nix.log'), 'w'):
            pass
        env = ansible_env({'ANSIBLE_LOCAL_TEMP': os.path.join(folder, 'local-tmp')})
        argv = [os.path.join(BIN, 'ansible-playbook'), '-i', 'hosts', '-f', '2', 'play.yml']
        proc = subprocess.run(argv + (['--check'] if check else []), cwd=folder, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stdout
        results = {}
        for host in HOSTS:
            with open(os.path.join(folder, '%s-%s.json' % (host, check))) as handle:
                results[host] = json.load(handle)
        with open(os.path.join(folder, 'nix.log')) as handle:
            calls = [call for call in handle.read().split('--\n') if call.strip()]
        return results, calls
    run.folder = folder
    return run


def _narinfos(folder):
    cache = os.path.join(folder, 'cache')
    return sorted(name for name in os.listdir(cache) if name.endswith('.narinfo')) \
        if os.path.isdir(cache) else []


def _every_call_has_the_tasks_options(calls):
    # a ``nix --version`` asks what the binary can do, with no setting
    working = [call for call in calls if not call.startswith('argv: --version\n')]
    assert working, 'the task\'s nix_bin ran no Nix process: %r' % calls
    for call in working:
        lines = call.splitlines()
        assert 'config: %s = 7' % MARKER_OPTION in lines, call
        assert 'config: substituters =' in lines, call


def test_check_mode_reaches_the_server_then_the_real_publish_signs(play):
    """In one module, in order: the check run copies nothing; the real run
    copies each host's system, signed with the task's key, into the task's
    cache. Each run's server is its own process, made from its context."""
    results, calls = play(check=True)
    for host in HOSTS:
        assert results[host]['copied'] is False and results[host]['missing_paths'] == 1, results
        # one server for both: the systems are each host's nix_out_path
        assert results[host]['batch_hosts'] == len(HOSTS), results
    assert _narinfos(play.folder) == [], 'check mode copied into the cache'
    _every_call_has_the_tasks_options(calls)

    results, calls = play(check=False)
    for host in HOSTS:
        assert results[host]['copied'] is True, results
        assert results[host]['signed_by'] == KEY_NAME, results
    infos = _narinfos(play.folder)
    assert len(infos) == len(HOSTS), infos
    for name in infos:
        with open(os.path.join(play.folder, 'cache', name)) as handle:
            assert 'Sig: %s:' % KEY_NAME in handle.read()
    _every_call_has_the_tasks_options(calls)
