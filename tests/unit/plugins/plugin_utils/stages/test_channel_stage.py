"""nix_channel's stage (plugin_utils/publish/_channel_stage.py ChannelStage)
with real git (a throwaway checkout and bare channel repository), the real
batch server (plugin_utils/task/_batch_server.py) and, for the query, the
controller's real Nix: the batch's server moves the refs in one push
and the others read their answer; a host whose system is not published, or
whose ref git cannot take, fails alone; a per-host ref moves in a wave of
its own;
check mode moves nothing; the query pins the flake's commit."""

import json
import os
import sys

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.publish.test_publish import commit, git
from tests.unit.plugins.plugin_utils.stages.stage_nix import NIX_OPTIONS, controller_folders
from tests.unit.plugins.plugin_utils.task.batch_place import ServedBy, batch_answer

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.publish import (  # noqa: E402
    _channel, _channel_stage)

HOSTS = ('h1', 'h2', 'h3')
OUT = '/nix/store/%s-system-%%s' % ('a' * 32)


class Play:
    """A play batch of ``HOSTS`` whose facts say what each deploys; each
    host's task is a ChannelStage with this action's ``batch_answer``: the
    batch's server over the real batch files (``computed``: the hosts whose
    server served a wave)."""

    def __init__(self, tmp_path, work, bare):
        self.tmp, self.work, self.bare = tmp_path, work, bare
        self.hostvars = dict((h, {'inventory_hostname': h, 'ansible_facts': {}}) for h in HOSTS)
        self.served = ServedBy(tmp_path / 'served.log')

    def deploys(self, host, revision, published=True):
        facts = self.hostvars[host]['ansible_facts']
        facts.update(nix_flake_revision=revision, nix_out_path=OUT % host)
        if published:
            facts['nix_published_path'] = OUT % host

    def entry(self, host, check_mode=False, **changes):
        args = dict(_nix.options_of({}), repo=self.bare, ref=None, state='present', flake=None,
                    revision=None, path=None, require_published=True, git_dir=self.work,
                    force=False, timeout=60, nix_options=dict(NIX_OPTIONS))
        args.update(changes)
        task_vars = dict(self.hostvars[host], hostvars=self.hostvars)

        return _channel_stage.ChannelStage(
            host, args, task_vars, check_mode, str(self.tmp), lambda v: v,
            batch_answer(host, task_vars, HOSTS, self.served.hook(host))).host_entry()

    @property
    def computed(self):
        return self.served.hosts()

    def refs(self):
        return _channel.Git().read(self.bare, ['refs/heads/nixos-tested-%s' % h for h in HOSTS])


@pytest.fixture
def play(tmp_path, monkeypatch):
    controller_folders(tmp_path, monkeypatch)
    work, bare = str(tmp_path / 'work'), str(tmp_path / 'channels.git')
    os.makedirs(work)
    git(work, 'init', '-q')
    git(str(tmp_path), 'init', '-q', '--bare', bare)
    return Play(tmp_path, work, bare)


def test_the_first_host_moves_the_batchs_refs_in_one_push_and_the_others_read(play):
    first = commit(play.work, 'a')
    for host in HOSTS:
        play.deploys(host, first)
    h1 = play.entry('h1')
    assert h1['batch'] == {'batch_hosts': 3, 'pushed_here': True, 'processes': 2}
    assert h1['result']['status'] == 'new' and h1['result']['revision'] == first
    assert h1['result']['path'] == OUT % 'h1'
    h2 = play.entry('h2')
    assert h2['batch'] == {'batch_hosts': 3, 'pushed_here': False}
    assert h2['result']['status'] == 'new' and play.computed == ['h1']
    assert play.refs() == dict(('refs/heads/nixos-tested-%s' % h, first) for h in HOSTS)


def test_an_unpublished_system_or_a_bad_ref_fails_its_host_alone(play):
    first = commit(play.work, 'a')
    play.deploys('h1', first)
    play.deploys('h2', first, published=False)
    play.deploys('h3', first)
    play.hostvars['h3']['nix_channel_ref'] = 'bad ref'
    assert play.entry('h1')['result']['status'] == 'new'
    h2, h3 = play.entry('h2'), play.entry('h3')
    assert 'is not in the cache' in h2['error'] and 'result' not in h2
    assert "'bad ref' is not a usable git ref" in h3['error']
    assert play.refs() == {'refs/heads/nixos-tested-h1': first}


def test_a_ref_given_for_one_host_moves_on_its_own(play):
    """An explicit ref (one the first host cannot know for the others):
    the host's own request, served by the batch's server in a wave of its
    own (not in the host's worker), foreseeing and waiting for nobody; a
    second host's explicit ref is its own request too, its own wave."""
    first = commit(play.work, 'a')
    for host in HOSTS:
        play.deploys(host, first)
    mine = play.entry('h2', ref='canary')
    assert mine['batch'] == {'batch_hosts': 1, 'pushed_here': True, 'processes': 2}
    assert mine['result']['ref'] == 'refs/heads/canary' and play.computed == ['h2']
    assert _channel.Git().read(play.bare, ['refs/heads/canary']) == {'refs/heads/canary': first}
    other = play.entry('h3', ref='beta')
    assert other['batch'] == {'batch_hosts': 1, 'pushed_here': True, 'processes': 2}
    # a wave of its own (served by h2's process if it still runs, or by its own)
    assert other['result']['ref'] == 'refs/heads/beta' and len(play.computed) == 2
    assert _channel.Git().read(play.bare, ['refs/heads/canary', 'refs/heads/beta']) == {
        'refs/heads/canary': first, 'refs/heads/beta': first}


def test_check_mode_says_what_would_move_and_moves_nothing(play):
    first, second = commit(play.work, 'a'), commit(play.work, 'b')
    for host in HOSTS:
        play.deploys(host, first)
    play.entry('h1')
    play.deploys('h1', second)
    h1 = play.entry('h1', check_mode=True)
    assert (h1['result']['status'], h1['result']['before']) == ('would move', first)
    assert play.refs()['refs/heads/nixos-tested-h1'] == first


def a_flake(play):
    with open(os.path.join(play.work, 'flake.nix'), 'w') as handle:
        handle.write('{ outputs = { self }: { }; }\n')
    git(play.work, 'add', 'flake.nix')
    git(play.work, 'commit', '-q', '-m', 'flake')
    return git(play.work, 'rev-parse', 'HEAD')


def test_the_query_pins_the_flakes_commit_for_the_batch(play):
    head = a_flake(play)
    entry = play.entry('h1', state='query', flake='git+file://%s' % play.work)
    result = entry['result']
    assert result['revision'] == head and result['would_move'] is True, entry
    assert result['before'] is None and result['ref'] == 'refs/heads/nixos-tested-h1'
    assert result['flake'].endswith('rev=%s' % head)
    other = play.entry('h2', state='query', flake='git+file://%s' % play.work)
    assert other['result']['revision'] == head and play.computed == ['h1']


def test_a_dirty_tree_is_not_pinned(play):
    a_flake(play)
    with open(os.path.join(play.work, 'flake.nix'), 'a') as handle:
        handle.write('# changed\n')
    dirty = play.entry('h1', state='query', flake='git+file://%s' % play.work)
    assert 'error' in dirty['result'] and 'revision' not in dirty['result'], json.dumps(dirty)
