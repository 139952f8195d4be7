# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter nixdeploy.fleet.deploy_stats (documented in deploy_stats.yml)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible import constants as C
from ansible.errors import AnsibleFilterError

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._outcome import outcome_of

# the role's registered results, in the order its tasks run
RESULT_ORDER = (('eval', 'eval'), ('build', 'build'), ('copy', 'copy'),
                ('keys_pre', 'keys'), ('activate', 'activate'), ('keys_post', 'keys'))


def run_id():
    """An id of this ansible-playbook run: its private temp dir's name, the
    same in every worker process of the run and new in each run."""
    return os.path.basename(str(C.DEFAULT_LOCAL_TMP).rstrip('/')) or 'run'


def deploy_stats(results, host, check_mode=False, job_id=None):
    if not isinstance(results, dict):
        raise AnsibleFilterError('deploy_stats expects a dict of registered results, got %s'
                                 % type(results).__name__)
    unknown = sorted(set(results) - set(name for name, _phase in RESULT_ORDER))
    if unknown:
        raise AnsibleFilterError('deploy_stats: unknown result names %s' % ', '.join(unknown))
    pairs = [(phase, results.get(name)) for name, phase in RESULT_ORDER]
    record = outcome_of(u'%s' % host, pairs).record(bool(check_mode))
    job = job_id if job_id not in (None, '') else run_id()
    # set_stats takes only names that are valid variable names
    job = re.sub(r'[^A-Za-z0-9_]', '_', u'%s' % job)
    return {'nixdeploy': {record['host']: record},
            'nixdeploy_job_%s' % job: {record['host']: record}}


class FilterModule(object):

    def filters(self):
        return {'deploy_stats': deploy_stats}
