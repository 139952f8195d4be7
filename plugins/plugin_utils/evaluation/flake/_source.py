# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one content of each flake a run evaluates.

A run pins each flake reference once, with one ``nix flake metadata --json``
(``pin``), and every evaluator of the run (a batch's, a wave's, nix_build's,
one restarted for memory) evaluates the pinned reference (``FlakeSource.ref``)
that the run's sources (``RunSources``, one file per flake in the run's 0700
batch folder) hold, never the work tree again:

- a locked URL that names its content (a git ``rev``, a ``narHash``) is
  pinned as it is: Nix fetches exactly that or fails on the hash;
- a git work tree with uncommitted changes is not: its locked URL is plain
  ``git+file://...``, and Nix copies the tree again in every process (a
  ``narHash`` added to that URL is not even checked, Nix 2.8 to 2.34). Such a
  flake is evaluated from the snapshot ``nix flake metadata`` already copied
  to the store: ``path:<store path>?narHash=...&lastModified=...`` (rooted
  for the run's length). ``self.outPath``, ``self.narHash`` and
  ``self.lastModified`` are the tree's; ``self.rev`` is absent, as for the
  tree; ``self.dirtyRev`` (Nix 2.18+) is absent too, since a ``path:`` flake
  cannot carry it: the provenance keeps it (``dirty_revision``);
- a flake whose lock graph is not its written flake.lock (an input missing
  from it, a stale one: ``_identity.lock_mismatch``): under
  ``--no-write-lock-file`` (or for a source Nix cannot write to) every
  evaluator would lock that input again from its live location. Where Nix
  takes ``--reference-lock-file`` (``NixFeatures.reference_lock_file``) and
  the graph Nix resolved locks every input by its content, that graph is
  written to a private file of the run and travels with the pin
  (``FlakeSource.lock_file``, ``eval_args``): every evaluator reads it, one
  content of every input; never cached. Otherwise (Nix 2.8) the run does not
  claim one content: a folder of the controller is not evaluated (its hosts
  fail, naming the input and ``nix flake lock``), a remote flake is
  evaluated as given, never cached;
- anything else (metadata failed, no store copy) is evaluated as given and
  never cached (``FlakeSource.reason``), and the run says so once.

``FlakeSource.identity`` is what the evaluation cache keys by
(``_identity``), None where the flake's inputs are not all locked.
``FlakeSource.provenance`` is what a host's result and the report name.

This file holds ``RunSources``, the run's file of each flake. Its parts
live beside it: ``_pin`` (``pin`` and the ``FlakeSource`` it gives),
``_url`` (what a locked URL says: whether it names its content, a
snapshot's URL, a shallow clone) and ``_eval_nix_config`` (whether the
controller's Nix configuration keeps the run from the cache).
"""

import os

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._eval_nix_config import (
    ACCEPTED_CONFIG, IMPURE_CONFIG, read_json_file, impure_config, saved_flake_settings)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._pin import (
    FlakeSource, pin)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._url import (
    is_local, is_shallow_clone, locks_every_input, names_its_content, shallow_ref, snapshot_ref,
    url_query)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run

# the longest a process waits for another that pins the same flake (or reads
# the same setting) for the run: the holder's Nix commands are bounded by
# eval_timeout; this is the net under one that never lets go
PIN_WAIT = 8 * 3600

# what callers may import from here: RunSources, and the names this file
# offered before its parts moved to the files beside it
__all__ = ['ACCEPTED_CONFIG', 'FlakeSource', 'IMPURE_CONFIG', 'RunSources', 'impure_config',
           'is_local', 'is_shallow_clone', 'locks_every_input', 'names_its_content', 'pin',
           'saved_flake_settings', 'shallow_ref', 'snapshot_ref', 'url_query']


class RunSources(object):
    """The run's pinned sources, one JSON file per flake and Nix setup in
    ``folder`` (the run's batch folder, 0700 in Ansible's per-run temp
    folder): the first evaluator of the run to ask pins it, under a lock;
    every later one (another batch, a wave, another process) reads it."""

    def __init__(self, folder):
        self.folder = folder
        self._known = {}

    def source(self, runner, flake, key):
        """The ``FlakeSource`` of ``flake``; ``key``: a file-name-safe digest
        of the flake and the Nix setup that reads it."""
        if key in self._known:
            return self._known[key]

        def compute(path):
            # the resolved lock graph (pin) beside the source's own file
            found = pin(runner, flake, path[:-len('.json')] + '-flake.lock' if path else None)
            if found.root and path:
                _root(runner, found, path + '.root')
            return found.to_data()

        found = FlakeSource.from_data(self._once('source-%s' % key, compute))
        self._known[key] = found
        return found

    def config_reason(self, runner, key):
        """``impure_config`` of ``runner``'s Nix, asked once per run and Nix
        setup (``key``)."""
        return self._once('config-%s' % key, lambda _path: {
            'reason': impure_config(runner)})['reason']

    def once(self, name, compute):
        """``compute()`` (JSON data) the first time the run asks for
        ``name`` (a file-name-safe key), what it gave every later time."""
        return self._once(name, lambda _path: {'value': compute()})['value']

    def _once(self, name, compute):
        """``compute(path)`` (JSON data) the first time the run asks for
        ``name``, under a lock; what it gave every later time."""
        if self.folder is None:
            # no run around it (a stage used alone): computed for this object
            return self._known.setdefault(name, compute(None))
        path = os.path.join(self.folder, _run_files.PINNED % name)
        with _run.held(path + '.lock', PIN_WAIT, {
                'host': None,
                'lock': "the lock of the run's pin of a flake (or of a Nix setting it reads "
                        "once), which the first evaluation to need it holds while Nix answers",
                'do': 'that Nix command is stuck (a fetch that never ends?): end the run and '
                      'start it again'}):
            found = read_json_file(path)
            if found is None:
                found = compute(path)
                write_json(path, found)
        return found

    def warn_once(self, key):
        """True the first time the run asks for ``key`` (a marker file made
        with O_EXCL): a warning the run says once, not once per host."""
        if self.folder is None:
            return True
        try:
            os.close(os.open(os.path.join(self.folder, _run_files.WARNED % key),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError:
            return False
        return True


def _root(runner, found, link):
    """Keep the snapshot alive while the run evaluates it: an indirect GC
    root in the run's folder (gone with it; Nix then drops the root). A
    snapshot collected anyway fails its evaluation, never evaluates other
    content."""
    try:
        runner.run(None, ['--realise', found.root, '--add-root', link], tool='nix-store')
    except (OSError, ValueError):
        pass
