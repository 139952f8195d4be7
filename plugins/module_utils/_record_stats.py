# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option ``record_stats`` of nix_build, nix_copy_closure and nix_activate:
its one argument spec (documented by the doc fragment nixdeploy.fleet.record_stats).

Each key means one thing: ``registered`` names the variables the earlier
phases' results were registered as, ``results`` gives those results
themselves, ``job_id`` the AWX job id. plugin_utils/task/_stats.py makes the
record; the action base checks the option with the other arguments, before
anything runs on the target.

The modules' argument specs (``_specs``: build, copy, activate) take ``OPTION`` as
their entry ``record_stats``: the action base and the module's ``main()``
(which validate-modules checks the documentation against) read the same spec.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _phases

# the deploy phases whose results a later phase's record is made of, in order:
# the phases that record, but the last (module_utils/_phases.py)
PHASES = _phases.RECORDING[:-1]

OPTION = {
    'type': 'dict',
    'options': {
        'registered': {'type': 'dict', 'options': dict((phase, {'type': 'str'}) for phase in PHASES)},
        'results': {'type': 'dict', 'options': dict((phase, {'type': 'dict'}) for phase in PHASES)},
        'job_id': {'type': 'str'},
    },
    'mutually_exclusive': [['registered', 'results']],
}
