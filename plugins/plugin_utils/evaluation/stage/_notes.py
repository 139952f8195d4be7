# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the run says once about an answer: the notes each host's entry
carries.

A flake that could not be pinned, a lock graph the run resolved for it, the
settings of its nixConfig that Nix did not apply, the operator's opting in
to them, a cache folder that could not be used or files of it that were
ignored, a Nix configuration that keeps the run from the cache, a flake
none of whose hosts is reused across commits, and why: ``answer_notes``,
which ``EvalStage.notes`` calls with what its batch found; the action says
each note once a run, whichever host carries it first.
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._eval_nix_config import (
    ACCEPTED_CONFIG)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_config import (
    ACCEPTED_NOTE, accepts_flake_config, refused_note)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import AFTER_JOB_WAIT


def answer_notes(source, refused, runner, cache, found):
    """What the run should say once about an answer of ``source`` (each
    note once a run, whichever host carries it first: the action's
    ``warn_once``): a flake it could not pin, a lock graph the run resolved
    for it, the settings of its nixConfig Nix did not apply (``refused``,
    from its evaluators' warnings), the operator's opting in to them, a
    cache folder it could not use. ``runner``, ``cache``: the stage's;
    ``found``: what its batch found, {'impure_config': why the controller's
    Nix configuration keeps the run from the cache, or None,
    'records_late': whether the job before's records were not done in time,
    'reuse_reasons': {flake: why none of its hosts is reused}}."""
    notes = []
    shown = _redact.url(source.flake)
    if source.reason:
        notes.append(u'%s is not pinned (%s): each evaluator reads it as it is, and '
                     u'nothing of it is cached' % (shown, source.reason))
    if source.lock_file:
        notes.append(u"%s: its flake.lock has a %s; every evaluator of the run reads the "
                     u'lock graph the run resolved once, and nothing of it is cached: run '
                     u'`nix flake lock` and commit flake.lock' % (shown, source.lock_note))
    if refused:
        notes.append(refused_note(refused, shown))
    accepted = accepts_flake_config(runner.opts.options, runner.opts.extra_args)
    if accepted:
        # said with or without a cache: it is the threat model's too
        notes.append(ACCEPTED_NOTE)
    if cache is not None and not cache.usable:
        notes.append(u'the evaluation cache %s is not used: %s' % (cache.folder, cache.reason))
    ignored = cache.ignored_note() if cache is not None and cache.usable else None
    if ignored:
        notes.append(ignored)
    if cache is not None and found['impure_config'] and not (
            accepted and found['impure_config'] == ACCEPTED_CONFIG):
        notes.append(u'nothing is cached: %s' % found['impure_config'])
    if found['records_late']:
        notes.append(u'the records for reuse across commits that the job before was still '
                     u'keeping in %s were not done after %d s: the hosts they would have '
                     u'answered are evaluated' % (cache.folder, AFTER_JOB_WAIT))
    why = found['reuse_reasons'].get(source.flake)
    if why:
        notes.append(u'%s: no host is reused across commits (%s); each is evaluated when '
                     u'the flake changes' % (shown, why))
    return notes
