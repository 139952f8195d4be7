"""Issue 61: the report's counts and words agree with the PLAY RECAP and the
exit code (a rolled-back host is a failed host, an unreachable one has its
own tile and colour), its host table keeps the cause of a failure whole,
each run keeps its own report beside the latest one, and a run that has no
result says so instead of leaving an older one looking current."""

import json
import os
import re
import subprocess
import sys

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.report.test_report import (
    ACTIVATE, COPIED, EVAL, SCRIPT, evaluated, fleet_run, validate)

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import (  # noqa: E402
    _report, _report_html, _report_record)


def tiles(page):
    """{label: number} of the page's total cards."""
    section = page.split('<section class="totals">', 1)[1].split('</section>', 1)[0]
    return dict((label, value) for value, label in
                re.findall(r'<div class="card [^"]*"><b>([^<]*)</b><small>([^<]*)</small>', section))


def test_tiles_count_as_the_recap_does():
    # web changed, db rolled back, cache failed building, edge unreachable,
    # lazy only evaluated: the recap says failed=1 for db and cache, unreachable=1 for edge
    report = validate(fleet_run())
    totals = report['totals']
    assert totals['failed_total'] == 2 and totals['rolled_back'] == 1
    assert totals['unreachable'] == 1 and report['hosts']['edge']['unreachable'] is True
    assert report['hosts']['cache']['unreachable'] is False
    # failed and unreachable as the summary and the recap say them (issue
    # 93): edge is unreachable, not also failed; it lost its connection at copy
    assert totals['failed'] == 1 and totals['connection_lost'] == 1
    found = tiles(_report_html.render(report))
    assert found['failed (1 rolled back)'] == '2', found
    assert found['unreachable'] == '1', found
    assert 'rolled back' not in found, found


def test_a_host_a_phase_lost_is_failed_and_drawn_unreachable():
    # the deploy's own actions report a lost connection as a failed result
    # (connection_lost): the recap counts it failed, the page draws it unreachable
    report = fleet_run()
    edge = report['hosts']['edge']
    edge.update(unreachable=False, connection_lost=True)
    report = _report.assemble(report['runs'], report['hosts'])
    assert report['totals']['failed_total'] == 3 and report['totals']['unreachable'] == 0
    page = _report_html.render(validate(report))
    found = tiles(page)
    assert found['failed (1 rolled back, 1 unreachable)'] == '3', found
    assert 'unreachable' not in found, found
    row = page.split('<tr data-host="edge">', 1)[1].split('</tr>', 1)[0]
    assert '<span class="badge unreachable">unreachable</span>' in row, row


def test_unreachable_is_drawn_as_unreachable():
    page = _report_html.render(validate(fleet_run()))
    row = page.split('<tr data-host="edge">', 1)[1].split('</tr>', 1)[0]
    assert '<span class="badge unreachable">unreachable</span>' in row, row
    article = page.split('<article class="unreachable" data-host="edge">', 1)[1]
    assert article.split('</article>')[0].count('unreachable at <b>copy</b>') == 1
    assert '.badge.unreachable { background: var(--unr); }' in page
    assert '2 failed (1 rolled back), 1 unreachable' in page.split('</title>')[0]


def test_the_host_table_keeps_the_cause_whole():
    rec = _report_record.Recorder()
    rec.task_result('broken', 'u1', EVAL, 'failed', dict(
        evaluated('broken'), failed=True, phase='eval',
        msg="broken: evaluating path:/srv/fleet#" + 'x' * 190 +
        " failed: error: attribute 'lab' missing\n       at /nix/store/s/lib.nix:1:2:\n"
        "(use '--show-trace' to show detailed location information)"))
    report = validate(rec.build({'id': 'r', 'limit': None, 'tags': [], 'skip_tags': [],
                                 'diff_mode': False, 'playbooks': [], 'collection_version': None,
                                 'flakes': []}))
    summary = report['hosts']['broken']['summary']
    # and where Nix says it stopped, as the code excerpt it drops said
    assert summary.endswith("failed: error: attribute 'lab' missing (at /nix/store/s/lib.nix:1:2)"), summary
    assert 'show-trace' not in summary
    row = _report_html.render(report).split('<tr data-host="broken">', 1)[1].split('</tr>')[0]
    # broken on spaces into short lines, nothing cut (the quotes escaped as
    # jinja2's autoescape writes them)
    assert 'failed: error: attribute &#39;lab&#39; missing' in row.replace('<br>', ' '), row
    assert '<br>' in row


