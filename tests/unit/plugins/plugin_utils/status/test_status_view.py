"""The status run's textfile read back by Prometheus's own reference parser,
whatever the host names hold, and the totals' order (worst first). The
classes themselves are the lab's to prove (tests/integration/roles/test_status_role.py)."""

import sys

from prometheus_client.parser import text_string_to_metric_families

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import (  # noqa: E402
    _status_class, _status_view)

HOSTS = {
    'web1': {'class': 'pending', 'generation': 41, 'last_deploy': {'when': 1795335681}},
    # names a label must escape: a quote, a backslash, a newline
    'odd"name\\x\ny': {'class': 'in_sync', 'generation': 3, 'last_deploy': None},
    'off': None,
}


def samples():
    found = {}
    for family in text_string_to_metric_families(_status_view.metrics(HOSTS)):
        assert family.type == 'gauge', family
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_the_textfile_parses_back_to_every_host_and_class():
    found = samples()
    ones = dict((labels['host'], labels['class']) for labels, value
                in found['nixdeploy_status_class'] if value == 1)
    assert ones == {'web1': 'pending', 'odd"name\\x\ny': 'in_sync', 'off': 'unreachable'}
    # one gauge per host and class
    assert len(found['nixdeploy_status_class']) == len(HOSTS) * len(_status_class.NAMES)
    assert dict((labels['host'], value) for labels, value
                in found['nixdeploy_status_generation']) == {'web1': 41, 'odd"name\\x\ny': 3}
    assert found['nixdeploy_status_last_deploy_timestamp_seconds'] == [
        ({'host': 'web1'}, 1795335681.0)]


def test_totals_are_worst_first_and_leave_out_empty_classes():
    assert _status_view.totals(['in_sync', 'pending', 'unreachable', 'in_sync']) == [
        ('unreachable', 1), ('pending', 1), ('in_sync', 2)]
