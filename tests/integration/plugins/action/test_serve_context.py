"""What a batch server's work file (``<stem>.serve``: its serve function's
name and its context, plugin_utils/task/_batch_serve.py) holds, read by a
real ``ansible-playbook`` while the run still keeps it: a later task of
the same play copies every ``.serve`` file of the run (the run's local
temp folder goes at its end).

Two hosts publish with ``timeout`` templated from their own variables
(30 and 31) and a cache login and an ``access-tokens`` option that are
secrets. A host's own argument must reach the server that serves it (equal
key, equal context), and no secret may rest in a file the run keeps
(docs/security.md, 7 and 7a). A value YAML reads as a date in
``nix_options`` must fail the task on its own grounds, not on writing the
server's work."""

import glob
import json
import os
import subprocess
import textwrap

import pytest

from tests.collection import BIN, ansible_env

CACHE_PASSWORD = 'CachePassword7a'
ACCESS_TOKEN = 'AccessToken7secret'
# a store path the controller's store does not hold: the publish fails per
# host after its server started, which is all these tests read
SYSTEM = '/nix/store/00000000000000000000000000000000-not-here'

PLAYBOOK = textwrap.dedent('''\
    - name: Publish with per-host timeouts and secrets
      hosts: all
      gather_facts: false
      tasks:
        - name: Publish
          nixdeploy.fleet.nix_publish:
            path: %(system)s
            cache: "https://user:%(password)s@127.0.0.1:9/"
            signing_key: "{{ playbook_dir }}/signing.key"
            nix_options: {access-tokens: "github.com=%(token)s"}
            timeout: "{{ publish_timeout }}"
          ignore_errors: true
        - name: Copy the run's files while the run keeps them
          ansible.builtin.shell: >-
            mkdir -p {{ playbook_dir }}/kept &&
            cp -a {{ lookup('env', 'ANSIBLE_LOCAL_TEMP') }}/. {{ playbook_dir }}/kept/
          delegate_to: localhost
          run_once: true
    ''')


def _play(folder, hosts, playbook):
    """``ansible-playbook`` of ``playbook`` (text) over ``hosts`` (inventory
    text) in ``folder``, which holds a signing key file; its output."""
    with open(os.path.join(folder, 'hosts'), 'w') as handle:
        handle.write(hosts)
    with open(os.path.join(folder, 'signing.key'), 'w') as handle:
        handle.write('not-a-key\n')
    with open(os.path.join(folder, 'play.yml'), 'w') as handle:
        handle.write(playbook)
    env = ansible_env({'ANSIBLE_LOCAL_TEMP': os.path.join(folder, 'local-tmp')})
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', 'hosts', '-f', '2',
                           'play.yml'], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    if proc.returncode != 0:
        # not an AssertionError: the xfails below expect only their own
        pytest.fail('the playbook failed: %s' % proc.stdout)
    return proc.stdout


@pytest.fixture(scope='module')
def kept(tmp_path_factory):
    """The run's files as the task after the publish saw them."""
    folder = str(tmp_path_factory.mktemp('serve-context'))
    _play(folder, 'h1 ansible_connection=local publish_timeout=30\n'
                  'h2 ansible_connection=local publish_timeout=31\n',
          PLAYBOOK % {'system': SYSTEM, 'password': CACHE_PASSWORD, 'token': ACCESS_TOKEN})
    return os.path.join(folder, 'kept')


def _serve_files(kept):
    found = {}
    for path in glob.glob(os.path.join(kept, '**', '*.serve'), recursive=True):
        with open(path) as handle:
            found[path] = json.load(handle)
    return found


def test_the_publish_server_wrote_its_work_file(kept):
    """The ground the two tests below stand on: the run kept a publish
    server's work file, naming serve_publish."""
    works = _serve_files(kept)
    assert [w['serve'].rsplit(':', 1)[1] for w in works.values()] != [], works
    assert all(w['serve'].endswith(':serve_publish') for w in works.values()), works


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    'nix_publish (as nix_build, nix_eval and nix_channel) puts the task\'s timeout in its '
    'context but not in its batch key: two hosts whose templated timeout differs share one '
    'server, and the second host is served with the first one\'s timeout'))
def test_each_hosts_own_timeout_reaches_the_server_that_serves_it(kept):
    works = _serve_files(kept)
    if not works:
        pytest.fail('the run kept no .serve file: nothing to read')
    timeouts = sorted(w['context']['timeout'] for w in works.values())
    assert timeouts == [30, 31], timeouts


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    'nix_publish writes its cache URL with its login and nix_options (access-tokens) in '
    'clear into <stem>.serve: a secret in a file of the run'))
def test_no_secret_rests_in_a_file_of_the_run(kept):
    holding = []
    for root, _dirs, files in os.walk(kept):
        for name in files:
            with open(os.path.join(root, name), 'rb') as handle:
                text = handle.read()
            for secret in (CACHE_PASSWORD, ACCESS_TOKEN):
                if secret.encode() in text:
                    holding.append((os.path.relpath(os.path.join(root, name), kept), secret))
    assert holding == [], holding


DATED = textwrap.dedent('''\
    - name: Publish with a setting YAML reads as a date
      hosts: all
      gather_facts: false
      tasks:
        - name: Publish
          nixdeploy.fleet.nix_publish:
            path: %s
            cache: "https://127.0.0.1:9/"
            signing_key: "{{ playbook_dir }}/signing.key"
            nix_options: {narinfo-cache-negative-ttl: 2026-11-30}
          ignore_errors: true
    ''' % SYSTEM)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    'an unquoted YAML date in nix_options (ansible-core\'s tagged date) is no JSON: writing '
    'the .serve context raises TypeError and the publish fails as an internal error'))
def test_a_date_in_nix_options_is_no_internal_error(tmp_path):
    """The key digests such a value as text; the task fails on its own
    grounds (the signing key here), never on writing its server's work."""
    output = _play(str(tmp_path), 'h1 ansible_connection=local\n', DATED)
    assert 'the signing key file does not hold a Nix secret key' in output, output
    assert 'internal error' not in output, output
