# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evaluation a status read does itself (nix_status with
``from_role_vars`` and no ``desired``).

``Evaluation`` is nix_status's side of it: nix_eval's action for the host,
run, and its result. That result rides in nix_status's own under ``eval``
(``KEY``), and ``results_of`` gives the callbacks (summary, report) the two
results one task now holds, as they read them from two tasks: the host's
evaluation first (its figures, its failure, an off host), then its read.
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import with_details

# where nix_status keeps nix_eval's result for the host
KEY = 'eval'
EVAL_ACTION = 'nixdeploy.fleet.nix_eval'
STATUS_ACTION = 'nix_status'
# what of nix_eval's result is said once, on the task's own result
_SAID = ('warnings', 'deprecations')


class Evaluation:
    """One host's evaluation by nix_eval's ``action``, whose ``result`` it is."""

    def __init__(self, action, result):
        self.action = action
        self.result = result

    def failed(self):
        return bool(self.result.get('failed'))

    def probe(self):
        """nix_eval's login probe, run now on a host the read did not reach:
        its result (``address`` where it logged in; else the host's
        unreachable or failed result, which is now the evaluation's), or
        None when there is no probe to run."""
        probed = self.action.probe_after(dict(self.result))
        if probed is not None:
            self.result = probed
        return probed

    def as_result(self, result):
        """``result`` (nix_status's) made the evaluation's outcome: its
        failure, its host unreachable, its batch stopped, in nix_eval's own
        words and keys."""
        result.clear()
        result.update(self.result)
        result[KEY] = self._inner()
        return result

    def keep_in(self, result):
        """``result`` (a read's) with the evaluation: its facts (nix_drv_path,
        nix_out_path), its warnings and the result under ``KEY``."""
        result.setdefault('ansible_facts', {}).update(self.result.get('ansible_facts') or {})
        for key in _SAID:
            if self.result.get(key):
                result.setdefault(key, []).extend(self.result[key])
        result[KEY] = self._inner()
        return result

    def _inner(self):
        # facts and warnings are the task's own: set and said once
        return dict((key, value) for key, value in self.result.items()
                    if key not in _SAID + ('ansible_facts',))


def results_of(action, status, result):
    """[(action, status, result)]: the task results one callback event
    holds. A nix_status result with nix_eval's under ``KEY`` holds that one
    first; when its phase is the evaluation's (a failed evaluation, an off
    host) or its batch stopped, that one only: the read never happened."""
    inner = result.get(KEY) if str(action or '').rpartition('.')[2] == STATUS_ACTION else None
    if not isinstance(inner, dict):
        return [(action, status, result)]
    if result.get('phase') == 'eval' or result.get('stopped'):
        return [(EVAL_ACTION, status, result)]
    return [(EVAL_ACTION, 'ok', with_details(inner)), (action, status, result)]
