# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One nix_channel task on one host: the work behind the action.

The batch's server reads the refs of the whole batch (one ``git
ls-remote``) and moves them (one ``git push``), as the first host foresees
them; the other hosts read their answer. The pieces (refs, pins, git) are _channel.py.

A push cannot be taken back, so the batch only moves refs it knows exactly:
each host's ref, commit and system come from host variables and facts, which
the first host can read for every host. When this task's arguments for the
first host are not those (an explicit per-host template, a play variable),
every host moves its own ref in its own push instead: slower, never wrong.
"""

import dataclasses
import os
import typing

from ansible.errors import AnsibleError

from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars import fact_or_var
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixOptions, options_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.publish import _channel
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.publish._channel import PER_HOST_ARGS
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import unlink_host_args
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (
    BatchWork, serves)

# What a host's request reads from its variables and facts.
HOST_VARS = ('nix_channel_ref', 'nix_flake', 'nix_flake_revision', 'nix_out_path',
             'nix_published_path')
# An explicit value of these (one that is not the host's own variable) makes
# every host push alone: the first host cannot know the others' values.
PUSH_SENSITIVE = ('ref', 'revision', 'path')


class ChannelStage:
    """nix_channel for ``host`` (its validated ``args``, ``task_vars``).

    What it needs of the action comes as arguments: ``check_mode``,
    ``base_dir`` (the playbook's folder: relative repositories and flakes),
    ``template`` (the task's templar's ``template``) and ``batch_answer(work)``,
    the action's one entry point to work done once for the play batch
    (plugin_utils/task/_batch_work.py)."""

    def __init__(self, host, args, task_vars, check_mode, base_dir, template, batch_answer):
        self.host, self.args, self.task_vars = host, args, task_vars
        self.check_mode = check_mode
        self.base_dir = base_dir
        self.batch_answer = batch_answer
        self.repo = _channel.repo_location(args['repo'], base_dir)
        self.own_vars = _templated(task_vars, template)

    def host_entry(self):
        """This host's entry: {'result'} or {'error'}, and 'batch' (batch_hosts,
        pushed_here, and the processes when computed here)."""
        return self._entry_for(self._request(self.host, self.args, self.own_vars))

    # ------------------------------------------------------------ requests
    def _vars_of(self, name):
        if name == self.task_vars.get('inventory_hostname'):
            return self.own_vars
        return self.task_vars['hostvars'][name]

    def _request(self, host, args, hostvars):
        """``ChannelRequest.for_host`` from this task's playbook folder."""
        return ChannelRequest.for_host(host, args, hostvars, self.base_dir)

    def _entry_for(self, request):
        """This host's entry (``request``: its ChannelRequest), from the
        batch's work or its own."""
        if request.error is not None:
            return request.data()
        args, host, task_vars = self.args, self.host, self.task_vars
        batch_args = unlink_host_args(args, self.own_vars, PER_HOST_ARGS)
        alone = args['state'] == 'present' and (
            any(batch_args.get(k) not in (None, '') for k in PUSH_SENSITIVE)
            or self._request(host, batch_args, task_vars['hostvars'][host]) != request)

        def foresee(hosts):
            return dict((name, self._request(name, batch_args, self._vars_of(name)).data())
                        for name in hosts)

        # what the batch's server needs of this task, as data (``serve_channel``)
        context = {'args': dict((k, args.get(k)) for k in ('state', 'force', 'timeout')),
                   'options': options_of(args), 'check_mode': self.check_mode,
                   'repo': self.repo, 'base_dir': self.base_dir}
        shared_args = [options_of(args), self.check_mode, self.repo, args['state'], args['force'],
                       args['require_published'], args.get('git_dir')]
        if alone:
            # its request is its own (an explicit value the first host cannot
            # know for the others): nothing foreseen, no host waited for;
            # the hosts that ask together still share one wave (one git push)
            work = BatchWork('channel', shared_args + ['own requests'], request.data(), SERVE,
                             context=context, expected=[])
        else:
            # a host the batch saw differently (say, it was not yet published
            # when the batch ran) asks its own request, in a wave of its own
            work = BatchWork('channel', shared_args + [
                [batch_args.get(k) for k in sorted(PER_HOST_ARGS)]], request.data(), SERVE,
                context=context, foresee=foresee)
        got = self.batch_answer(work)
        host_entry, here = got.entry, got.here
        if 'batch' not in host_entry:
            # the batch's work failed as a whole: its sentence is the entry's error
            return dict(host_entry)
        host_entry = dict(host_entry)
        shared = host_entry['batch']
        host_entry['batch'] = {'batch_hosts': shared['batch_hosts'], 'pushed_here': here}
        if here:
            host_entry['batch']['processes'] = shared['processes']
        return host_entry


