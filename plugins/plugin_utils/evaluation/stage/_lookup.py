# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What answers a batch's requests before any evaluator: the evaluation
cache, then reuse across commits.

``Lookup``, one of ``EvalStage``'s helpers, finds which requests the cache
may answer at all (``cache_keys``: a pinned flake whose inputs are all
locked, evaluated with options known to be pure, by a Nix whose
configuration allows no more), the answers Nix gave for exactly this
content (``hits``), and the run's ``reuse/_reuse.Reuse``, which answers a
host of another commit whose recorded reads have not changed (``reuse``).
What they do not answer goes to the evaluators (``_batch``).
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._source import (
    RunSources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run


class Lookup(object):
    """Looks answers up before any evaluator. ``cache``: the stage's
    ``EvalCache`` (None: no cache); ``runner``: its ``NixCommand``;
    ``sources``: the run's ``RunSources`` (None: the stage pins alone);
    ``reuse_on``: whether reuse across commits is wanted; ``pinned``: the
    stage's {flake: FlakeSource}, filled by its pin before any look-up."""

    def __init__(self, cache, runner, sources, reuse_on, pinned):
        self.cache, self.runner, self.sources = cache, runner, sources
        self.reuse_on, self.pinned = reuse_on, pinned

    def cache_keys(self, by_key, impure_config):
        """{request key: cache key} of the requests the cache may answer: a
        pinned flake whose inputs are all locked (``FlakeSource.identity``),
        evaluated with options known to be pure (``EvalCache.key``). A miss
        is evaluated from that pinned source, so what is stored under its
        identity is what Nix evaluated."""
        if self.cache is None or impure_config:
            return {}
        features = self.runner.features()
        keys = {}
        for key, request in by_key.items():
            identity = self.pinned[request['flake']].identity
            found = identity and self.cache.key(identity, request['attr'], features,
                                                self.runner.opts)
            if found:
                keys[key] = found
        return keys

    def hits(self, cache_keys):
        """{request key: the answer the cache holds for exactly that content}."""
        if not cache_keys:
            return {}
        found = self.cache.get_many(self.runner, sorted(set(cache_keys.values())))
        return dict((key, found[ck]) for key, ck in cache_keys.items() if ck in found)

    def reuse(self, by_key, cache_keys):
        """The run's ``reuse/_reuse.Reuse`` for the requests the cache may
        answer (None: nothing to reuse or record); its ``reasons`` say, by
        flake, why none of a flake's hosts is reused."""
        if not cache_keys or not self.reuse_on:
            return None
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse._reuse import (
            Reuse)
        # the evaluators' logs and Nix caches: outside Ansible's temporary
        # folder, which goes with the job while a record may still be kept
        # (_job_end); removed when the batch is done (EvalStage.evaluate)
        folder = _run.temporary_folder('nixdeploy-record-')
        features = self.runner.features()
        reuse = Reuse(self.cache, self.runner, self.sources or RunSources(None), folder,
                      lambda fingerprint, attr: self.cache.key(fingerprint, attr, features,
                                                               self.runner.opts))
        try:
            reuse.prepare(self.pinned, dict((k, by_key[k]) for k in cache_keys))
        except BaseException:
            _run.remove_folder(folder)
            raise
        return reuse
