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


REFUSED = ('Failed to connect to the host via ssh: Warning: Permanently added \'10.0.0.2\' '
           '(ED25519) to the list of known hosts.\r\nroot@10.0.0.2: Permission denied '
           '(publickey).')


def test_a_refused_first_login_is_a_failed_host_that_says_key_or_user():
    from ansible.errors import AnsibleConnectionFailure

    def refuse(cmd, sudoable, in_data):
        raise AnsibleConnectionFailure(REFUSED)
    with pytest.raises(NixdeployError) as caught:
        host_of(refuse).sh('true')
    # the host answered: not a lost connection (the summary's "unreachable")
    assert caught.value.connection_lost is False
    lines = str(caught.value).split('\n')
    assert lines[0] == 'ssh login refused for root@10.0.0.2: key or user (Permission denied (publickey))'
    # the way out on its own line
    assert lines[1].startswith('  to fix: the key ssh offers (ansible_ssh_private_key_file')
    assert 'authorized_keys' in lines[1] and len(lines) == 2


CHANGED = ('Failed to connect to the host via ssh: '
           '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n'
           '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n'
           '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n'
           'IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\n'
           'Someone could be eavesdropping on you right now (man-in-the-middle attack)!\r\n'
           'It is also possible that a host key has just been changed.\r\n'
           'The fingerprint for the ED25519 key sent by the remote host is\r\n'
           'SHA256:abcdefabcdefabcdefabcdefabcdefabcdefabcdefa.\r\n'
           'Please contact your system administrator.\r\n'
           'Add correct host key in /root/known_hosts to get rid of this message.\r\n'
           'Offending ED25519 key in /root/known_hosts:2\r\n'
           'Host key for 10.0.0.2 has changed and you have requested strict checking.\r\n'
           'Host key verification failed.')
UNKNOWN = ('Failed to connect to the host via ssh: No ED25519 host key is known for 10.0.0.2 and '
           'you have requested strict checking.\r\nHost key verification failed.')


@pytest.mark.parametrize('said,lines', [
    (CHANGED, ['the host key changed: it does not match known_hosts, refusing to connect',
               '  ssh said: Offending ED25519 key in /root/known_hosts:2',
               '  ssh said: Host key for 10.0.0.2 has changed and you have requested strict '
               'checking.',
               '  ssh said: Host key verification failed.',
               '  to fix: if the host was reinstalled, check its new key and replace its line '
               '(ssh-keygen -R 10.0.0.2 -f <known_hosts>); if not, someone may pose as it']),
    (UNKNOWN, ['host key verification failed: known_hosts has no key of 10.0.0.2',
               '  ssh said: No ED25519 host key is known for 10.0.0.2 and you have requested '
               'strict checking.',
               '  ssh said: Host key verification failed.',
               '  to fix: add its key to the known_hosts file ssh reads, checked against the '
               'host\'s own (ssh-keyscan 10.0.0.2; ssh-keygen -lf on the host)']),
])
def test_a_host_key_ssh_refuses_is_said_in_short_lines(said, lines):
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _diagnosis
    text = _diagnosis.host_key_refusal(said, '10.0.0.2')
    assert text.split('\n') == lines
    # no banner, no carriage return, no line a terminal must wrap
    assert '@@@' not in text and '\r' not in text
    assert max(len(line) for line in lines) <= 200


def test_a_host_key_refused_at_the_first_login_fails_the_host_not_its_connection():
    from ansible.errors import AnsibleConnectionFailure

    def refuse(cmd, sudoable, in_data):
        raise AnsibleConnectionFailure(CHANGED)
    with pytest.raises(NixdeployError) as caught:
        host_of(refuse).sh('true')
    assert caught.value.connection_lost is False
    assert str(caught.value).startswith('the host key changed: it does not match known_hosts')
    # a connection without an ssh address (local here): the fix names none
    assert '(ssh-keygen -R <address> -f <known_hosts>)' in str(caught.value)