@serves
def serve_channel(context, requests, put):
    """nix_channel's batch work (``SERVE``): the refs of ``requests``
    ({host: request data}) read or moved at once. ``context``: {args: the
    task's state, force and timeout; options (``options_of``); check_mode;
    repo; base_dir}."""
    work = ChannelBatch(context)
    data = work.compute(dict((name, ChannelRequest.from_data(found, work.args['state']))
                             for name, found in requests.items()))
    shared = {'batch_hosts': len(data['hosts']), 'processes': data['processes']}
    for name, found in data['hosts'].items():
        put(name, dict(found, batch=shared))


class ChannelBatch:
    """One wave of a batch's channel work, in the batch's server: made of
    the ``context`` a host's task gave (``serve_channel``)."""

    def __init__(self, context):
        self.args = context['args']
        self.opts = NixOptions.from_params(context['options'])
        self.check_mode = context['check_mode']
        self.repo = context['repo']
        self.base_dir = context['base_dir']

    def compute(self, requests):
        """{'hosts': {host: {'request', 'result'} or {'error'}}, 'processes'}
        (``requests``: {host: ChannelRequest})."""
        entries = {}
        good = {}
        for name, request in requests.items():
            if request.error is not None:
                entries[name] = {'error': request.error}
            else:
                good[name] = request
        git = _channel.Git(timeout=self.args.get('timeout'))
        flakes = _channel.Flakes(self.opts, self.base_dir)
        if not good:
            results = {}
        elif self.args['state'] == 'query':
            results = self._query(git, flakes, good)
        else:
            results = {}
            by_dir = {}
            for name, request in good.items():
                by_dir.setdefault(request.git_dir or '', {})[name] = (
                    request.ref, request.revision)
            for git_dir, moves in sorted(by_dir.items()):
                results.update(_channel.move(git, git_dir or None, self.repo, moves,
                                             check_mode=self.check_mode,
                                             force=self.args['force']))
            for name, request in good.items():
                results[name]['path'] = request.path
        for name, request in good.items():
            entries[name] = {'request': request.data(), 'result': results[name]}
        return {'hosts': entries, 'processes': git.processes + flakes.processes}

    def _query(self, git, flakes, requests):
        pinned = {}
        for flake in sorted(set(r.flake for r in requests.values())):
            try:
                pinned[flake] = flakes.pin(flake)
            except _channel.ChannelError as exc:
                pinned[flake] = {'error': '%s: %s' % (flake, exc)}
        # in the flake's checkout when there is one: its git config may hold
        # the remote (``origin``) and the credentials for it (CI checkouts)
        checkouts = sorted(set(_channel.checkout_of(r.flake) or '' for r in requests.values()))
        cwd = checkouts[-1] or None
        if cwd and not os.path.isdir(cwd):
            cwd = None
        current = git.read(self.repo, [r.ref for r in requests.values()], cwd=cwd)
        results = {}
        for name, request in requests.items():
            pin = pinned[request.flake]
            result = {'ref': request.ref, 'before': current.get(request.ref)}
            if 'error' in pin:
                result['error'] = pin['error']
            else:
                result.update(revision=pin['revision'], flake=pin['flake'], source=pin['source'],
                              would_move=current.get(request.ref) != pin['revision'])
            results[name] = result
        return results


