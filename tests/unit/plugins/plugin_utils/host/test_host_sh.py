"""Host.sh (plugin_utils/host/_host.py), the one way a program runs on a
target: every call has a time limit, so a session over a dead link fails the
host as a lost connection instead of hanging its task."""

import sys
import time
from types import SimpleNamespace

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import (  # noqa: E402
    NixdeployError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (  # noqa: E402
    PROGRAM_TIMEOUT, Host, NoAnswer)


def host_of(execute):
    return Host.of_task(SimpleNamespace(transport='local'), {}, execute)


def test_a_program_answers_with_rc_stdout_stderr_and_gets_its_stdin():
    seen = {}

    def execute(cmd, sudoable, in_data):
        seen.update(cmd=cmd, sudoable=sudoable, in_data=in_data)
        return {'rc': 3, 'stdout': 'out', 'stderr': 'err'}
    assert host_of(execute).sh('echo hi', in_data='paths\n', sudoable=True) == (3, 'out', 'err')
    assert seen == {'cmd': '{\necho hi\n}', 'sudoable': True, 'in_data': 'paths\n'}


def test_a_program_without_an_answer_is_a_lost_connection_of_the_family():
    with pytest.raises(NoAnswer, match='no answer from the host within 0.1s') as caught:
        host_of(lambda cmd, sudoable, in_data: time.sleep(3)).sh('true', timeout=0.1)
    assert isinstance(caught.value, NixdeployError) and caught.value.connection_lost is True


def test_every_call_has_a_limit_by_default():
    assert Host.sh.__defaults__[-1] == PROGRAM_TIMEOUT and 0 < PROGRAM_TIMEOUT < 3600
