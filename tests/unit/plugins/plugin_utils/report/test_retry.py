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


def test_a_link_in_its_place_is_neither_read_nor_written(tmp_path):
    secret = tmp_path / 'secret'
    secret.write_text('KEY-LINE\n')
    os.chmod(str(secret), 0o600)
    path = tmp_path / 'nixdeploy-unreachable.txt'
    os.symlink(str(secret), str(path))
    try:
        _retry.update(str(path), {'phone': 'no route'}, set())
    except OSError as exc:
        assert 'not a regular file' in str(exc)
    else:
        raise AssertionError('the link was followed')
    assert os.path.islink(str(path)) and secret.read_text() == 'KEY-LINE\n'


def test_a_name_that_selects_other_hosts_is_left_out():
    import tempfile
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, 'nixdeploy-unreachable.txt')
    assert _retry.update(path, {'all': 'x', '*': 'x', 'web:db': 'x', 'a\nb': 'x', 'ok-1.b': 'x'},
                         set()) == ['ok-1.b']