@dataclasses.dataclass(frozen=True)
class ChannelRequest:
    """What nix_channel means for one host, built by ``for_host``; ``data()``
    is the form in the batch file (the entry's ``request``, compared with
    ``==`` to the one foreseen for this host by ``_batch_server``).

    ``ref``: the host's full ref (``refs/heads/...``); ``query``: whether the
    task only reads (state=query); then ``flake``: the flake reference,
    resolved, whose commit the ref is compared with. Else ``revision``: the
    commit the ref moves to; ``path``: the host's system; ``git_dir``: the
    git folder the push runs in (the flake's checkout), or None. ``error``:
    why no request can be formed for the host (its variables), the other
    fields then None."""

    ref: typing.Optional[str] = None
    query: bool = False
    flake: typing.Optional[str] = None
    revision: typing.Optional[str] = None
    path: typing.Optional[str] = None
    git_dir: typing.Optional[str] = None
    error: typing.Optional[str] = None

    @classmethod
    def for_host(cls, host, args, hostvars, base_dir):
        """What the task (``args``) means for ``host`` (``hostvars``: its
        variables and facts; ``base_dir``: where relative flakes start);
        a request with ``error`` when it cannot be formed."""
        try:
            ref = _channel.full_ref(args.get('ref') or hostvars.get('nix_channel_ref')
                                    or _channel.default_ref(host))
            flake = args.get('flake') or hostvars.get('nix_flake')
            if args['state'] == 'query':
                if not flake:
                    raise _channel.ChannelError(
                        'no flake: give flake, or set the host var nix_flake')
                return cls(ref=ref, query=True,
                           flake=_channel.Flakes(None, base_dir).resolve(flake))
            revision = _channel.check_commit(args.get('revision')
                                             or fact_or_var(hostvars, 'nix_flake_revision'))
            path = args.get('path') or fact_or_var(hostvars, 'nix_out_path')
            published = fact_or_var(hostvars, 'nix_published_path')
            if args['require_published'] and (not path or published != path):
                raise _channel.ChannelError(
                    'its system %s is not in the cache%s: a channel moves only to a published '
                    'system (run nixdeploy.fleet.nix_publish first, or require_published=false)'
                    % (path or '(unknown)', ' (published: %s)' % published if published else ''))
            git_dir = args.get('git_dir')
            if not git_dir and flake:
                git_dir = _channel.checkout_of(_channel.Flakes(None, base_dir).resolve(flake))
            return cls(ref=ref, revision=revision, path=path, git_dir=git_dir)
        except (_channel.ChannelError, NixError) as exc:
            return cls(error=u'%s' % exc)
        except AnsibleError as exc:
            # another host's variable that does not template: that host's problem
            return cls(error='its variables: %s' % exc)

    @classmethod
    def from_data(cls, data, state):
        """The request ``data()`` gave, read back (``state``: the task's)."""
        if 'error' in data:
            return cls(error=data['error'])
        if state == 'query':
            return cls(ref=data['ref'], query=True, flake=data['flake'])
        return cls(ref=data['ref'], revision=data['revision'], path=data['path'],
                   git_dir=data['git_dir'])

    def data(self):
        """{error}, or for a query {ref, flake}, else {ref, revision, path,
        git_dir}: the keys and values a run before this type wrote."""
        if self.error is not None:
            return {'error': self.error}
        if self.query:
            return {'ref': self.ref, 'flake': self.flake}
        return {'ref': self.ref, 'revision': self.revision, 'path': self.path,
                'git_dir': self.git_dir}


# the name nix_channel's BatchWork gives its serve function
SERVE = '%s:serve_channel' % __name__


def _templated(task_vars, template):
    # task vars hold variables as written (ansible-core 2.19 templates on
    # access): "tested/{{ inventory_hostname }}" must be this host's value,
    # as hostvars gives it for the other hosts; facts under ansible_facts
    found = dict((name, fact_or_var(task_vars, name)) for name in HOST_VARS)
    return dict((name, template(value)) for name, value in found.items() if value is not None)
