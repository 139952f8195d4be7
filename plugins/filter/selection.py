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

A run started outside the fleet's folder (no ansible.cfg read, or one whose
inventory holds no file of the nix plugin) is said apart, in one line with
the folder to ``cd`` to, and ends the run with exit code 1, as an inventory
that fails to parse does: ansible-core would wrap an error raised here in
its words about the play's ``hosts:`` keyword, quoting the collection's
playbook, with the exit code it gives unreachable hosts (4).
"""

import os
import stat
import sys

from ansible import constants as C
from ansible import context
from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_folder import (
    cd_hint, is_fleet_source)

# the exit code of a run that stopped before any play: ansible-playbook's
# for an inventory that does not parse (docs/troubleshooting.md)
WRONG_FOLDER_RC = 1


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
        wrong = wrong_folder(os.getcwd())
        if wrong:
            # one line, and the run ends here (the module docstring)
            Display().error(wrong)
            sys.exit(WRONG_FOLDER_RC)
        cause = ("the inventory holds no host (did the flake's inventory fail to parse? "
                 "see the warnings above)")
    elif limit:
        cause = '-l %s matched none of the %s of the inventory' % (limit, _count(inventory))
    else:
        cause = 'the play selected none of the %s of the inventory' % _count(inventory)
    raise AnsibleFilterError('no host to %s: %s' % (what, cause))


def wrong_folder(cwd):
    """The line that says the run is not in the fleet's folder, or None:
    Ansible read no ansible.cfg, or its inventory sources hold no file of
    the nix plugin (another project's, /etc/ansible/hosts). An inventory of
    the fleet's that parsed to no host (``-i inventory/`` from elsewhere) is
    not a wrong folder: its warnings say why."""
    sources = [s for s in (context.CLIARGS or {}).get('inventory') or C.DEFAULT_HOST_LIST or ()
               if s and ',' not in s]
    if any(is_fleet_source(s) for s in sources):
        return None
    config = C.CONFIG_FILE
    if not config and os.path.isfile(os.path.join(cwd, 'ansible.cfg')) and \
            os.stat(cwd).st_mode & stat.S_IWOTH:
        # ansible-core skips it and says so in a warning of its own
        return ('Ansible read no ansible.cfg: it ignores the one in %s, a world-writable folder; '
                'chmod o-w %s and run again' % (cwd, cwd))
    if not config:
        return ('wrong folder: Ansible read no ansible.cfg in %s, so it has no inventory of your '
                'fleet; %s' % (cwd, cd_hint(cwd)))
    if sources:
        return ('wrong folder: the inventory %s (from %s) holds no host and no .nix.yml file of '
                'the nixdeploy.fleet.nix plugin; %s'
                % (', '.join(sources), config, cd_hint(cwd, [os.path.dirname(config)])))
    return None


class FilterModule(object):

    def filters(self):
        return {'selection': selection}
