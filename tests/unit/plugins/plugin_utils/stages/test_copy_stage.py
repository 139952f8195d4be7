"""nix_copy_closure's stage for one host (plugin_utils/copy/_copy_stage.py
CopyStage) in each mode, through the fake Host (tests/unit/fake_host.py)
onto a target with a real Nix store of its own (copy_target.py): the real
probe (copy-probe.sh) says what the target lacks; push sends only that with
the controller's real ``nix copy --to ssh-ng://`` (only ssh is faked: it
runs the target's ``nix-daemon --stdio``), and plants the copy's GC root;
nothing is sent to a target that holds the closure, nor in check mode;
substitute mode lets the target take what its own cache has; cache mode
has the target fetch the closure itself (copy-fetch.sh) and fails, naming
the host, for a cache it cannot use or does not trust, and at the fetch's
own time limit; a forged or hostile probe answer copies nothing."""

import subprocess
import sys

import pytest

from tests.collection import collections_path
from tests.unit.fake_host import FakeConnection, FakeHost
from tests.unit.plugins.plugin_utils.stages.copy_target import (
    NIX_DIR, Closure, FakeSsh, StoreTarget, copy_args)
from tests.unit.plugins.plugin_utils.stages.stage_nix import controller_folders
from tests.unit.plugins.plugin_utils.task.batch_place import batch_answer

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _copy, _copy_stage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (  # noqa: E402
    NoAnswer)

DAEMON_URI = 'ssh-ng://127.0.0.1?remote-program=%s/nix-daemon' % NIX_DIR
# the time limit of the target's own fetch from the caches (seconds)
FETCH_LIMIT = 3600


class SshConnection(FakeConnection):
    """The fake's connection with ssh args of its own (``options``)."""

    def __init__(self, address, options):
        super(SshConnection, self).__init__(address)
        self.options = options

    def get_option(self, name):
        if name in self.options:
            return self.options[name]
        return super(SshConnection, self).get_option(name)


def task_host(target, name, ssh):
    """The task's own Host for ``target`` (a FakeHost over its folder),
    its ssh args those of the fake ssh (its known_hosts and key)."""
    connection = SshConnection(target.address, {'ssh_common_args': ssh.common_args()})
    host = FakeHost.of_task(connection, {'inventory_hostname': name}, None)
    host._setup(target.env, True)  # as fake_host does: the fake's own set-up
    return host


@pytest.fixture(scope='module')
def closure(tmp_path_factory):
    return Closure(tmp_path_factory.mktemp('copy-closure') / 'nix')


@pytest.fixture
def ssh(tmp_path, monkeypatch):
    controller_folders(tmp_path, monkeypatch)
    return FakeSsh(tmp_path, monkeypatch)


class Task:
    """nix_copy_closure on web1: its target (``target``), its Host
    (``host``: the calls), ``run(**args)`` its stage's result."""

    def __init__(self, tmp_path, ssh, **target):
        self.ssh = ssh
        self.target = StoreTarget(tmp_path / 'web1', ssh=ssh, **target)
        self.host = task_host(self.target, 'web1', ssh)

    def stage(self, path, check_mode=False, diff=False, **given):
        task_vars = {'inventory_hostname': 'web1', 'ansible_facts': {'nix_out_path': path}}
        args, filled = copy_args(task_vars, **given)

        # a batch of this host alone
        return _copy_stage.CopyStage('web1', args, task_vars, self.host, check_mode=check_mode,
                                     diff=diff, filled=filled,
                                     batch_answer=batch_answer('web1', task_vars, ['web1']))

    def run(self, path, **given):
        return self.stage(path, **given).run()

    def sent(self):
        """What the controller's ssh carried (Nix's sessions to the daemon)."""
        return self.ssh.log()


@pytest.fixture
def web1(tmp_path, ssh):
    task = Task(tmp_path, ssh)
    yield task
    task.host.close()


