# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter nixdeploy.fleet.summary_line (documented in summary_line.yml)."""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _outcome

FIELDS = ('host', 'platform', 'before', 'after', 'outcome')


def summary_line(record):
    if not isinstance(record, Mapping):
        raise AnsibleFilterError('summary_line expects a dict (%s), got %s'
                                 % (', '.join(FIELDS), type(record).__name__))
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise AnsibleFilterError('summary_line: unknown keys %s' % ', '.join(unknown))
    rec = dict((name, record.get(name)) for name in FIELDS)
    for name in ('host', 'platform', 'outcome'):
        if rec[name] in (None, ''):
            rec[name] = '-'
    return _outcome.summary_line(rec)


class FilterModule(object):

    def filters(self):
        return {'summary_line': summary_line}
