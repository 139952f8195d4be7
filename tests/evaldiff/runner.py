"""The campaign's loop and its reference check.

For every commit (the first one, then one per random edit, ``mutations``):

1. the reference: one plain ``nix eval --json <flake>#nixosConfigurations
   --apply ...`` per flake (the top one and ``?dir=sub``), Nix's own
   evaluation cache off, with no cache of ours. It runs FIRST, so that
   Nix's own caches (its fetcher cache: a path it copied is not read again)
   are warm when the stage records what its hosts read: a record made
   behind a warm cache would miss reads, which is the trap to catch;
2. the stage (``EvalStage``) of a new run (its own run folder: it pins the
   flake once per run) with ONE cache folder kept across the commits, for
   every current host of both flakes;
3. every host's ``drv_path`` compared with the reference's (commit 0's too:
   the first answers, recorded before anything can be reused, must be
   right as well, since a wrong record is reused from then on, and so is
   the first answer after a commit that brings a new shape); a difference is
   printed with the seed, the commit, the host, the history of edits and
   both answers (and which attributes of the two derivations differ), and
   the campaign stops and fails.

A commit left in the work tree (the ``dirty`` shape of issue 89) is
evaluated by the run from its snapshot (docs/eval-cache.md, "One content per
run"): its hosts that read the names of ``self`` (``selfnames``) are checked
against a plain ``nix eval`` of that snapshot, which gives them another
answer than the tree as the docs' table says (counted: ``documented``), and
every other host of it must answer alike from the tree and the snapshot.
On Nix before 2.25 the sub flake of a dirty tree is left out of that
commit's check: it is the folder inside the snapshot, and it imports
``../lib`` (docs/eval-cache.md's table: its evaluation fails).

One line per commit (hosts evaluated, reused, answered from the cache);
the totals at the end. ``--seed`` replays a campaign exactly (the edits
depend on the seed alone); ``--commits K`` stops after commit K.
"""

