# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sending a closure to a target: the settings every ``nix copy`` of the copy
phase takes (``CopySettings``, ``COPY_FLAGS``), the closure's listing and
signature, the controller's push (``nix copy --to ssh-ng://``), the target's
own fetch from binary caches (target/copy-fetch.sh) and a cascade hop run ON
a host that holds the closure, to the next host (target/copy-hop.sh).

What the target lacks and how it trusts the copy are ``_copy.py``'s.
"""

import time
from collections import namedtuple

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy._copy import (
    CopyError, CopyTimeout, plan_trust)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._peer_ssh import (
    TimedOut, run_no_tty)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import remote_program
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _netrc, _nix, _nix_stderr

# Seconds one ``nix copy`` of a closure to one host may take (the
# controller's push, a cascade hop from a peer): as the target's own fetch
# from the caches (_copy_stage.FETCH_TIMEOUT), one whole closure over one
# link: a few GB take minutes on a LAN and half an hour at 10 Mbit/s. Past
# it the copy is stuck, not slow (the host's nix-daemon waits on a lock, the
# link stalls with ssh's keepalives still answered): it is stopped with
# every process it started (its ssh too).
COPY_TIMEOUT = 3600
# Seconds a store may take to list closures (``nix path-info -r`` of one
# system, or of the whole batch's, in the controller's store or a cache's)
# or to sign one: seconds for a thousand systems in the controller's own
# store; ten minutes is a store that does not answer (its database locked by
# another process, a cache that stalls).
CLOSURE_TIMEOUT = 600


# ------------------------------------------------------------------ settings
class CopyFlag(namedtuple('CopyFlag', 'setting words')):
    """One row of COPY_FLAGS: the ``CopySettings`` field it reads
    (``setting``) and ``words(value)``, the ``nix copy`` words it makes of
    that field's value ([] for none)."""

    __slots__ = ()


# The words every `nix copy` of the copy phase passes, whichever path runs it:
# the controller's push (direct, substitute, the cascade's seed and fallback),
# a cascade hop on a sender (copy-hop.sh), a target's fetch from the caches
# (copy-fetch.sh). A flag for every copy is one row here (and, when a task
# option sets it, a CopySettings field): each path takes the words whole.
# None so far: what differs today is not shared. Trust (--no-check-sigs) is
# each receiver's plan, compression its store URI's, substitution the
# substitute mode's push alone, and each nix names its experimental features.
COPY_FLAGS = ()


class CopySettings(namedtuple('CopySettings',
                              'check_sigs signing_key compress free_space_margin')):
    """The task's copy settings, read once from its arguments (``of``) and
    handed whole to every copy path: the direct push (``_copy_stage``) and
    the cascade (``_peer.CascadeDriver``: its pushes and hops). A new setting
    is a field here and a use where it acts; a flag for every ``nix copy``
    is a row of COPY_FLAGS (``nix_copy_flags``)."""

    __slots__ = ()

    @classmethod
    def of(cls, args):
        return cls(args['check_sigs'], args['signing_key'], bool(args['compress']),
                   args['free_space_margin'])

    def nix_copy_flags(self):
        """The words of COPY_FLAGS' rows for these settings, in row order: what
        every ``nix copy`` of the copy phase passes. A target program gets
        them one a line (``flag_lines``), so a word that holds a line end (or
        a NUL, which sh cannot hold) is refused (CopyError)."""
        return [_one_word(word, row.setting) for row in COPY_FLAGS
                for word in row.words(getattr(self, row.setting))]

    def trust(self, facts, target):
        """(no_check_sigs, via_sudo, how) of ``plan_trust`` for ``target``."""
        return plan_trust(facts, self.check_sigs, self.signing_key, target.become,
                          target.become_method, target.become_user)


def _one_word(word, setting=None):
    """``word`` when a target program can take it as one line; CopyError
    else (naming the row's ``setting``, never the word: it may be a secret)."""
    if not isinstance(word, str) or '\n' in word or '\0' in word:
        raise CopyError('a nix copy flag%s is not one word of text (a line end, a NUL or not '
                        'a string)' % (' of %s' % setting if setting else ''))
    return word