def test_push_sends_only_what_the_target_lacks_and_roots_the_system(web1, closure):
    web1.target.give(closure.base)
    result = web1.run(closure.top, diff=True)
    assert (result['mode'], result['trust'], result['store_uri']) == ('push', 'trusted', DAEMON_URI)
    assert (result['closure_paths'], result['paths_missing'], result['paths_sent']) == (2, 1, 1)
    assert result['bytes_sent'] == result['bytes_missing'] > 0 and result['changed'] is True
    assert result['diff']['after'] == closure.top + '\n'
    assert web1.target.lacks([closure.top, closure.base]) == []
    # the root was planted by the probe, before the copy: it points at the system
    assert web1.target.gc_root('web1') == closure.top and result['gc_root'].endswith('/web1')
    (probe,) = web1.host.calls
    assert probe.name == 'copy-probe.sh' and sorted(probe.in_data.split()) == sorted(
        [closure.base, closure.top])
    (session,) = web1.sent()
    assert session == '127.0.0.1 %s/nix-daemon --stdio' % NIX_DIR


def test_nothing_is_sent_to_a_target_that_holds_the_closure(web1, closure):
    web1.target.give(closure.top)
    result = web1.run(closure.top)
    assert (result['paths_missing'], result['paths_sent'], result['changed']) == (0, 0, False)
    assert web1.sent() == [] and [c.name for c in web1.host.calls] == ['copy-probe.sh']


def test_check_mode_says_what_it_would_send_and_sends_nothing(web1, closure):
    result = web1.run(closure.top, check_mode=True)
    assert (result['paths_missing'], result['paths_sent'], result['changed']) == (2, 2, True)
    assert web1.sent() == [] and web1.target.lacks([closure.top]) == [closure.top]
    # no GC root either: check mode leaves the target as it was
    assert web1.target.gc_root('web1') is None and result['gc_root'] is None


def test_a_target_that_refuses_unsigned_paths_fails_naming_the_host(tmp_path, ssh, closure):
    task = Task(tmp_path, ssh, trusted=False)
    with pytest.raises(_copy.CopyError) as raised:
        task.run(closure.top)
    assert raised.value.message.startswith(
        'web1: the target refuses unsigned paths (its nix-daemon checks signatures for the '
        'non-trusted user tester)')
    assert task.target.lacks([closure.top]) == [closure.top]


