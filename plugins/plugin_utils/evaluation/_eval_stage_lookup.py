# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What answers a batch's requests before any evaluator: the evaluation
cache, then reuse across commits.

``EvalStageLookup`` holds the methods of ``EvalStage`` that look answers
up: which requests the cache may answer at all (``_cache_keys``: a pinned
flake whose inputs are all locked, evaluated with options known to be pure,
by a Nix whose configuration allows no more), the answers Nix gave for
exactly this content (``_hits``), and the run's ``_eval_reuse.Reuse``, which
answers a host of another commit whose recorded reads have not changed
(``_reuse``). What they do not answer goes to the evaluators
(``_eval_stage_batch``).
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._flake_source import (
    RunSources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run


class EvalStageLookup(object):
    """The methods of ``EvalStage`` that look answers up before evaluating;
    the cache, the pinned sources and the runner they use are
    ``EvalStage``'s."""

    def _cache_keys(self, by_key):
        """{request key: cache key} of the requests the cache may answer: a
        pinned flake whose inputs are all locked (``FlakeSource.identity``),
        evaluated with options known to be pure (``EvalCache.key``). A miss
        is evaluated from that pinned source, so what is stored under its
        identity is what Nix evaluated."""
        if self.cache is None or self.impure_config:
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

    def _hits(self, cache_keys):
        if not cache_keys:
            return {}
        found = self.cache.get_many(self.runner, sorted(set(cache_keys.values())))
        return dict((key, found[ck]) for key, ck in cache_keys.items() if ck in found)

    def _reuse(self, by_key, cache_keys):
        """The run's ``_eval_reuse.Reuse`` for the requests the cache may
        answer (None: nothing to reuse or record)."""
        if not cache_keys or not self.reuse:
            return None
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_reuse import (
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
        self.reuse_reasons = reuse.reasons
        return reuse
