"""The filter nixdeploy.fleet.summary_line: the summary callback's line for a
role that prints its own summary (the rollback role; its lab test:
tests/integration/roles/test_deploy_role.py)."""

import sys

import pytest
from ansible.errors import AnsibleFilterError

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.filter import summary_line as plugin  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _outcome  # noqa: E402

summary_line = plugin.FilterModule().filters()['summary_line']


def test_the_callbacks_line():
    rec = {'host': 'web1', 'platform': 'nixos', 'before': 2, 'after': 1,
           'outcome': 'rolled back'}
    assert summary_line(rec) == _outcome.summary_line(rec)
    assert summary_line(rec) == 'web1           nixos         gen   2 -> 1   rolled back'


def test_missing_values_are_dashes():
    assert summary_line({'host': 'h', 'platform': None, 'before': '', 'outcome': 'unchanged'}) \
        == 'h              -             gen   - -> -   unchanged'
    # what the rollback role passes when it knows no generation
    assert summary_line({'host': 'h', 'platform': '-', 'before': '-', 'after': '-',
                         'outcome': 'unchanged'}).split() == [
        'h', '-', 'gen', '-', '->', '-', 'unchanged']


def test_bad_input_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match='expects a dict'):
        summary_line(['web1'])
    with pytest.raises(AnsibleFilterError, match='unknown keys generation'):
        summary_line({'host': 'h', 'generation': 2})


def test_the_line_is_escaped_for_a_terminal():
    """The rollback role prints these lines: a host name or outcome with
    terminal sequences shows them, never obeys them."""
    line = summary_line({'host': 'evil\n\x1b[2Kweb2', 'platform': 'nixos', 'before': 1,
                         'after': '\x1b[32m2', 'outcome': 'rolled back (\x1b]52;c;eA==\x07)'})
    assert line == ('evil\\n\\x1b[2Kweb2 nixos         gen   1 -> \\x1b[32m2 '
                    'rolled back (\\x1b]52;c;eA==\\x07)')
