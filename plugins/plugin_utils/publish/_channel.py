# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tested channels: one git ref per host naming the commit it may run.

A host that updates itself follows its own ref (``nixos-tested-<host>``) in a
git repository. Publishing moves the ref to the commit whose system was built
and put in the cache, and only then. This file holds the pieces:

- pinning a flake to its commit (``nix flake metadata --json
  --no-update-lock-file``): a dirty tree or a lock file the commit does not
  hold is refused, since a host evaluating the commit must get the very same
  system the controller built;
- the git side: ONE ``git ls-remote`` for the refs of a play batch and ONE
  ``git push --porcelain`` of every ref that moves (each ref updates on its
  own; git reports each), argv lists only, no prompts;
- pure helpers (ref names, git's outputs) that the unit tests cover.
"""

import os
import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import flake_ref
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError, NixCommand, run
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_output import flake_metadata

try:
    from urllib.parse import unquote, urlsplit
except ImportError:  # pragma: no cover - Python 2 controllers are not supported
    from urllib import unquote
    from urlparse import urlsplit


# Task arguments that may differ per host, and their host var / fact counterparts.
PER_HOST_ARGS = {'ref': 'nix_channel_ref', 'flake': 'nix_flake',
                 'revision': 'nix_flake_revision', 'path': 'nix_out_path'}

DEFAULT_REF = 'nixos-tested-%s'
HEADS = 'refs/heads/'
# a full commit id (SHA-1, or SHA-256 repositories)
_COMMIT = re.compile(r'^(?:[0-9a-f]{40}|[0-9a-f]{64})\Z')
_BAD_REF_CHARS = re.compile(r'[\x00-\x20\x7f~^:?*\[\\]')
# git's own words for a ref that holds something our commit does not contain
_NOT_FAST_FORWARD = ('non-fast-forward', 'fetch first')


class ChannelError(NixdeployError):
    """A channel cannot be read or moved; the text says why."""


# ------------------------------------------------------------------ names
def default_ref(host):
    return DEFAULT_REF % host


def full_ref(name):
    """``refs/heads/<name>`` for a branch name, a full ref as it is; checked."""
    text = u'%s' % (name,)
    ref = text if text.startswith('refs/') else HEADS + text
    problem = ref_problem(ref)
    last = ref.rpartition('/')[2]
    if not problem and (last.startswith('-') or last == '@'):
        problem = 'a branch name cannot start with "-" or be "@"'
    if problem:
        raise ChannelError('%r is not a usable git ref: %s' % (text, problem))
    return ref


def ref_problem(ref):
    """Why git would refuse ``ref`` (git check-ref-format), or None."""
    if not ref or ref.startswith('-'):
        return 'empty or starts with "-"'
    if _BAD_REF_CHARS.search(ref):
        return 'holds a space, a control character or one of ~^:?*[\\'
    if '..' in ref or '@{' in ref or ref == '@':
        return 'holds "..", "@{" or is "@"'
    if ref.endswith(('/', '.')) or '//' in ref:
        return 'ends with "/" or "." or holds "//"'
    for part in ref.split('/'):
        if part.startswith('.') or part.endswith('.lock'):
            return 'a component starts with "." or ends with ".lock"'
    return None


def check_commit(revision):
    text = u'%s' % (revision or '')
    if not _COMMIT.match(text):
        raise ChannelError('%r is not a full commit id (40 or 64 lowercase hex digits)' % text)
    return text


def is_local_repo(repo):
    """Whether git reads ``repo`` as a path (not a URL or ``host:path``)."""
    if '://' in repo:
        return repo.startswith('file://')
    # git's rule: a colon before the first slash makes it scp-like host:path
    head = repo.split('/', 1)[0]
    return ':' not in head


def repo_location(repo, base_dir=None):
    """The repository as git gets it: local paths made absolute (git runs in
    the checkout), URLs untouched, a bare word that is no path here kept as
    the name of a remote of the checkout (``origin``). Never anything that
    looks like an option."""
    text = u'%s' % (repo or '')
    if not text or text.startswith('-'):
        raise ChannelError('repo %r is empty or starts with "-"' % text)
    if is_local_repo(text) and not text.startswith('file://'):
        path = os.path.expanduser(text)
        if base_dir and not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        if '/' not in text and not os.path.exists(path):
            return text
        return os.path.abspath(path)
    return text


def checkout_of(flake):
    """The local git checkout a ``git+file://`` flake reference reads, or None."""
    text = u'%s' % (flake or '')
    if not text.startswith('git+file://'):
        return None
    return unquote(urlsplit(text[len('git+'):].split('#', 1)[0]).path) or None


# ------------------------------------------------------------------ outputs
def parse_ls_remote(text, wanted):
    """``git ls-remote`` output -> {ref: commit} for the exact refs ``wanted``
    (git matches patterns by their tail, so filter here)."""
    wanted = set(wanted)
    found = {}
    for line in text.splitlines():
        commit, _tab, ref = line.partition('\t')
        if ref in wanted:
            found[ref] = commit.strip()
    return found


def parse_push(text):
    """``git push --porcelain`` stdout -> {dst ref: {flag, summary}}.

    Flags: ' ' fast-forward, '+' forced, '*' new, '=' up to date, '!' rejected.
    """
    found = {}
    for line in text.splitlines():
        parts = line.split('\t')
        if len(parts) < 3 or len(parts[0]) != 1:
            continue
        _src, _colon, dst = parts[1].rpartition(':')
        found[dst] = {'flag': parts[0], 'summary': parts[2].strip()}
    return found


def not_fast_forward(summary):
    return any(word in (summary or '') for word in _NOT_FAST_FORWARD)


def plan(requests, current):
    """What to do with each host's ref.

    ``requests``: {host: (ref, commit)}; ``current``: {ref: commit} as the
    repository holds them. Returns {host: 'current' | 'move' | error text}.
    Two hosts sharing one ref must agree on its commit.
    """
    by_ref = {}
    for host, (ref, commit) in requests.items():
        by_ref.setdefault(ref, set()).add(commit)
    out = {}
    for host, (ref, commit) in requests.items():
        if len(by_ref[ref]) > 1:
            others = sorted(h for h, (r, _c) in requests.items() if r == ref and h != host)
            out[host] = ('%s is also the ref of %s, for another commit: refusing to move it '
                         'either way' % (ref, ', '.join(others)))
        elif current.get(ref) == commit:
            out[host] = 'current'
        else:
            out[host] = 'move'
    return out


def pin(metadata):
    """(revision, pinned flake ref) from ``nix flake metadata --json`` (parsed;
    read by ``_nix_output.flake_metadata`` for every Nix version)."""
    facts = flake_metadata(metadata)
    revision = facts['revision']
    if not revision:
        if facts['dirty']:
            raise ChannelError('the git tree has uncommitted changes: a channel points at a '
                               'commit, so commit (or stash) them first')
        raise ChannelError('not a git flake (%s): a channel points at a commit, use a git '
                           'checkout or a git+... / github: reference'
                           % (facts['type'] or 'unknown type'))
    url = facts['url'] or ''
    if revision not in url:
        raise ChannelError('nix flake metadata gave no locked URL holding revision %s' % revision)
    return check_commit(revision), url


# ------------------------------------------------------------------ running
class Flakes:
    """Pins flakes to their commits (one ``nix flake metadata`` per flake)."""

    def __init__(self, opts, base_dir=None):
        self.runner = NixCommand(opts)
        self.base_dir = base_dir

    @property
    def processes(self):
        return self.runner.processes

    def resolve(self, flake):
        return flake_ref(flake, self.base_dir)

    def pin(self, flake):
        """{'revision', 'flake' (pinned), 'source' (as given, resolved)}."""
        source = self.resolve(flake)
        try:
            # --no-update-lock-file: a lock file the commit lacks means the
            # controller would build something a host evaluating the commit
            # does not get
            metadata = self.runner.json('flake metadata',
                                        ['--json', '--no-update-lock-file', source],
                                        'reading the commit of %s' % source)
        except NixError as exc:
            raise ChannelError(u'%s' % exc)
        revision, pinned = pin(metadata)
        return {'revision': revision, 'flake': pinned, 'source': source}


class Git:
    """Runs git (argv lists, never a prompt); counts its processes."""

    def __init__(self, git_bin='git', timeout=None):
        self.git_bin = git_bin or 'git'
        self.timeout = timeout
        self.processes = 0

    def _run(self, args, cwd=None):
        argv = [self.git_bin] + list(args)
        self.processes += 1
        # no terminal prompt for credentials (CI), stable English for parsing
        env = {'GIT_TERMINAL_PROMPT': '0', 'LC_ALL': 'C', 'GIT_ASKPASS': 'true'}
        return run(argv, env=env, timeout=self.timeout, cwd=cwd)

    def read(self, repo, refs, cwd=None):
        """{ref: commit} of ``refs`` in ``repo`` (absent refs are left out)."""
        if not refs:
            return {}
        rc, out, err = self._run(['ls-remote', '--', repo] + sorted(set(refs)), cwd=cwd)
        if rc != 0:
            raise ChannelError('git ls-remote %s failed: %s' % (repo, _git_message(err, out)))
        return parse_ls_remote(out, refs)

    def push(self, git_dir, repo, moves, force=False, dry_run=False):
        """Push ``moves`` ({ref: (old commit or None, new commit)}) in ONE push.

        Each ref updates on its own (no --atomic): one refused ref does not
        hold the others back. With ``force`` a ref may go to a commit that
        does not contain its current one, but only from the commit we read
        (--force-with-lease), so a concurrent publish is never overwritten.
        Returns ({ref: {flag, summary}}, git's message).
        """
        if not moves:
            return {}, ''
        args = ['push', '--porcelain', '--no-verify']
        if dry_run:
            args.append('--dry-run')
        if force:
            for ref, (old, _new) in sorted(moves.items()):
                args.append('--force-with-lease=%s:%s' % (ref, old or ''))
        args += ['--', repo] + ['%s:%s' % (new, ref) for ref, (_old, new) in sorted(moves.items())]
        rc, out, err = self._run(args, cwd=git_dir)
        results = parse_push(out)
        message = _git_message(err, out)
        if rc != 0 and not results:
            raise ChannelError('git push to %s failed: %s' % (repo, message))
        return results, message

    def contains(self, git_dir, commit, newer):
        """Whether ``newer`` contains ``commit`` (None: git cannot tell here)."""
        rc, _out, _err = self._run(['merge-base', '--is-ancestor', commit, newer], cwd=git_dir)
        return {0: True, 1: False}.get(rc)


def _git_message(err, out=''):
    lines = [ln for ln in (err or '').splitlines()
             if ln.strip() and not ln.startswith('hint:')]
    lines += [ln for ln in (out or '').splitlines()
              if ln.startswith('!') or 'error' in ln.lower()]
    return '\n'.join(lines[-20:]) or 'no output'


# ------------------------------------------------------------------ one batch
def move(git, git_dir, repo, requests, check_mode=False, force=False):
    """Move each host's ref; ``requests``: {host: (ref, commit)}.

    Returns {host: result}, each with ``ref``, ``revision``, ``before``,
    ``status`` (current, moved, new, ahead, would move, refused) and, when
    the ref cannot go there, ``error``.
    """
    refs = sorted(set(ref for ref, _c in requests.values()))
    current = git.read(repo, refs, cwd=git_dir)
    decided = plan(requests, current)
    results = {}
    moves = {}
    for host, (ref, commit) in requests.items():
        result = {'ref': ref, 'revision': commit, 'before': current.get(ref)}
        results[host] = result
        what = decided[host]
        if what == 'current':
            result['status'] = 'current'
        elif what == 'move':
            moves[ref] = (current.get(ref), commit)
        else:
            result.update(status='refused', error=what)
    if not moves:
        return results
    if not git_dir or not os.path.isdir(git_dir):
        for host, result in results.items():
            if result['ref'] in moves:
                result.update(status='refused', error=(
                    'no local git checkout holding %s to push from (git_dir %r)'
                    % (result['revision'], git_dir)))
        return results
    pushed, message = git.push(git_dir, repo, moves, force=force, dry_run=check_mode)
    for host, result in results.items():
        ref = result['ref']
        if ref not in moves:
            continue
        outcome = pushed.get(ref)
        if outcome is None:
            result.update(status='refused', error='git push said nothing about %s: %s'
                          % (ref, message))
        elif outcome['flag'] != '!':
            if check_mode:
                result['status'] = 'would move'
            else:
                result['status'] = 'new' if result['before'] is None else 'moved'
        elif (not_fast_forward(outcome['summary']) and result['before']
              and git.contains(git_dir, result['revision'], result['before'])):
            # the ref already holds a newer commit (a later publish finished
            # first): moving back would undo it
            result['status'] = 'ahead'
        else:
            result.update(status='refused', error='git refused to move %s to %s: %s (%s)' % (
                ref, result['revision'], outcome['summary'], message))
    return results