import argparse
import collections
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from tests.collection import collections_path
from tests.evaldiff import mutations, shapes

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import _eval  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._cache import (  # noqa: E402,E501
    EvalCache)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._stage import (  # noqa: E402,E501
    EvalStage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._source import (  # noqa: E402,E501
    RunSources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake import (  # noqa: E402,E501
    _url)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions  # noqa: E402,E501

SYSTEM = ['config', 'system', 'build', 'toplevel']
APPLY = 'cs: builtins.mapAttrs (n: c: c.config.system.build.toplevel.drvPath) cs'
HOWS = ('evaluated', 'reused', 'cached')


class Difference(Exception):
    """A host answered otherwise than the reference: the campaign fails."""


def rng_for(seed, number):
    # a str seeds through SHA-512: the same draws on every Python 3
    return random.Random('nixdeploy-evaldiff:%s:%d' % (seed, number))


def fresh_seed():
    return random.SystemRandom().randrange(10 ** 6)


def replay_command(seed, commits, path_strings=False, every_shape=False, without=(),
                   edits=None):
    return 'python -m tests.evaldiff --seed %s --commits %d --keep%s%s%s%s' % (
        seed, commits, ' --path-strings' if path_strings else '',
        ' --every-shape' if every_shape else '',
        ' --without %s' % ','.join(sorted(without)) if without else '',
        ' --edits %s' % ','.join(sorted(edits)) if edits else '')


def nix_version(environ):
    """(major, minor) of the ``nix`` on PATH."""
    text = subprocess.run(['nix', '--version'], stdout=subprocess.PIPE, env=environ, check=True,
                          universal_newlines=True).stdout
    found = re.search(r'(\d+)\.(\d+)', text)
    return int(found.group(1)), int(found.group(2))


class Totals(object):
    """What a campaign checked."""

    def __init__(self):
        self.commits = 0
        self.answers = 0
        self.how = collections.Counter()
        # answers equal to the same host's of the commit before (what reuse
        # could at best give), and how many of those were reused
        self.unchanged = 0
        self.unchanged_reused = 0
        self.differences = []
        self.notes = []
        self.seconds = 0.0
        # {shape of issues 76 and 89: commits checked while the fleet had it}
        self.shapes = collections.Counter()
        # answers of a dirty tree that differ from Nix's evaluation of the
        # tree as docs/eval-cache.md's table says (checked against the
        # snapshot the run evaluates)
        self.documented = 0

    def line(self, seed):
        return ('eval-diff: seed %s: %d commits, %d host-answers checked (evaluated %d, reused %d, '
                'cached %d; %d unchanged from the commit before, %d of them reused; '
                '%d answers of a dirty tree as documented), %d differences, %.0fs'
                % (seed, self.commits, self.answers, self.how['evaluated'], self.how['reused'],
                   self.how['cached'], self.unchanged, self.unchanged_reused, self.documented,
                   len(self.differences), self.seconds)
                + '; shapes: %s' % (', '.join('%s %d' % (k, v)
                                              for k, v in sorted(self.shapes.items()))
                                    or 'none of issues 76 and 89'))


class Campaign(object):
    """``commits`` random commits after the first one of seed ``seed``, in
    a work folder under ``parent`` (a new temp folder when None); ``keep``:
    leave the work folder (it is always left after a difference)."""

    def __init__(self, seed, commits, parent=None, keep=False, log=print, path_strings=False,
                 verbose=False, every_shape=False, without=(), edits=None):
        self.seed, self.commits = seed, commits
        self.path_strings, self.verbose = path_strings, verbose
        # every shape of issue 76 in the fleet from its first commit, but
        # those ``without`` names
        self.every_shape, self.without = every_shape, tuple(without)
        # the only edits commits make (names in mutations.EDITS), or None: all
        self.edits = tuple(edits) if edits else None
        self.parent, self.keep, self.log = parent, keep, log
        self.totals = Totals()
        self.history = []
        self.work = None
        self.environ = None
        self.repo = None
        self.fleet = None
        # the commit being checked
        self.number = 0
        # {host: drv} of the commit before
        self.before = {}

    # ------------------------------------------------------------ the loop
    def run(self):
        """Play the campaign; returns its ``Totals`` (``differences`` empty
        when every answer matched)."""
        started = time.monotonic()
        self.work = tempfile.mkdtemp(prefix='evaldiff-', dir=self.parent)
        saved = dict((k, os.environ.get(k)) for k in ('NIX_CONFIG', 'XDG_CACHE_HOME'))
        # Nix's own caches private to the campaign (and warm from its first
        # reference on); the stage's Nix processes read os.environ
        self.environ = dict(os.environ, NIX_CONFIG=mutations.NIX_CONFIG,
                            XDG_CACHE_HOME=os.path.join(self.work, 'xdg-cache'))
        os.environ.update((k, self.environ[k]) for k in saved)
        failed = True
        try:
            self._play()
            failed = bool(self.totals.differences)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self.totals.seconds = time.monotonic() - started
            if failed or self.keep:
                self.log('eval-diff: the work folder is kept: %s' % self.work)
            else:
                shutil.rmtree(self.work, ignore_errors=True)
            self.log(self.totals.line(self.seed))
        return self.totals

    def _play(self):
        cache = os.path.join(self.work, 'eval-cache')
        os.makedirs(cache, 0o700)
        inputs = os.path.join(self.work, 'inputs')
        version = nix_version(self.environ)
        self.fleet = shapes.draw(rng_for(self.seed, 0), inputs, self.path_strings,
                                 self.every_shape, self.without)
        # a Nix before 2.25 refuses ?dir= on a path: input
        self.fleet.dir_input = version >= (2, 25)
        self.repo = mutations.Repo(os.path.join(self.work, 'repo'), inputs, version,
                                   self.environ)
        shaped = ('toplink', 'names', 'follows', 'exports', 'dirty', 'placed')
        features = ''.join(', ' + n for n in shaped if getattr(self.fleet, n))
        self.log('eval-diff: seed %s, %d commits, Nix %d.%d, %d + %d hosts (%s list, '
                 'outputs %s%s), work folder %s' % (
                     self.seed, self.commits, version[0], version[1], len(self.fleet.hosts),
                     len(self.fleet.sub_hosts), self.fleet.listing, self.fleet.style, features,
                     self.work))
        self.history.append('commit 0: the fleet')
        head = self.repo.create(self.fleet)
        if not self._check(0, 'the fleet', head, cache):
            return
        for number in range(1, self.commits + 1):
            self.number = number
            change = mutations.draw(rng_for(self.seed, number), self.fleet, self.edits)
            if self.every_shape and number == 1 and self.fleet.dirty and not change.dirty:
                # every shape from the start: the first commit is left dirty
                change = mutations.Change(change.text + ' (left uncommitted)', change.inputs,
                                          True)
            self.history.append('commit %d: %s' % (number, change.text))
            head = self.repo.commit(self.fleet, change)
            if not self._check(number, change.text, head, cache, change.dirty):
                return

    # ------------------------------------------------------------ one commit
    def _check(self, number, text, head, cache, dirty=False):
        """The reference, then the stage, then the comparison; False on a
        difference."""
        started = time.monotonic()
        self.history[-1] = 'commit %d (%s%s): %s' % (number, head[:10], ', dirty' if dirty else '',
                                                     text)
        flakes = {'': 'git+file://%s' % self.repo.root,
                  'sub/': 'git+file://%s?dir=sub' % self.repo.root}
        if dirty and self.repo.nix_version < (2, 25):
            # the run evaluates the folder inside the snapshot, which has
            # no ../lib: documented, not checked
            del flakes['sub/']
        status = self.repo.git('status', '--porcelain', '--ignored')
        # the two flakes' references side by side: each is one Nix process
        answers = {}
        threads = [threading.Thread(target=self._reference_into, args=(flake, answers))
                   for flake in flakes.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected = {}
        for prefix, flake in sorted(flakes.items()):
            if isinstance(answers.get(flake), Exception):
                raise answers[flake]
            for name, drv in answers[flake].items():
                expected[prefix + name] = (flake, name, drv)
        hosts = set(self.fleet.hosts) | set(
            'sub/' + n for n in self.fleet.sub_hosts if 'sub/' in flakes)
        if set(expected) != hosts:
            raise RuntimeError('the generator is wrong: the fleet has %s, Nix %s'
                               % (sorted(hosts), sorted(expected)))
        left = self.repo.git('status', '--porcelain', '--ignored')
        if left != status:
            raise RuntimeError('the reference changed the tree:\n%s' % left)
        found = []
        if dirty:
            self.totals.shapes['dirty tree'] += 1
            found += self._as_the_run_reads(number, expected)
        entries = self.stage(expected, cache)
        how = collections.Counter()
        unchanged, missed = 0, []
        for host, (flake, _name, drv) in sorted(expected.items()):
            entry = entries.get(host) or {}
            how[entry.get('evaluation') or 'evaluated'] += 1
            if self.before.get(host) == drv:
                unchanged += 1
                self.totals.unchanged_reused += entry.get('evaluation') == 'reused'
                if self.verbose and entry.get('evaluation') != 'reused':
                    missed.append(host)
            for note in entry.get('notes') or ():
                if note not in self.totals.notes:
                    self.totals.notes.append(note)
                    self.log('  note: %s' % note)
            problem = self._problem(entry, drv, head)
            if problem:
                found.append(self._describe(number, host, flake, drv, entry, problem))
        self.totals.commits += 1
        self.totals.shapes.update(self.fleet.in_use())
        self.totals.answers += len(expected)
        self.totals.how.update(how)
        self.totals.unchanged += unchanged
        self.before = dict((host, drv) for host, (_f, _n, drv) in expected.items())
        self.log('commit %d %s [%s]: %d hosts (%d unchanged), evaluated %d, reused %d, cached %d, '
                 '%.1fs' % (number, head[:10], text, len(expected), unchanged, how['evaluated'],
                            how['reused'], how['cached'], time.monotonic() - started))
        if missed:
            self.log('  unchanged, not reused: %s' % ', '.join(missed))
        if found:
            self.totals.differences.extend(found)
            for text_ in found:
                self.log(text_)
            return False
        return True

    def _as_the_run_reads(self, number, expected):
        """A dirty tree's check: each host of the top flake that reads the
        names of ``self`` is expected to answer as Nix answers the snapshot
        the run evaluates (``expected`` is changed so); every other host
        must answer alike from the tree and the snapshot. The differences
        the docs do not describe."""
        snapshot = self.reference(self.snapshot_ref())
        found = []
        for name, drv in sorted(snapshot.items()):
            flake, _name, tree = expected[name]
            # a host whose file is a link to another's reads what that one does
            host = self.fleet.hosts[name]
            target = shapes.link_target(self.fleet.hosts, host)
            if (self.fleet.hosts[target] if target else host).features.get('selfnames'):
                self.totals.documented += drv != tree
                expected[name] = (flake, name, drv)
            elif drv != tree:
                found.append('\n'.join(
                    ['DIFFERENCE (the snapshot of a dirty tree answers otherwise than the tree '
                     'for a host that reads none of %s): seed %s, commit %d, host %s'
                     % (', '.join(shapes.DIRTY_ONLY), self.seed, number, name),
                     '  the tree: %s' % tree, '  the snapshot: %s' % drv]
                    + ['  ' + line for line in self.drv_difference(tree, drv)]))
        return found

    def snapshot_ref(self):
        """What the run evaluates of the dirty tree (``flake/_pin.pin``):
        the snapshot ``nix flake metadata`` copies, as a ``path:`` flake."""
        data = json.loads(self.repo.nix('flake', 'metadata', '--json',
                                        'git+file://%s' % self.repo.root))
        return _url.snapshot_ref(data, data.get('locked') or {}, {}, None)

    @staticmethod
    def _problem(entry, drv, head):
        answer = entry.get('answer') or {}
        if not entry:
            return 'the stage gave no answer'
        if answer.get('drv_path') != drv:
            return 'another answer'
        revision = (entry.get('source') or {}).get('revision')
        if revision not in (None, head):
            # the right answer of another content: the pin went wrong
            return 'the stage evaluated revision %s' % revision
        return None

    def _describe(self, number, host, flake, drv, entry, problem):
        answer = entry.get('answer') or {}
        lines = ['DIFFERENCE (%s): seed %s, commit %d, host %s of %s'
                 % (problem, self.seed, number, host, flake),
                 '  reference (plain nix eval): %s' % drv,
                 '  stage (%s): %s' % (entry.get('evaluation') or 'evaluated',
                                       answer.get('drv_path') or answer)]
        if entry.get('reused'):
            lines.append('  reused: %s' % json.dumps(entry['reused'], sort_keys=True))
        if answer.get('drv_path'):
            lines += ['  ' + line for line in self.drv_difference(drv, answer['drv_path'])]
        lines.append('  history:')
        lines += ['    ' + h for h in self.history]
        lines.append('  replay: %s' % replay_command(self.seed, number, self.path_strings,
                                                     self.every_shape, self.without,
                                                     self.edits))
        return '\n'.join(lines)

    # ------------------------------------------------------------ the two answers
    def _reference_into(self, flake, answers):
        try:
            answers[flake] = self.reference(flake)
        except Exception as exc:  # pylint: disable=broad-except
            # raised again by the loop's thread
            answers[flake] = exc

    def reference(self, flake):
        """{host: drvPath} of ``flake``: one plain Nix process for all its
        hosts, without Nix's evaluation cache or ours."""
        proc = subprocess.run(
            ['nix', 'eval', '--json', '--no-update-lock-file', '--option', 'eval-cache', 'false',
             '%s#nixosConfigurations' % flake, '--apply', APPLY],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environ,
            universal_newlines=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError('the reference evaluation of %s failed: %s'
                               % (flake, proc.stderr[-3000:]))
        return json.loads(proc.stdout)

    def stage(self, expected, cache):
        """{host: entry} of a new run's stage with the persistent cache."""
        runs = os.path.join(self.work, 'runs')
        os.makedirs(runs, 0o700, exist_ok=True)
        run_folder = tempfile.mkdtemp(prefix='run-', dir=runs)
        requests = dict((host, _eval.normalised(_eval.host_request(
            host, {'flake': flake, 'attr': ['nixosConfigurations', name] + SYSTEM}, {},
            lambda f: f))) for host, (flake, name, _drv) in expected.items())
        entries, lock = {}, threading.Lock()

        def put(host, entry):
            with lock:
                entries[host] = entry

        try:
            EvalStage(NixOptions(options={'substituters': ''}), cache=EvalCache(cache),
                      sources=RunSources(run_folder)).evaluate(requests, put)
        finally:
            shutil.rmtree(run_folder, ignore_errors=True)
        return entries

    def drv_difference(self, one, other):
        """The attributes of two derivations that differ (for the report)."""
        sub = ['derivation', 'show'] if self.repo.nix_version >= (2, 15) else ['show-derivation']
        shown = []
        for path in (one, other):
            proc = subprocess.run(['nix'] + sub + [path], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=self.environ,
                                  universal_newlines=True, check=False)
            try:
                data = json.loads(proc.stdout)
                # {drv: derivation}; Nix 2.33+ puts it under "derivations"
                data = data.get('derivations', data)
                shown.append(list(data.values())[0].get('env') or {})
            except (ValueError, IndexError, AttributeError):
                return ['(the derivations could not be shown: %s)' % proc.stderr[-300:]]
        return ['%s: reference %r, stage %r' % (key, shown[0].get(key), shown[1].get(key))
                for key in sorted(set(shown[0]) | set(shown[1]))
                if shown[0].get(key) != shown[1].get(key)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tests.evaldiff', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seed', default=None, help='the campaign seed (default: a fresh one)')
    parser.add_argument('--commits', type=int, default=300,
                        help='random commits after the first one (default 300)')
    parser.add_argument('--keep', action='store_true', help='leave the work folder')
    parser.add_argument('--verbose', action='store_true',
                        help='name the hosts whose answer did not change but was not reused')
    parser.add_argument('--path-strings', action='store_true',
                        help='hosts may also make a string of part of a path\'s store hash '
                             '(shapes.PATH_STRINGS)')
    parser.add_argument('--every-shape', action='store_true',
                        help='every shape of issue 76 in the fleet from its first commit '
                             '(outputs in outputs.nix or parts/, odd names, follows, positions, '
                             'toFile of ./., ...)')
    parser.add_argument('--without', default='',
                        help='features and shapes the fleet never has, comma-separated (pos, '
                             'where, me, ..., imported, parts, toplink, names, follows): to '
                             'tell one failure from another')
    parser.add_argument('--edits', default='',
                        help='the only edits commits make, comma-separated names of '
                             'tests/evaldiff/mutations.py (setting, empty, edit_host, ...)')
    args = parser.parse_args(argv)
    without = tuple(w for w in args.without.split(',') if w)
    edits = tuple(e for e in args.edits.split(',') if e) or None
    known = set(e.__name__ for e, _w in mutations.EDITS)
    if edits and not set(edits) <= known:
        parser.error('--edits: unknown %s (known: %s)' % (
            ', '.join(sorted(set(edits) - known)), ', '.join(sorted(known))))
    can_leave = set(shapes.FEATURES) | set(shapes.STYLES[1:]) | set(shapes.NEEDS.values())
    if not set(without) <= can_leave:
        parser.error('--without: unknown %s (known: %s)' % (
            ', '.join(sorted(set(without) - can_leave)), ', '.join(sorted(can_leave))))
    seed = args.seed if args.seed not in (None, '') else str(fresh_seed())

    def log(text):
        print(text, flush=True)

    campaign = Campaign(seed, args.commits, keep=args.keep, log=log,
                        path_strings=args.path_strings, verbose=args.verbose,
                        every_shape=args.every_shape, without=without, edits=edits)
    try:
        totals = campaign.run()
    except Exception as exc:  # pylint: disable=broad-except
        # a commit that could not be made or checked (the generator's
        # fault, the machine's, or the stage raised): where, and how to get
        # there again
        said = getattr(exc, 'stderr', None) or ''
        if not isinstance(exc, (RuntimeError, subprocess.CalledProcessError)):
            said += traceback.format_exc()
        log('eval-diff: the campaign stopped at commit %d of seed %s: %s %s\n  history:\n%s\n'
            '  replay: %s' % (campaign.number, seed, exc, said,
                              '\n'.join('    ' + h for h in campaign.history),
                              replay_command(seed, campaign.number, args.path_strings,
                                             args.every_shape, without, edits)))
        return 2
    if totals.differences:
        log('eval-diff: %d differences; replay: %s'
            % (len(totals.differences), replay_command(seed, totals.commits - 1,
                                                       args.path_strings, args.every_shape,
                                                       without, edits)))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