def store_address(target, nix_dir, via_sudo, compress, become_user=None):
    """The store URI ``nix copy`` reaches ``target`` at: its nix-daemon in
    ``nix_dir``, through sudo when the trust plan says so (as
    ``become_user``, by default the target's own)."""
    if become_user is None:
        become_user = target.become_user
    return target.store_uri(
        remote_program=remote_program(nix_dir, via_sudo, become_user),
        compress=compress)


# ------------------------------------------------------------------ closure
def closure(opts, path, store=None, timeout=None):
    """[{'path', 'narSize'}] of ``path``'s closure in ``store`` (default:
    local). A cache's login goes to Nix in a private netrc, never in argv
    (plugin_utils/nix/_netrc.py); CopyError for an address that cannot.
    ``timeout``: seconds Nix may take (default CLOSURE_TIMEOUT), a NixError
    past it."""
    args = ['-r']
    cache = _split([store])[0] if store else None
    if cache:
        args += ['--store', cache.uri]
    with _netrc.nix_options(opts, [cache] if cache else []) as cache_opts:
        infos = _nix.NixCommand(
            cache_opts, CLOSURE_TIMEOUT if timeout is None else timeout).path_infos(
            [path], args,
            'cannot read the closure of %s%s' % (path, ' from ' + cache.uri if cache else ''))
    return [{'path': p, 'narSize': info['narSize']} for p, info in sorted(infos.items()) if info]


def _split(addresses):
    """``_netrc.split`` of each address; its refusal as a CopyError."""
    try:
        return [_netrc.split(a) for a in addresses]
    except _netrc.CacheAddressError as exc:
        raise CopyError(u'%s' % exc)


def cache_uris(caches):
    """The caches as Nix and every message get them: without their logins."""
    return [cache.uri for cache in _split(caches)]


def batch_infos(opts, paths, timeout=None):
    """{path: {narSize, references}} of the closures of ``paths`` in the local
    store, in one ``nix path-info -r`` where all are valid. A path Nix says
    is not valid (a host whose build failed) is left out and the rest asked
    again (each time fewer: at most one ask a path); {} when Nix fails
    otherwise, or all asks took ``timeout`` seconds (default CLOSURE_TIMEOUT)
    between them: each host then asks for its own closure."""
    paths = list(paths)
    deadline = time.monotonic() + (CLOSURE_TIMEOUT if timeout is None else timeout)
    while paths:
        left = deadline - time.monotonic()
        if left <= 0:
            return {}
        runner = _nix.NixCommand(opts, left)
        try:
            infos = runner.path_infos(paths, ['-r'], 'reading the closures of the batch')
        except _nix.NixError as exc:
            bad = _nix_stderr.not_valid(exc.stderr) & set(paths)
            if not bad:
                return {}
            paths = [p for p in paths if p not in bad]
            continue
        return dict((p, {'narSize': i['narSize'], 'references': i.get('references') or []})
                    for p, i in infos.items() if i)
    return {}


def sign(opts, path, key_file, timeout=None):
    """Sign ``path``'s closure in the local store with ``key_file``; at most
    ``timeout`` seconds (default CLOSURE_TIMEOUT: a local walk of the
    closure as a listing is), a NixError past it."""
    _nix.NixCommand(opts, CLOSURE_TIMEOUT if timeout is None else timeout).check(
        'store sign', ['-r', '-k', key_file, path], 'cannot sign the closure of %s' % path)


def push(opts, path, uri, env, flags, no_check_sigs=False, substitute=False, timeout=None):
    """``nix copy --to uri flags path`` (``flags``: ``nix_copy_flags``);
    returns the store paths Nix said it sent, or None when its output did
    not say (e.g. ``--quiet`` in nix_args). ``timeout``: seconds it may take
    (default COPY_TIMEOUT); past it Nix and its ssh are stopped, their whole
    process group, and ``CopyTimeout`` is raised."""
    args = ['--to', uri] + list(flags)
    if no_check_sigs:
        args.append('--no-check-sigs')
    if substitute:
        # Before Nix 2.20 (NixOS/nix#9591, fixed by #9600) ssh-ng stores ignore
        # --substitute-on-destination and ask the target to substitute only when
        # builders-use-substitutes is set; pass both so every version substitutes.
        args += ['--substitute-on-destination', '--option', 'builders-use-substitutes', 'true']
    timeout = COPY_TIMEOUT if timeout is None else timeout
    # as NixCommand.run, in a process group of its own: a timeout must stop
    # the ssh Nix started too, or it lingers as long as the host's end does
    argv = _nix.NixCommand(opts).argv('copy', args + [path])
    full_env = opts.environment()
    full_env.update(env or {})
    try:
        rc, _out, err = run_no_tty(argv, env=full_env, timeout=timeout)
    except TimedOut:
        raise CopyTimeout('the nix copy of %s to %s' % (path, uri), timeout)
    err = _redact.text(err)
    if rc != 0:
        raise _nix.NixError('nix copy to %s failed' % uri, argv=argv, rc=rc, stderr=err)
    return _nix_stderr.sent_paths(err)


