"""The one table of a deploy's phases (module_utils/_phases.py) and what
reads it: the same phases, actions, records and words as each reader wrote
them before the table."""

import sys

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _phases, _record_stats, _role_vars)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import _report  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _outcome, _stats)


def test_the_table():
    assert _phases.NAMES == ('eval', 'build', 'copy', 'keys', 'activate')
    assert _phases.BY_ACTION == {'nix_eval': 'eval', 'nix_build': 'build',
                                 'nix_copy_closure': 'copy', 'nix_keys': 'keys',
                                 'nix_activate': 'activate'}
    assert _phases.STOPPED == {'copy': 'copied', 'build': 'built', 'eval': 'evaluated',
                               'keys': 'copied'}
    assert _phases.RECORDING == ('eval', 'build', 'copy', 'activate')


def test_every_reader_reads_the_table():
    assert _role_vars.PHASES == ('eval', 'build', 'copy', 'activate')
    assert (_role_vars.EVAL, _role_vars.BUILD, _role_vars.COPY, _role_vars.ACTIVATE) == \
        _role_vars.PHASES
    assert _record_stats.PHASES == ('eval', 'build', 'copy')
    assert _stats.RECORDING_PHASES == ('eval', 'build', 'copy', 'activate')
    assert _outcome.PHASE_ORDER == _phases.NAMES and _outcome.PHASES == _phases.BY_ACTION
    assert _report.PHASES == ('eval', 'build', 'copy', 'keys', 'activate', 'confirm', 'checks',
                              'reboot', 'rollback')
