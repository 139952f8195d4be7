# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's deploy outcome as the custom stats ``nixdeploy`` and
``nixdeploy_job_<id>``: for the filter nixdeploy.fleet.deploy_stats (the deploy
role's rescue) and for the phase actions' own results (their option ``record_stats``),
which saves the role a set_stats task per host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._outcome import outcome_of

# the role's registered results, in the order its phases run (the keys are
# uploaded by the activate task, before and after the activation)
RESULT_ORDER = (('eval', 'eval'), ('build', 'build'), ('copy', 'copy'),
                ('keys_pre', 'keys'), ('activate', 'activate'), ('keys_post', 'keys'))


def run_id():
    """An id of this ansible-playbook run: its private temp dir's name, the
    same in every worker process of the run and new in each run."""
    return os.path.basename(str(C.DEFAULT_LOCAL_TMP).rstrip('/')) or 'run'


def custom_stats(results, host, check_mode=False, job_id=None):
    """{'nixdeploy': {host: record}, 'nixdeploy_job_<id>': {host: record}}
    from ``results`` (RESULT_ORDER name -> registered result); ValueError
    names unknown result names."""
    unknown = sorted(set(results) - set(name for name, _phase in RESULT_ORDER))
    if unknown:
        raise ValueError('unknown result names %s' % ', '.join(unknown))
    pairs = [(phase, results.get(name)) for name, phase in RESULT_ORDER]
    record = outcome_of(u'%s' % host, pairs).record(bool(check_mode))
    job = job_id if job_id not in (None, '') else run_id()
    # set_stats takes only names that are valid variable names
    job = re.sub(r'[^A-Za-z0-9_]', '_', u'%s' % job)
    return {'nixdeploy': {record['host']: record},
            'nixdeploy_job_%s' % job: {record['host']: record}}


# the phases whose action can keep the outcome so far (record_stats), in order
RECORDING_PHASES = ('eval', 'build', 'copy', 'activate')


def recorded_results(record, variables):
    """``record_stats`` as given -> (earlier results, job id). A result given
    as a string is the name of the host's variable it was registered as,
    read from ``variables`` (undefined: missing), which saves templating the
    whole result for every host and task; a missing job_id is the variable
    awx_job_id (AWX sets it), if any."""
    results = dict(record)
    job_id = results.pop('job_id', None)
    if job_id is None:
        job_id = variables.get('awx_job_id')
    for name, value in results.items():
        if isinstance(value, str):
            results[name] = variables.get(value) or {}
    return results, job_id


def phase_stats(earlier, phase, own, host, check_mode=False, job_id=None):
    """What a phase's action returns as ``ansible_stats`` (the shape set_stats
    gives, aggregate and not per host) for its successful result ``own``:
    ``earlier`` holds the registered results of the phases before it. The
    activate result carries its keys' results (keys_pre, keys_post)."""
    before = RECORDING_PHASES[:RECORDING_PHASES.index(phase)]
    unknown = sorted(set(earlier) - set(before))
    if unknown:
        raise ValueError('unknown result names %s (%s and job_id are known before %s)'
                         % (', '.join(unknown), ', '.join(before) or 'none', phase))
    results = dict((name, earlier.get(name) or {}) for name in before)
    results[phase] = own
    if phase == 'activate':
        results.update(keys_pre=own.get('keys_pre') or {}, keys_post=own.get('keys_post') or {})
    return {'data': custom_stats(results, host, check_mode, job_id),
            'per_host': False, 'aggregate': True}
