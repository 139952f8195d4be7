"""What a batch server's work (its serve function's name and its context,
plugin_utils/task/_batch_serve.py) leaves in the run's files, read by a
real ``ansible-playbook`` while the run still keeps them: a later task of
the same play copies the run's local temp folder (it goes at the run's
end).

Two hosts publish with ``timeout`` and an ``access-tokens`` option
templated from their own variables (30 and 31, two tokens) and a cache
login, all secrets but the timeouts. A host's own argument must reach the
work that serves it (equal key, equal context: each has a work of its
own, served by the run's one process), and no secret may rest in a file
the run keeps
(docs/security.md, 7 and 7a). A value YAML reads as a date in
``nix_options`` must fail the task on its own grounds, not on writing the
server's work."""

import glob
import os
import subprocess
import textwrap

import pytest

from tests.collection import BIN, ansible_env
from tests.secrets_at_rest import files_holding

CACHE_PASSWORD = 'CachePassword7a'
# each host's own: two contexts, two keys, one serving process
ACCESS_TOKENS = {'h1': 'AccessToken7secret', 'h2': 'AccessToken7other'}
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
            nix_options: {access-tokens: "github.com={{ access_token }}"}
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
        # a failure of its own, not an assertion of the tests below
        pytest.fail('the playbook failed: %s' % proc.stdout)
    return proc.stdout


@pytest.fixture(scope='module')
def kept(tmp_path_factory):
    """The run's files as the task after the publish saw them."""
    folder = str(tmp_path_factory.mktemp('serve-context'))
    _play(folder, 'h1 ansible_connection=local publish_timeout=30 access_token=%(h1)s\n'
                  'h2 ansible_connection=local publish_timeout=31 access_token=%(h2)s\n'
          % ACCESS_TOKENS, PLAYBOOK % {'system': SYSTEM, 'password': CACHE_PASSWORD})
    return os.path.join(folder, 'kept')


def _publish_servers(kept):
    """The publish servers the run started: one lock file each."""
    return sorted(os.path.basename(path) for path in
                  glob.glob(os.path.join(kept, '**', 'nixdeploy-batch', 'publish-*.lock'),
                            recursive=True))


def test_each_hosts_own_timeout_has_a_server_of_its_own(kept):
    """h1's timeout is 30, h2's 31: the context each is served with is its
    own, so they do not share a server."""
    assert len(_publish_servers(kept)) == 2, _publish_servers(kept)


def test_the_run_has_one_serving_process(kept):
    """The two publish works (and the run's other batch works) are served
    by one process: one lock held while a serving process runs, one log,
    one socket."""
    assert _publish_servers(kept)
    names = [os.path.basename(path) for path in
             glob.glob(os.path.join(kept, '**', 'nixdeploy-batch', '*'), recursive=True)]
    assert sorted(n for n in names if n.endswith(('.running', '.log'))) == [
        'run-server.log', 'run-server.running'], names


def test_no_secret_rests_in_a_file_of_the_run(kept):
    assert _publish_servers(kept), 'the run kept no publish server\'s files: nothing to read'
    assert files_holding(kept, [CACHE_PASSWORD] + list(ACCESS_TOKENS.values())) == []


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


def test_a_date_in_nix_options_is_no_internal_error(tmp_path):
    """The key digests such a value as text and the context reaches the
    server as it is: the task fails on its own grounds (the signing key
    here), never on handing its server the work."""
    output = _play(str(tmp_path), 'h1 ansible_connection=local\n', DATED)
    assert 'the signing key file does not hold a Nix secret key' in output, output
    assert 'internal error' not in output, output