def fetch_script(nix_dir, path, caches, flags):
    """(program, stdin): the sh run on the target (target/copy-fetch.sh),
    which fetches ``path``'s closure from the first cache that has it
    (signatures checked by the target against its own keys; ``flags``:
    ``nix_copy_flags``, passed to each ``nix copy --from``), and what to
    send on its stdin: the netrc of the caches' logins ('' when none has
    one). The program text is ssh's and sh's argv: it names each cache
    without its login, which travels on stdin only. CopyError for an address
    whose login cannot go that way (plugin_utils/nix/_netrc.py)."""
    split = _split(caches)
    try:
        netrc = _netrc.netrc_text(split)
    except _netrc.CacheAddressError as exc:
        raise CopyError(u'%s' % exc)
    program = _script.render(['copy-flags.sh', 'copy-fetch.sh'], {
        'NIX_DIR': nix_dir.rstrip('/'), 'STORE_PATH': path, 'NETRC': bool(netrc),
        'NIX_COPY_FLAGS': flag_lines(flags),
        # one cache a line, "<1 when it needs the netrc> <URI>": the script
        # reads them as data, never as words
        'CACHES': '\n'.join('%d %s' % (c.has_credential, c.uri.replace('\n', ''))
                            for c in split)})
    return program, netrc


def flag_lines(flags):
    """``flags`` (``nix_copy_flags``'s words) as target/copy-flags.sh reads
    them into its ``"$@"``: one word a line, each behind a ``:`` (so an
    empty word is a line too, and no words no line)."""
    return ''.join(':%s\n' % _one_word(word) for word in flags)


# ------------------------------------------------------------------ cascade hop
HOP_ALIAS = 'nixdeploy-receiver'


def hop_script(nix_dir, known_keys, uri, path, flags, port=None, no_check_sigs=False):
    """sh run ON a sender (target/copy-hop.sh): ``nix copy --to <receiver's
    ssh-ng URI> flags path`` (``flags``: ``nix_copy_flags``).

    The receiver's host key is checked against ``known_keys`` ('type base64'
    lines the controller took from its own known_hosts), under the alias
    HOP_ALIAS, in a private temp folder the script removes on exit. Login
    uses the agent the controller forwarded for this hop only. Exit codes:
    96 no forwarded agent, 97 no temp folder, 98 no nix or ssh here (the
    sender cannot send); 255 never (it means the controller lost the sender).
    """
    return _script.render(['copy-flags.sh', 'copy-hop.sh'], {
        'NIX_DIR': nix_dir.rstrip('/'), 'HOP_ALIAS': HOP_ALIAS, 'URI': uri,
        'NIX_COPY_FLAGS': flag_lines(flags),
        'STORE_PATH': path, 'PORT': int(port) if port else None,
        'NO_CHECK_SIGS': bool(no_check_sigs),
        'KNOWN_HOSTS': '\n'.join('%s %s' % (HOP_ALIAS, key.replace('\n', ''))
                                 for key in known_keys)})


def unsigned_message(host, who, stderr):
    return ('%s: the target refuses unsigned paths (its nix-daemon checks signatures for '
            'the non-trusted user %s). Fix it either way: give signing_key (the deploy role\'s nix_signing_key: a key made with '
            'nix-store --generate-binary-cache-key whose public half is in the target\'s '
            'trusted-public-keys), or connect as root / a user in the target\'s trusted-users '
            '(or with become via passwordless sudo). Nix said: %s'
            % (host, who, _last_error(stderr)))


def looks_unsigned(stderr):
    """Whether the target refused paths for want of a signature (every Nix's words)."""
    return _nix_stderr.unsigned(stderr)


def _last_error(stderr):
    err = _nix.NixError('', stderr=stderr)
    return err.nix_message().strip() or (stderr or '').strip()[-500:]
