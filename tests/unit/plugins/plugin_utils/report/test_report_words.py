"""Issue 93, item 6: one count and one word everywhere. The summary's
closing line, the JSON's totals and the page say the same of the same hosts:
failed, rolled back and unreachable apart, a host the login probe never
reached counted as no lost connection, a host that another run activated
meanwhile unchanged with its build said, sections named for what they hold,
an outcome that does not repeat its badge, and evaluation processes told
from hosts evaluated. One run, with the result shapes the actions return."""

import re
import sys

from tests.collection import collections_path
from tests.unit.plugins.callback import test_summary
from tests.unit.plugins.plugin_utils.report.test_report import (
    ACTIVATE, BUILD, COPY, COPIED, EVAL, activated, evaluated, validate)
from tests.unit.plugins.plugin_utils.report.test_report_counts import tiles

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import (  # noqa: E402
    _report_html, _report_record)

# the new user's table in one run: web switched, db rolled back, cache failed
# building, edge never reached by the login probe, twin found its system
# already active (a second deploy at once: the first one activated it)
NEVER_REACHED = {'unreachable': True, 'changed': False, 'unreachable_at': ['10.0.0.9'],
                 'msg': 'edge: the login probe reached edge at none of its addresses: '
                        '10.0.0.9: No route to host'}
BUILD_FAILED = {'failed': True, 'phase': 'build', 'connection_lost': False,
                'msg': "cache: build of system failed: error: builder for '/nix/store/x.drv' "
                       'failed with exit code 1'}
ROLLED_BACK = activated(rolled_back=True, failed=True, phase='confirm',
                        rollback_reason='no confirmation within 30s',
                        msg='db: rolled back: no confirmation within 30s')
# (host, phase, action, status, result) in the order they arrive
RESULTS = [
    ('edge', 'eval', EVAL, 'unreachable', NEVER_REACHED),
] + [(host, 'eval', EVAL, 'ok', evaluated(host, here=host == 'web', answered='evaluated'))
     for host in ('web', 'db', 'cache', 'twin')] + [
    ('cache', 'build', BUILD, 'failed', BUILD_FAILED),
] + [(host, 'build', BUILD, 'ok', {'changed': True}) for host in ('web', 'db', 'twin')] + [
    (host, 'copy', COPY, 'ok', COPIED) for host in ('web', 'db', 'twin')] + [
    ('web', 'activate', ACTIVATE, 'ok', activated()),
    ('db', 'activate', ACTIVATE, 'failed', ROLLED_BACK),
    ('twin', 'activate', ACTIVATE, 'ok', activated(changed=False)),
]


def report():
    rec = _report_record.Recorder()
    for host, phase, action, status, result in RESULTS:
        rec.task_start(host, 'u-' + phase, action)
        rec.task_result(host, 'u-' + phase, action, status, dict(result))
    return validate(rec.build({'id': 'run-1', 'limit': None, 'tags': [], 'skip_tags': [],
                               'diff_mode': False, 'playbooks': ['deploy.yml'],
                               'collection_version': '0.2.0', 'flakes': []}))


def summary_lines():
    callback = test_summary.Summary(display=test_summary.Display())
    callback.v2_playbook_on_play_start(test_summary.Play())
    for host, phase, _action, status, result in RESULTS:
        getattr(callback, 'v2_runner_on_%s' % ('ok' if status == 'ok' else status))(
            test_summary.Result(host, phase, dict(result)))
    callback.v2_playbook_on_stats(None)
    return callback._display.text()


def test_the_summary_the_json_and_the_page_count_the_same_hosts():
    lines = summary_lines()
    assert lines[-2] == ('nixdeploy: 5 hosts: 2 failed (1 rolled back), 1 unreachable, 1 changed, '
                         "1 unchanged (1 built or copied in this run: the recap's changed)"), lines
    assert lines[-3] == 'nixdeploy: evaluation: 4 evaluated, 0 reused, 0 cached', lines
    twin = [line for line in lines if line.startswith('twin ')][0]
    # the outcome is the word a program filters on (the custom stat, AWX):
    # the closing line above says why the recap counts the host changed
    assert twin.endswith(' unchanged'), twin
    made = report()
    totals = made['totals']
    # failed and unreachable as the closing line: edge in unreachable only
    assert (totals['failed'], totals['rolled_back'], totals['unreachable'],
            totals['failed_total'], totals['changed'], totals['unchanged']) == (1, 1, 1, 2, 1, 1)
    # edge never had a connection to lose
    assert made['hosts']['edge']['connection_lost'] is False and totals['connection_lost'] == 0
    assert made['hosts']['twin']['summary'] == twin.split(None, 6)[-1]
    page = _report_html.render(made)
    found = tiles(page)
    assert (found['failed (1 rolled back)'], found['unreachable'], found['changed'],
            found['unchanged']) == ('2', '1', '1', '1'), found
    # processes, not hosts, and the hosts the console's "4 evaluated" counts
    assert found['Nix evaluation processes, 4 hosts evaluated'] == '1', found


def test_the_page_names_its_sections_and_outcomes_by_what_they_hold():
    page = _report_html.render(report())
    heading = re.search(r'<section class="attention" id="attention"><h2>([^<]*)</h2>', page)
    assert heading.group(1) == 'Failed (1), rolled back (1), unreachable (1)', heading
    rows = dict(re.findall(r'<tr data-host="([^"]+)">.*?<span class="badge [^"]*">[^<]*</span> '
                           r'([^<]*)', page))
    assert rows['cache'].startswith('at build: build of system failed'), rows
    assert rows['db'] == 'no confirmation within 30s', rows
    assert rows['edge'].startswith('the login probe reached edge at none'), rows
    assert 'FAILED' not in ''.join(rows.values()), rows


class ChannelResult(test_summary.Result):
    """A result of the publish role's nix_channel task (not a deploy phase)."""

    def __init__(self, host, data):
        super(ChannelResult, self).__init__(host, 'eval', data)
        self._task.resolved_action = 'nixdeploy.fleet.nix_channel'


def test_a_publish_run_says_what_it_did_with_the_channel_refs():
    callback = test_summary.Summary(display=test_summary.Display())
    callback.v2_playbook_on_play_start(test_summary.Play())
    moves = {'web': 'moved', 'db': 'moved', 'cache': 'new'}
    for host in sorted(moves):
        callback.v2_runner_on_ok(test_summary.Result(host, 'eval', evaluated(host)))
        callback.v2_runner_on_ok(test_summary.Result(host, 'build', {'changed': True}))
        # the pin (state=query) says nothing moved: no status
        callback.v2_runner_on_ok(ChannelResult(host, {'changed': False, 'revision': 'a' * 40}))
        callback.v2_runner_on_ok(ChannelResult(host, {
            'changed': True, 'moved': True, 'status': moves[host], 'revision': 'b' * 40,
            'ref': 'refs/heads/nixos-tested-%s' % host}))
    callback.v2_playbook_on_stats(None)
    assert callback._display.text()[-1] == (
        'nixdeploy: 3 hosts: 0 failed, 0 changed, 0 unchanged, 3 not activated, '
        'channel refs: 2 moved, 1 new'), callback._display.text()
