"""The plain-data helpers every plugin shares (plugin_utils/common/_data.py):
numbers read from text or JSON, files written whole."""

import json
import os
import stat
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _data  # noqa: E402


@pytest.mark.parametrize('value, number', [
    (3, 3), ('41', 41), (' 7\n', 7), (2.9, 2), ('0', 0),
    (None, None), ('', None), ('4x', None), ('2.5', None), ([1], None), ({}, None),
    (True, None), (False, None),   # a flag is no number
])
def test_to_int(value, number):
    assert _data.to_int(value) == number


def test_write_json_replaces_the_file_whole(tmp_path):
    path = str(tmp_path / 'batch.json')
    _data.write_json(path, {'web1': {'gen': 1}})
    with open(path) as handle:
        first = handle
        _data.write_json(path, [1, 2])
        # a reader that opened the old file reads it whole: the new one is another file
        assert json.load(first) == {'web1': {'gen': 1}}
    with open(path) as handle:
        assert json.load(handle) == [1, 2]
    assert os.listdir(str(tmp_path)) == ['batch.json']
    # private by default (the batch files hold every host's results)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_write_atomic_mode_and_no_leftovers(tmp_path):
    path = str(tmp_path / 'report.html')
    _data.write_atomic(path, u'<p>caf\u00e9</p>\n', 0o644)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with pytest.raises(TypeError):
        _data.write_atomic(path, object())
    with pytest.raises(TypeError):
        _data.write_json(path, {'x': object()})
    # the old file stays, no temp file is left beside it
    assert os.listdir(str(tmp_path)) == ['report.html']
    with open(path) as handle:
        assert handle.read() == u'<p>caf\u00e9</p>\n'


def test_write_atomic_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _data.write_atomic('plain.txt', 'x')
    assert (tmp_path / 'plain.txt').read_text() == 'x'