def test_each_run_keeps_its_report_and_the_latest_is_written_last(tmp_path):
    assert _report.report_names('20261125T210000Z-1a2b3c4d') == [
        'nixdeploy-report-20261125T210000Z-1a2b3c4d', 'nixdeploy-report']
    assert _report.report_names('awx-12', keep=False) == ['nixdeploy-report']
    first, second = fleet_run(), fleet_run()
    second['runs'][0]['id'] = 'run-2'
    for report in (first, second):
        _report.write(report, str(tmp_path), names=_report.report_names(report['runs'][0]['id']),
                      html=_report_html.render)
    assert sorted(os.listdir(str(tmp_path))) == [
        'nixdeploy-report-run-1.html', 'nixdeploy-report-run-1.json',
        'nixdeploy-report-run-2.html', 'nixdeploy-report-run-2.json',
        'nixdeploy-report.html', 'nixdeploy-report.json']
    latest = json.loads((tmp_path / 'nixdeploy-report.json').read_text())
    assert latest['runs'][0]['id'] == 'run-2'
    # a copy (not a link): it reads the same wherever the folder goes
    assert not os.path.islink(str(tmp_path / 'nixdeploy-report.json'))


def test_a_run_without_result_says_so():
    rec = _report_record.Recorder()
    run = {'id': 'r', 'limit': 'vps', 'tags': [], 'skip_tags': [], 'diff_mode': False,
           'playbooks': ['deploy.yml'], 'collection_version': None, 'flakes': []}
    for state, words in (('running', 'has no result (yet)'),
                         ('no_hosts', 'ended without deploying any host')):
        report = validate(rec.empty(run, state))
        assert report['hosts'] == {} and report['runs'][0]['state'] == state
        assert report['runs'][0]['mode'] == 'deploy'
        page = _report_html.render(report)
        assert words in page and '<section class="totals">' not in page


def test_mode_says_check_and_rollback():
    assert validate(fleet_run(check_mode=True))['runs'][0]['mode'] == 'check'
    assert validate(fleet_run())['runs'][0]['state'] == 'done'
    rec = _report_record.Recorder()
    rolled = {'changed': True, 'platform': 'nixos', 'goal': 'switch',
              'previous': {'generation': 5}, 'new': {'generation': 4},
              _report_record.ROLLBACK_MARK: True}
    rec.task_result('web', 'u1', ACTIVATE, 'ok', rolled)
    report = validate(rec.build({'id': 'r', 'limit': None, 'tags': [], 'skip_tags': [],
                                 'diff_mode': False, 'playbooks': ['rollback.yml'],
                                 'collection_version': None, 'flakes': []}))
    assert report['runs'][0]['mode'] == 'rollback'
    assert report['hosts']['web']['summary'] == 'rolled back'
    assert 'rollback</b>' in _report_html.render(report)


def test_merge_says_the_counts_as_the_recap(tmp_path):
    path = tmp_path / 'a.json'
    path.write_text(json.dumps(fleet_run()))
    proc = subprocess.run([sys.executable, SCRIPT, 'merge', '-o', str(tmp_path / 'out'),
                           str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert '5 hosts from 1 runs, 2 failed (1 rolled back), 1 unreachable' in proc.stdout


def test_evaluation_counts_agree_with_the_summary():
    """The summary's closing line counts each host once: evaluated, reused
    or cached. A reused answer also comes from the evaluation cache, but the
    report counts it reused only, as the summary does (the trial's "1
    evaluated, 1 reused" beside evaluations_from_cache 1)."""
    rec = _report_record.Recorder()
    answers = {'web': dict(answered='evaluated', here=True),
               'db': dict(answered='reused', from_cache=True),
               'lazy': dict(answered='cached', from_cache=True)}
    for host, how in answers.items():
        rec.task_result(host, 'u-eval', EVAL, 'ok', evaluated(host, **how))
    report = validate(rec.build({'id': 'r', 'limit': None, 'tags': [], 'skip_tags': [],
                                 'diff_mode': False, 'playbooks': ['deploy.yml'],
                                 'collection_version': None, 'flakes': []}))
    totals = report['totals']
    assert (totals['evaluations_from_cache'], totals['evaluations_reused']) == (1, 1), totals
    label = [k for k in tiles(_report_html.render(report)) if k.startswith('Nix evaluation')]
    assert label == ['Nix evaluation processes, 1 host evaluated, 1 hosts from cache, '
                     '1 reused from an earlier commit'], label


def test_check_mode_shows_no_copy_that_did_not_happen():
    """--check sends nothing: the JSON says 0 sent (what would be sent stays
    in paths_missing, bytes_missing), the page "would copy"."""
    report = validate(fleet_run(check_mode=True))
    assert report['totals']['paths_sent'] == 0 and report['totals']['bytes_sent'] == 0
    web = report['hosts']['web']['copy']
    assert (web['paths_sent'], web['bytes_sent']) == (0, 0), web
    assert web['paths_missing'] > 0, web
    page = _report_html.render(report)
    assert tiles(page)['0 paths copied'] == '0 B', tiles(page)
    row = page.split('<tr data-host="web">', 1)[1].split('</tr>', 1)[0]
    assert 'would copy ' in row, row
    # a real run: what was sent
    page = _report_html.render(validate(fleet_run()))
    row = page.split('<tr data-host="web">', 1)[1].split('</tr>', 1)[0]
    assert 'would copy' not in row and ' in %d paths' % COPIED['paths_sent'] in row, row
