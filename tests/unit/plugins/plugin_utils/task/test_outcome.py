"""plugin_utils/task/_outcome.py: a host's deploy outcome read from result keys
(failed, phase, rolled_back, connection_lost), never from message text."""

import sys
from types import SimpleNamespace

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _outcome  # noqa: E402


def outcome(*results, check_mode=False):
    host = _outcome.HostOutcome('web1')
    for phase, result, status in results:
        host.add(phase, result, status)
    return host.record(check_mode=check_mode)


def activated(goal, changed=True, **extra):
    return dict({'goal': goal, 'changed': changed, 'platform': 'nixos',
                 'previous': {'generation': 3}, 'new': {'generation': 4}}, **extra)


@pytest.mark.parametrize('goal,word', [('switch', 'switched'), ('boot', 'boot default set'),
                                       ('test', 'activated (test)')])
def test_a_done_activation_says_what_its_goal_did(goal, word):
    rec = outcome(('copy', {}, 'ok'), ('activate', activated(goal), 'changed'))
    assert rec['outcome'] == word and (rec['before'], rec['after']) == (3, 4)
    assert _outcome.summary_line(rec).split() == ['web1', 'nixos', 'gen', '3', '->', '4'] + \
        word.split()


def test_unchanged_check_mode_and_dry_activate():
    assert outcome(('activate', activated('switch', changed=False), 'ok'))['outcome'] == \
        'unchanged'
    assert outcome(('activate', activated('switch'), 'changed'), check_mode=True)['outcome'] == \
        'would switch'
    dry = activated('dry-activate', changed=False, would_change=True)
    assert outcome(('activate', dry, 'ok'))['outcome'] == 'dry-activated: would change'


def test_a_rollback_is_read_from_its_keys_not_from_the_message():
    failed = {'failed': True, 'rolled_back': True, 'rollback_reason': 'checks failed',
              'msg': 'web1: something unrelated'}
    rec = outcome(('activate', failed, 'failed'))
    assert rec['rolled_back'] and rec['outcome'] == 'FAILED: rolled back (checks failed)'
    # the words "rolled back" in a message do not make one
    words = {'failed': True, 'msg': 'web1: rolled back: no'}
    rec = outcome(('activate', words, 'failed'))
    assert not rec['rolled_back'] and rec['outcome'] == 'FAILED at activate: rolled back: no'


def test_a_lost_connection_reads_as_unreachable_whoever_reports_it():
    lost = {'failed': True, 'connection_lost': True, 'phase': 'copy',
            'msg': 'web1: connection lost: ssh: connect to host 10.0.0.2 port 22: timed out'}
    rec = outcome(('eval', {}, 'ok'), ('copy', lost, 'failed'))
    assert rec['connection_lost'] and rec['outcome'].startswith('FAILED at copy: unreachable: ')
    rec = outcome(('copy', {'msg': 'ssh: no route'}, 'unreachable'))
    assert rec['connection_lost'] and rec['outcome'] == 'FAILED at copy: unreachable: ssh: no route'


def test_a_deploy_that_stopped_before_activating():
    assert outcome(('eval', {}, 'ok'), ('build', {}, 'ok'))['outcome'] == 'built (not activated)'


def test_the_generation_the_probe_read_is_the_before_of_a_host_that_never_activated():
    probed = {'probe': {'address': '10.0.0.2', 'generation': 7}}
    failed = {'failed': True, 'msg': 'web1: build of system failed'}
    rec = outcome(('eval', probed, 'ok'), ('build', failed, 'failed'))
    assert (rec['before'], rec['after']) == (7, 7), rec
    assert _outcome.summary_line(rec).split()[2:6] == ['gen', '7', '->', '7'], rec
    stopped = outcome(('eval', probed, 'ok'), ('build', {}, 'ok'))
    assert (stopped['before'], stopped['after']) == (7, 7), stopped
    # the activation's own word wins; a host never reached has none
    rec = outcome(('eval', probed, 'ok'), ('activate', activated('switch'), 'changed'))
    assert (rec['before'], rec['after']) == (3, 4), rec
    rec = outcome(('eval', {'probe': {'address': None}, 'msg': 'off'}, 'unreachable'))
    assert (rec['before'], rec['after']) == (None, None), rec
    # only a number is a generation (the result is data from the run)
    assert _outcome.known_before({}, {'probe': {'generation': True}}) is None


# What a hostile flake or target puts where the summary line shows it: a host
# name that ends the line and erases the one above (its own line then reads
# as another host's), a message that writes the clipboard (OSC 52), moves the
# cursor up and prints a forged `switched` line.
EVIL_HOST = 'evil\n\x1b[2Kweb2           nixos         gen   1 -> 2   switched'
OSC52 = '\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07'
FORGED_MSG = 'health check failed: %s\x1b[1A\x1b[2K\rweb3  nixos  gen 1 -> 2  switched\u2028' % OSC52


def test_the_summary_line_shows_host_names_and_target_text_escaped():
    host = _outcome.HostOutcome(EVIL_HOST)
    # a message as a result may carry it unescaped (Ansible's own, a callback's)
    host.add('activate', {'failed': True, 'phase': 'activate', 'platform': 'nix\x1bos',
                          'msg': FORGED_MSG}, 'failed')
    rec = host.record()
    # the record is data: the report's JSON keeps what came
    assert rec['host'] == EVIL_HOST and OSC52 in rec['outcome']
    line = _outcome.summary_line(rec)
    assert '\n' not in line and '\r' not in line and '\x1b' not in line and '\x07' not in line
    assert '\u2028' not in line
    assert line.startswith('evil\\n\\x1b[2Kweb2 ')
    assert '\\x1b]52;c;Y3VybCBldmlsLnNofHNo\\x07\\x1b[1A\\x1b[2K\\rweb3' in line
    assert 'nix\\x1bos' in line


def test_the_host_prefix_is_taken_off_escaped_or_not():
    # host_message writes the name printable; an Ansible message has it as is
    for prefix in ('a\\x1bb', 'a\x1bb'):
        host = _outcome.HostOutcome('a\x1bb')
        host.add('copy', {'failed': True, 'msg': '%s: ssh: no route' % prefix}, 'failed')
        assert host.record()['outcome'] == 'FAILED at copy: ssh: no route'


def test_a_failed_results_internals_under_details_are_read_where_readers_look():
    """A failed result printed to people keeps its internals under
    ``details``; the callbacks (result_data) and the records read them at
    the top level as before, a key of the result's own winning."""
    result = {'failed': True, 'msg': 'web1: evaluating failed: error: x', 'phase': 'eval',
              'play_hosts': 3, 'nix_processes': 2, 'evaluation': {'budget_mb': 4096},
              'platform': 'nixos'}
    _outcome.details_apart(result, ('play_hosts', 'nix_processes', 'evaluation', 'absent'))
    assert sorted(result) == ['details', 'failed', 'msg', 'phase', 'platform']
    assert result['details'] == {'play_hosts': 3, 'nix_processes': 2,
                                 'evaluation': {'budget_mb': 4096}}
    seen = _outcome.result_data(SimpleNamespace(_return_data=result))
    assert seen['play_hosts'] == 3 and seen['nix_processes'] == 2 and seen['details']
    assert _outcome.with_details(dict(result, play_hosts=9))['play_hosts'] == 9
    # a result without details is the same dict
    plain = {'changed': True}
    assert _outcome.result_data(SimpleNamespace(_result=plain)) is plain
    rec = _outcome.outcome_of('web1', [('eval', result)]).record()
    assert rec['failed'] and rec['phase'] == 'eval' and rec['platform'] == 'nixos'
