# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's deploy outcome as the custom stats ``nixdeploy`` and
``nixdeploy_job_<id>``: for the filter nixdeploy.fleet.deploy_stats (the deploy
role's rescue) and for the phase actions' own results (their option ``record_stats``),
which saves the role a set_stats task per host."""

import hashlib
import json
import os
import re
from collections.abc import Mapping

from ansible import constants as C
from ansible.utils.vars import isidentifier

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.module_utils import _phases
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_atomic
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidValue
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._folders import private_folder
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._outcome import outcome_of

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
        raise InvalidValue('unknown result names %s' % ', '.join(unknown))
    pairs = [(phase, results.get(name)) for name, phase in RESULT_ORDER]
    record = outcome_of(u'%s' % host, pairs).record(bool(check_mode))
    job = job_id if job_id not in (None, '') else run_id()
    # set_stats takes only names that are valid variable names
    job = re.sub(r'[^A-Za-z0-9_]', '_', u'%s' % job)
    return {'nixdeploy': {record['host']: record},
            'nixdeploy_job_%s' % job: {record['host']: record}}


# the phases whose action can keep the outcome so far (record_stats), in order
RECORDING_PHASES = _phases.RECORDING


def record_problems(record, phase, variables):
    """What is wrong with ``record_stats`` (validated against its spec,
    module_utils/_record_stats.py) for an action of ``phase``, as messages
    naming the key; checked with the arguments, before anything runs: a
    record that cannot be made must not fail a host after its phase's work."""
    problems = []
    before = RECORDING_PHASES[:RECORDING_PHASES.index(phase)]
    for key in ('registered', 'results'):
        for name, value in sorted((record.get(key) or {}).items()):
            if value is None:
                continue
            where = 'record_stats.%s.%s' % (key, name)
            if name not in before:
                problems.append('%s: %s is no phase before %s (before it: %s)'
                                % (where, name, phase, ', '.join(before)))
            elif key == 'registered' and not isidentifier(value):
                problems.append('%s: %r is not a variable name' % (where, value))
            elif key == 'registered' and not isinstance(variables.get(value, {}), Mapping):
                problems.append('%s: the variable %s holds no registered result (%s)'
                                % (where, value, type(variables.get(value)).__name__))
    return problems


def recorded_results(record, variables):
    """``record_stats`` (validated, see record_problems) -> (earlier results,
    job id). ``registered`` names the host's variables the results were
    registered as, read from ``variables`` (undefined: missing), which saves
    templating the whole result for every host and task; ``results`` holds
    them as they are. A missing job_id is the variable awx_job_id (AWX sets
    it), if any."""
    job_id = record.get('job_id')
    if job_id is None:
        job_id = variables.get('awx_job_id')
    results = dict((name, value) for name, value in (record.get('results') or {}).items()
                   if value is not None)
    for name, variable in (record.get('registered') or {}).items():
        if variable is not None:
            results[name] = variables.get(variable) or {}
    return results, job_id


def phase_stats(earlier, phase, result, host, check_mode=False, job_id=None):
    """What a phase's action returns as ``ansible_stats`` (the shape set_stats
    gives, aggregate and not per host) for its successful result ``own``:
    ``earlier`` holds the registered results of the phases before it. The
    activate result carries its keys' results (keys_pre, keys_post)."""
    before = RECORDING_PHASES[:RECORDING_PHASES.index(phase)]
    unknown = sorted(set(earlier) - set(before))
    if unknown:
        raise InvalidValue('unknown result names %s (%s and job_id are known before %s)'
                           % (', '.join(unknown), ', '.join(before) or 'none', phase))
    results = dict((name, earlier.get(name) or {}) for name in before)
    results[phase] = result
    if phase == 'activate':
        results.update(keys_pre=result.get('keys_pre') or {}, keys_post=result.get('keys_post') or {})
    return {'data': custom_stats(results, host, check_mode, job_id),
            'per_host': False, 'aggregate': True}


# Hosts the login probe could not reach (plugin_utils/task/_reach.py) run no
# task after it (Ansible ends them), so their own results never carry their
# record: each one's is kept in a file of the run, and the next successful
# recording result of any host carries it (it takes the file first, so one
# result does; the stats merge by host). A workflow's next node reads every
# host's outcome.
def _unreached_folder():
    return os.path.join(C.DEFAULT_LOCAL_TMP, _run_files.UNREACHED_FOLDER)


def keep_unreached(host, result):
    """Keep the eval ``result`` of ``host``, which the probe reached nowhere."""
    folder = private_folder(_unreached_folder())
    path = os.path.join(folder, hashlib.sha256(host.encode('utf-8')).hexdigest()[:32])
    write_atomic(path, json.dumps({'host': host, 'result': result}, default=str))


def with_unreached(stats, check_mode=False, job_id=None):
    """``stats`` (phase_stats' shape) with the record of each host the probe
    reached nowhere this run that no result carried yet added."""
    folder = _unreached_folder()
    try:
        names = [n for n in os.listdir(folder) if '.' not in n]
    except OSError:
        return stats
    for name in sorted(names):
        path = os.path.join(folder, name)
        try:
            # taken: no other result carries it again
            os.rename(path, path + '.carried')
            with open(path + '.carried') as handle:
                kept = json.load(handle)
        except (OSError, ValueError):
            continue
        for key, records in custom_stats({'eval': kept['result']}, kept['host'], check_mode,
                                         job_id).items():
            stats['data'].setdefault(key, {}).update(records)
    return stats
