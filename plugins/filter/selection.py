# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter nixdeploy.fleet.selection (documented in selection.yml).

The playbooks template their ``hosts:`` through it. A play with no host
runs no task, so nothing inside it can fail a run that selected nothing, and
ansible-playbook itself only warns ("provided hosts list is empty") and
exits 0 when the inventory failed to parse under an ansible.cfg without
``[inventory] unparsed_is_failed``. ansible-core templates a play's
``hosts:`` once, before the play, with ``ansible_play_hosts_all`` (the hosts
of ``all`` after ``-l``): an error raised here stops the run with rc 4 and
one sentence, and nothing is added per host.
"""

from ansible import context
from ansible.errors import AnsibleFilterError


def _count(hosts):
    return '1 host' if len(hosts) == 1 else '%d hosts' % len(hosts)


def selection(selected, what='deploy', inventory=None, limit=None):
    """``all`` when ``selected`` names a host; else AnsibleFilterError saying
    why nothing was selected."""
    if not isinstance(selected, (list, tuple)):
        raise AnsibleFilterError('selection expects the list ansible_play_hosts_all, got %s'
                                 % type(selected).__name__)
    if selected:
        return 'all'
    # `ansible-playbook --syntax-check` (ansible-lint) templates the play's
    # hosts as a run does, often without an inventory: it checks the syntax,
    # not the selection
    if (context.CLIARGS or {}).get('syntax'):
        return 'all'
    inventory = list(inventory or ())
    if not inventory:
        cause = ("the inventory holds no host (did the flake's inventory fail to parse? "
                 "see the warnings above)")
    elif limit:
        cause = '-l %s matched none of the %s of the inventory' % (limit, _count(inventory))
    else:
        cause = 'the play selected none of the %s of the inventory' % _count(inventory)
    raise AnsibleFilterError('no host to %s: %s' % (what, cause))


class FilterModule(object):

    def filters(self):
        return {'selection': selection}
