"""plugin_utils/report/_retry.py: the file of unreachable hosts for
``-l @nixdeploy-unreachable.txt`` keeps what a limited run did not try, takes
out what it reached, and goes when no host is left."""

import os
import sys

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import _retry  # noqa: E402


def test_the_file_follows_the_runs(tmp_path):
    path = str(tmp_path / 'nixdeploy-unreachable.txt')
    assert _retry.update(path, {'phone': 'no route', 'laptop': 'timeout'}, set()) == \
        ['laptop', 'phone']
    with open(path) as handle:
        assert handle.read() == 'laptop\nphone\n'
    # a run limited to the laptop reaches it: the phone, not tried, stays
    assert _retry.update(path, {}, {'laptop'}) == ['phone']
    # a new host off, the phone still off: once each
    assert _retry.update(path, {'phone': 'no route', 'mac': 'timeout'}, {'web1'}) == \
        ['mac', 'phone']
    assert _retry.update(path, {}, {'phone', 'mac'}) == []
    assert not os.path.exists(path)
    # nothing to say, nothing written
    assert _retry.update(path, {}, set()) == [] and not os.path.exists(path)


def test_the_closing_line_names_each_host_escaped_and_the_way_to_retry():
    line = _retry.line({'pho\x1bne': 'no route', 'mac': 'timeout'}, 'nixdeploy-unreachable.txt')
    assert line == ('nixdeploy: 2 unreachable (nothing was built or copied for them): mac, '
                    'pho\\x1bne; to try again: -l @nixdeploy-unreachable.txt')
    assert _retry.line({}, 'x') is None
    assert _retry.line({'mac': ''}, None).endswith('for it): mac')
