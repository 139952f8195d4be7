# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter nixdeploy.fleet.deploy_stats (documented in deploy_stats.yml)."""

from ansible.errors import AnsibleFilterError

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stats import custom_stats


def deploy_stats(results, host, check_mode=False, job_id=None):
    if not isinstance(results, dict):
        raise AnsibleFilterError('deploy_stats expects a dict of registered results, got %s'
                                 % type(results).__name__)
    try:
        return custom_stats(results, host, check_mode, job_id)
    except ValueError as exc:
        raise AnsibleFilterError('deploy_stats: %s' % exc)


class FilterModule(object):

    def filters(self):
        return {'deploy_stats': deploy_stats}
