# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The spot check: reused answers evaluated again by Nix before any of
them is given.

Reuse across commits trusts a record of what a host's evaluation read; the
spot check does not. In each batch, ``reuse_check`` of the reused hosts
(nix_eval's ``eval_reuse_check``) are evaluated again first, the least
recently checked first (``spot_check_sample``), so that over runs every
reused host is checked. One that differs fails its hosts loudly, marks its
flake distrusted in the cache (reuse stays off for it until the mark is
removed) and sends the flake's other reused hosts to be evaluated.
``EvalStageSpotCheck`` holds that method of ``EvalStage``
(``_spot_check``). Nix's own evaluation of the sample is
``_eval_reuse.spot_check``; the marks and check times it reads and writes
are ``_eval_cache_marks``.
"""

import random
import time

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact


class EvalStageSpotCheck(object):
    """The method of ``EvalStage`` that checks reused answers before they
    are given; the cache, the runner and the pinned sources it uses are
    ``EvalStage``'s."""

    def _spot_check(self, reuse, reused, by_key):
        """(the reused answers still given, {key: error}): ``reuse_check`` of
        them, drawn at random, evaluated again by Nix first. One that
        differs fails its hosts, turns reuse off for its flake (a file in the
        cache folder) and sends every other reused host of that flake to be
        evaluated."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_reuse import (
            spot_check)
        checked = self.cache.last_checked([reuse.keys[k] for k in reused])
        sample = spot_check_sample(
            reused, dict((k, checked[reuse.keys[k]]) for k in reused if reuse.keys[k] in checked),
            self.reuse_check)
        wrong = spot_check(self.runner, dict((k, reused[k]) for k in sample), lambda key: {
            'flake': self.pinned[by_key[key]['flake']].ref, 'attr': by_key[key]['attr']})
        self.cache.mark_checked([reuse.keys[k] for k in sample if k not in wrong])
        if not wrong:
            return reused, {}
        flakes = set(by_key[key]['flake'] for key in wrong)
        errors = {}
        for key, fresh in wrong.items():
            flake = by_key[key]['flake']
            given = reused[key]
            self.cache.distrust(flake, {'attr': by_key[key]['attr'], 'reused': given[0],
                                        'from': given[1].get('from'), 'nix': fresh,
                                        'when': int(time.time())})
            errors[key] = (
                u'nixdeploy: the answer reused for %s#%s (%s, from %s) is not what Nix gives for '
                u'this commit (%s): reuse across commits is now off for this flake (the cache '
                u'folder holds why); please report this with the flake\'s two commits'
                % (_redact.url(flake), attr_string(by_key[key]['attr']), given[0].get('drv_path'),
                   (given[1].get('from') or {}).get('revision') or 'another content',
                   fresh.get('drv_path') or fresh.get('error')))
        kept = dict((k, v) for k, v in reused.items() if by_key[k]['flake'] not in flakes)
        return kept, errors


def spot_check_sample(reused, checked, count, now=None, draw=None):
    """The ``count`` keys of ``reused`` a spot check evaluates again.
    ``checked``: {key: when a spot check last found it right}.

    The least recently checked first (never checked: first of all), a draw
    among equals, so that no host is always the one left out. Where some of
    them have a check time and others none, one more, drawn from the rest at
    random, weighted by the time since its last check (one with none as the
    oldest): a writer of the cache folder who deletes the other hosts' times
    (and keeps one host's genuine old one) cannot keep that host out of every
    draw. ``draw``: a random.Random (the system's random source if None)."""
    draw = draw or random.SystemRandom()
    now = time.time() if now is None else now
    order = sorted(reused, key=lambda k: (checked.get(k, 0), draw.random()))
    sample, rest = order[:count], order[count:]
    ages = dict((k, max(now - checked[k], 1)) for k in order if k in checked)
    if not count or not rest or not ages or len(ages) == len(order):
        return sample
    oldest = max(ages.values())
    return sample + draw.choices(rest, [ages.get(k, oldest) for k in rest])
