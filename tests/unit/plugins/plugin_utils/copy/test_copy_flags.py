"""A flag for every ``nix copy`` of the copy phase is one row of
``_copy_send.COPY_FLAGS`` (issue 64): a made-up row, reading a setting, reaches
the real ``nix copy`` of each copy path, and Nix takes it. The paths: the
controller's push (push mode, and the cascade's seed), a cascade hop run on
the sender (copy-hop.sh), a target's fetch from a cache (copy-fetch.sh).
The stages run as in their own tests (stages/copy_target.py: targets with
real Nix stores of their own, only ssh faked), with one more thing: every
nix, the controller's and the targets', is a wrapper that writes its argv
and whose store it opened (NIX_REMOTE: a target's own) before it runs the
real nix. A word that would break the target programs' framing is refused."""

import os
import subprocess
import sys

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.stages.copy_target import NIX_DIR
# the cascade stage's own fixtures (pytest finds them by name here): its
# closure and the controller's fake ssh, as the stages' tests set it up
# pylint: disable=unused-import
from tests.unit.plugins.plugin_utils.stages.test_cascade_stage import (  # noqa: F401
    Play, closure, ssh)
# pylint: enable=unused-import
from tests.unit.plugins.plugin_utils.stages.test_copy_stage import Task, binary_cache

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _copy, _copy_send)

# the made-up flag: a setting Nix 2.8 and the current Nix both know, its
# value read from the task's free_space_margin (7: room enough here)
MARGIN = 7
FLAG = ['--option', 'narinfo-cache-negative-ttl', str(MARGIN)]

WRAPPER = r'''#!/bin/sh
# writes this call's store and argv (NUL after each word), then runs nix
call=$(mktemp "%(log)s/call.XXXXXX") || exit 1
printf '%%s\0' "${NIX_REMOTE:-controller}" "$@" >"$call"
exec %(nix)s/nix "$@"
'''


@pytest.fixture(scope='module')
def cache_key(tmp_path_factory):
    """(secret key file, public key) of a cache the target trusts."""
    folder = tmp_path_factory.mktemp('flags-cache-key')
    subprocess.run(['nix-store', '--generate-binary-cache-key', 'flags-cache-1',
                    str(folder / 'secret'), str(folder / 'public')], check=True)
    return str(folder / 'secret'), (folder / 'public').read_text().strip()


@pytest.fixture
def row(monkeypatch):
    """The made-up row in the table, read by every path."""
    monkeypatch.setattr(_copy_send, 'COPY_FLAGS', (_copy_send.CopyFlag(
        'free_space_margin', lambda margin: FLAG[:2] + ['%g' % margin]),))


class NixCalls:
    """A nix folder (``folder``: the controller's nix_bin's and the
    targets' remote_nix_dir) whose nix logs each call; its other tools are
    the real ones."""

    def __init__(self, root):
        self.folder, self.log = root / 'nix-bin', root / 'nix-calls'
        os.makedirs(str(self.folder))
        os.makedirs(str(self.log))
        nix = self.folder / 'nix'
        nix.write_text(WRAPPER % {'log': self.log, 'nix': NIX_DIR})
        nix.chmod(0o755)
        for tool in ('nix-store', 'nix-daemon'):
            os.symlink(os.path.join(NIX_DIR, tool), str(self.folder / tool))

    def args(self):
        """The task's arguments that put this nix on every path."""
        return {'nix_bin': str(self.folder / 'nix'), 'remote_nix_dir': str(self.folder),
                'free_space_margin': MARGIN}

    def copies(self):
        """[(store, argv)] of every ``nix copy`` that ran."""
        calls = []
        for name in sorted(os.listdir(str(self.log))):
            with open(str(self.log / name), 'rb') as handle:
                words = handle.read().decode().split('\0')[:-1]
            if 'copy' in words:
                calls.append((words[0], words[1:]))
        return calls


def holds(argv, words):
    """Whether ``words`` are in ``argv`` together, in order."""
    return any(argv[i:i + len(words)] == words for i in range(len(argv)))


@pytest.fixture
def nix_calls(tmp_path):
    return NixCalls(tmp_path)


@pytest.mark.usefixtures('row')
def test_the_table_is_what_every_copy_shares():
    settings = _copy_send.CopySettings('auto', None, False, MARGIN)
    assert settings.nix_copy_flags() == FLAG
    assert _copy_send.CopySettings('auto', None, False, 1.5).nix_copy_flags()[-1] == '1.5'


def test_a_word_the_target_programs_cannot_take_whole_is_refused(monkeypatch):
    monkeypatch.setattr(_copy_send, 'COPY_FLAGS', (_copy_send.CopyFlag(
        'signing_key', lambda key: ['--option', 'x', key]),))
    for word in ('a\nb', 'a\0b'):
        with pytest.raises(_copy.CopyError,
                           match='^a nix copy flag of signing_key is not one word') as raised:
            _copy_send.CopySettings('auto', word, False, 1.1).nix_copy_flags()
        assert word not in raised.value.message
    with pytest.raises(_copy.CopyError, match='^a nix copy flag is not one word'):
        _copy_send.flag_lines(['--x', 'two\nlines'])


@pytest.mark.usefixtures('row')
def test_the_controllers_push_passes_the_row(nix_calls, tmp_path, ssh, closure):
    task = Task(tmp_path, ssh)
    try:
        result = task.run(closure.top, **nix_calls.args())
    finally:
        task.host.close()
    assert result['paths_sent'] == 2 and task.target.lacks([closure.top]) == []
    ((store, argv),) = nix_calls.copies()
    assert store == 'controller' and '--to' in argv and holds(argv, FLAG), argv


@pytest.mark.usefixtures('row')
def test_a_targets_fetch_from_a_cache_passes_the_row(nix_calls, tmp_path, ssh, closure,
                                                     cache_key):
    secret, public = cache_key
    cache = binary_cache(tmp_path / 'cache', [closure.top], secret)
    task = Task(tmp_path, ssh, config='trusted-public-keys = %s' % public)
    try:
        result = task.run(closure.top, copy_mode='cache', caches=[cache], **nix_calls.args())
    finally:
        task.host.close()
    assert result['paths_fetched'] == 2 and task.target.lacks([closure.top]) == []
    ((store, argv),) = nix_calls.copies()
    assert store == task.target.store and holds(argv, ['--from', cache] + FLAG), argv


@pytest.mark.usefixtures('row')
def test_the_cascades_seed_push_and_its_hop_pass_the_row(nix_calls, tmp_path, ssh, closure):
    play = Play(tmp_path, ssh, closure.top, hosts=('h1', 'h2'), given=nix_calls.args())
    try:
        results = [play.entry('h1'), play.entry('h2')]
    finally:
        play.close()
    # the controller seeds one host, which sends on to the other
    froms = dict((h, r['copied_from']) for h, r in zip(('h1', 'h2'), results))
    (seed,) = [h for h, sender in froms.items() if sender == 'controller']
    assert sorted(froms.values()) == sorted(['controller', seed]), results
    copies = dict(nix_calls.copies())
    sender = play.targets[seed]
    # one push from the controller, one hop from the seed's own nix
    assert sorted(copies) == sorted(['controller', sender.store]), copies
    for argv in copies.values():
        assert '--to' in argv and holds(argv, FLAG), argv
    for host in ('h1', 'h2'):
        assert play.targets[host].lacks([closure.top, closure.base]) == []