def test_a_target_without_nix_fails_naming_the_host(web1, closure, tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(_copy.CopyError, match='^web1: no nix-store found on the target in %s'
                       % (tmp_path / 'empty')):
        web1.run(closure.top, remote_nix_dir=str(tmp_path / 'empty'))
    assert web1.sent() == []


def test_a_forged_answer_that_nothing_is_missing_copies_nothing(web1, closure):
    # frames under another program's marker: not this probe's answer
    web1.host.then('copy-probe.sh', raw='@@0123456789abcdef nix_dir=%s\n'
                   '@@0123456789abcdef invalid=\n@@0123456789abcdef complete=1\n' % NIX_DIR)
    with pytest.raises(_copy.CopyError, match='^web1: no nix-store found on the target'):
        web1.run(closure.top)
    web1.host.then('copy-probe.sh', hostile=True, values={
        'nix_dir': NIX_DIR, 'uid': '1000', 'user': 'tester', 'invalid': 'all of it',
        'complete': '1'})
    with pytest.raises(_copy.CopyError, match="^web1: the target's list of the paths it lacks "
                                              "is not a list of store paths"):
        web1.run(closure.top)
    assert web1.sent() == [] and web1.target.lacks([closure.top]) == [closure.top]


def test_a_target_short_of_space_gets_nothing(web1, closure):
    web1.host.then('copy-probe.sh', values={
        'nix_dir': NIX_DIR, 'uid': '1000', 'user': 'tester', 'groups': 'tester',
        'trusted_users': 'root tester', 'store_writable': 'no', 'complete': '1',
        'invalid': '%s\n%s' % (closure.base, closure.top),
        'store_df': '/dev/vda1 1000 990 10 99% /nix'})
    with pytest.raises(_copy.CopyError, match='^no space left on /nix on web1: 10.0 KB|'
                                              '^no space left on /nix on web1: 0.0 MB free'):
        web1.run(closure.top)
    assert web1.sent() == []


# ------------------------------------------------------------------ the caches
def binary_cache(folder, paths, key=None):
    """A file:// binary cache in ``folder`` holding the closures of
    ``paths``, signed with ``key`` (a secret key file) when given."""
    uri = 'file://%s' % folder
    subprocess.run(['nix', '--extra-experimental-features', 'nix-command', 'copy', '--to',
                    uri + ('?secret-key=%s' % key if key else '')] + list(paths), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return uri


@pytest.fixture(scope='module')
def cache_key(tmp_path_factory):
    """(secret key file, public key) of a cache the targets may trust."""
    folder = tmp_path_factory.mktemp('cache-key')
    subprocess.run(['nix-store', '--generate-binary-cache-key', 'test-cache-1',
                    str(folder / 'secret'), str(folder / 'public')], check=True)
    return str(folder / 'secret'), (folder / 'public').read_text().strip()


def test_substitute_mode_lets_the_target_take_what_its_cache_has(
        tmp_path, ssh, closure, cache_key):
    secret, public = cache_key
    cache = binary_cache(tmp_path / 'cache', [closure.base], secret)
    task = Task(tmp_path, ssh, config='substituters = %s\ntrusted-public-keys = %s'
                % (cache, public))
    result = task.run(closure.top, copy_mode='substitute')
    assert (result['mode'], result['paths_missing']) == ('substitute', 2)
    # base came from the target's own cache: the controller sent top only
    assert result['paths_sent'] == 1 and result['bytes_sent'] < result['bytes_missing']
    assert task.target.lacks([closure.top, closure.base]) == []


def test_cache_mode_has_the_target_fetch_the_closure_itself(tmp_path, ssh, closure, cache_key):
    secret, public = cache_key
    cache = binary_cache(tmp_path / 'cache', [closure.top], secret)
    task = Task(tmp_path, ssh, config='trusted-public-keys = %s' % public)
    result = task.run(closure.top, copy_mode='cache', caches=[cache])
    assert (result['mode'], result['trust'], result['paths_fetched']) == ('cache', 'cache', 2)
    assert result['paths_sent'] == 0 and task.sent() == []
    assert task.target.lacks([closure.top, closure.base]) == []
    fetch = task.host.ran('copy-fetch.sh')[0]
    # a whole closure downloaded there: an hour, not a probe's limit
    assert (fetch.timeout, fetch.in_data) == (FETCH_LIMIT, None)


def test_a_cache_the_target_cannot_use_or_trust_fails_naming_the_host(tmp_path, ssh, closure,
                                                                      cache_key):
    task = Task(tmp_path, ssh)  # trusts no cache key
    missing = 'file://%s' % (tmp_path / 'no-cache')
    with pytest.raises(_copy.CopyError, match='^web1: fetching %s from %s on the target failed: '
                       % (closure.top, missing)):
        task.run(closure.top, copy_mode='cache', caches=[missing])
    signed = binary_cache(tmp_path / 'cache', [closure.top], cache_key[0])
    with pytest.raises(_copy.CopyError, match='^web1: fetching .* failed \\(the target does not '
                                              'trust the key the cache is signed with'):
        task.run(closure.top, copy_mode='cache', caches=[signed])
    assert task.target.lacks([closure.top]) == [closure.top] and task.sent() == []


def test_a_fetch_that_never_answers_ends_at_its_own_time_limit(web1, closure, tmp_path):
    # an hour, given up here in a tenth of a second
    web1.host.time_scale = 0.1 / FETCH_LIMIT
    web1.host.then('copy-fetch.sh', hang=True)
    with pytest.raises(NoAnswer, match='no answer from the host within'):
        web1.run(closure.top, copy_mode='cache', caches=['file://%s' % tmp_path])
    assert web1.host.timeouts[-1] == FETCH_LIMIT
