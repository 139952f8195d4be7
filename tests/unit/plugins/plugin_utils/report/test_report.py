"""The report's records, schema, merge and page, from result dicts shaped as
the collection's actions return them (the lab tests feed real ones)."""

import json
import os
import subprocess
import sys
from html.parser import HTMLParser

import jsonschema
import pytest

from tests.collection import REPO, collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_output import (  # noqa: E402
    flake_metadata)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import (  # noqa: E402
    _report, _report_html, _report_record)

SCHEMA_PATH = os.path.join(REPO, 'docs', 'report.schema.json')
SCRIPT = os.path.join(REPO, 'plugins', 'plugin_utils', 'report', '_report.py')
EVAL, BUILD = 'nixdeploy.fleet.nix_eval', 'nixdeploy.fleet.nix_build'
COPY, ACTIVATE = 'nixdeploy.fleet.nix_copy_closure', 'nixdeploy.fleet.nix_activate'
OLD = '/nix/store/' + 'a' * 32 + '-nixos-system-web-1'
NEW = '/nix/store/' + 'b' * 32 + '-nixos-system-web-2'


def validate(report):
    with open(SCHEMA_PATH) as handle:
        jsonschema.validate(report, json.load(handle))
    # what is written is what is validated: JSON types only
    return json.loads(json.dumps(report))


class Clock:
    def __init__(self, start=1000.0):
        self.now = start

    def __call__(self):
        return self.now

    def tick(self, seconds):
        self.now += seconds
        return self.now


def evaluated(host, here=False, **extra):
    result = {'changed': False, 'platform': 'nixos', 'system': 'x86_64-linux',
              'out_path': NEW, 'drv_path': '/nix/store/' + 'd' * 32 + '-x.drv',
              'flake': 'path:/srv/fleet', 'batch_hosts': 4, 'evaluated_here': here}
    if here:
        result['nix_processes'] = 1
    result.update(extra)
    return result


def activated(rolled_back=False, changed=True, **extra):
    result = {'changed': changed, 'platform': 'nixos', 'goal': 'switch',
              'previous': {'generation': 4, 'path': OLD},
              'new': {'generation': 5, 'path': NEW}, 'rolled_back': rolled_back,
              'rollback_reason': None, 'confirmed': not rolled_back, 'connection_lost': False,
              'phases': [{'name': 'activate', 'start': 1030.0, 'end': 1032.5, 'outcome': 'changed'},
                         {'name': 'confirm', 'start': 1032.5, 'end': 1033.0,
                          'outcome': 'rolled_back' if rolled_back else 'changed'}]}
    result.update(extra)
    return result


COPIED = {'changed': True, 'paths_sent': 3, 'bytes_sent': 30000, 'paths_missing': 3,
          'bytes_missing': 30000, 'closure_paths': 9, 'closure_bytes': 90000}


def fleet_run(check_mode=False):
    """Four hosts through one run: web changed, db rolled back, cache failed
    building, edge unreachable at copy, plus one that only evaluated."""
    clock = Clock()
    rec = _report_record.Recorder(clock=clock)
    hosts = ('web', 'db', 'cache', 'edge', 'lazy')
    for host in hosts:
        rec.task_start(host, 'u-eval', EVAL)
    clock.tick(4)
    for idx, host in enumerate(hosts):
        # db and lazy were answered by the evaluation cache
        rec.task_result(host, 'u-eval', EVAL, 'ok', evaluated(
            host, here=idx == 0, from_cache=host in ('db', 'lazy')), task_name='Evaluate')
    for host in ('web', 'db', 'cache', 'edge'):
        rec.task_start(host, 'u-build', BUILD)
    clock.tick(10)
    for host in ('web', 'db', 'edge'):
        rec.task_result(host, 'u-build', BUILD, 'ok', {'changed': True, 'out_path': NEW})
    rec.task_result('cache', 'u-build', BUILD, 'failed',
                    {'failed': True, 'phase': 'build', 'connection_lost': False,
                     'msg': 'cache: build of system failed: error: builder for '
                            '\'/nix/store/x.drv\' failed with exit code 1'})
    for host in ('web', 'db', 'edge'):
        rec.task_start(host, 'u-copy', COPY)
    clock.tick(6)
    rec.task_result('web', 'u-copy', COPY, 'ok', COPIED)
    rec.task_result('db', 'u-copy', COPY, 'ok', dict(COPIED, changed=False, paths_sent=0,
                                                     bytes_sent=0))
    rec.task_result('edge', 'u-copy', COPY, 'unreachable',
                    {'unreachable': True, 'msg': 'edge: ssh: connect to host 10.0.0.9 port 22: '
                                                 'No route to host'})
    for host in ('web', 'db'):
        rec.task_start(host, 'u-act', ACTIVATE)
    clock.tick(14)
    diff = {'added': ['lab-extra-v2'], 'removed': [], 'changed': ['nixos-system-web'],
            'size_change_bytes': 2048, 'lines': ['lab-extra-v2: \u2205 \u2192 2, +2.0 KiB']}
    rec.task_result('web', 'u-act', ACTIVATE, 'ok', activated(closure_diff=diff))
    rec.task_result('db', 'u-act', ACTIVATE, 'failed', activated(
        rolled_back=True, failed=True, phase='confirm',
        rollback_reason='no confirmation within 30s',
        msg='db: rolled back: no confirmation within 30s'))
    # a task of another collection is not a phase
    rec.task_start('web', 'u-debug', 'ansible.builtin.debug')
    rec.task_result('web', 'u-debug', 'ansible.builtin.debug', 'ok', {'msg': 'hi'})
    clock.tick(1)
    run = {'id': 'run-1', 'limit': 'all:!spare', 'tags': [], 'skip_tags': [], 'diff_mode': False,
           'playbooks': ['deploy.yml'], 'collection_version': '0.2.0',
           'flakes': [_report_record.flake_record('path:/srv/fleet', None)]}
    return rec.build(run, check_mode=check_mode)


def test_records_status_phases_and_generations():
    report = validate(fleet_run())
    hosts = report['hosts']
    assert {h: r['status'] for h, r in hosts.items()} == {
        'web': 'changed', 'db': 'rolled_back', 'cache': 'failed', 'edge': 'failed',
        'lazy': 'incomplete'}
    web = hosts['web']
    assert [p['name'] for p in web['phases']] == ['eval', 'build', 'copy', 'activate', 'confirm']
    assert web['phases'][0] == {'name': 'eval', 'start': 1000.0, 'end': 1004.0, 'duration': 4.0,
                                'outcome': 'ok', 'task': 'Evaluate'}
    assert web['phases'][2]['outcome'] == 'changed' and web['phases'][2]['duration'] == 6.0
    assert web['generation'] == {'before': {'generation': 4, 'path': OLD},
                                 'after': {'generation': 5, 'path': NEW}, 'attempted': None}
    assert web['copy']['bytes_sent'] == 30000 and web['copy']['copied_from'] is None
    assert web['closure_diff']['added'] == ['lab-extra-v2']
    assert web['eval'] == {'evaluated_here': True, 'nix_processes': 1, 'batch_hosts': 4,
                           'from_cache': False, 'answered': None, 'reused_from': None}
    assert web['summary'] == 'switched' and web['start'] == 1000.0 and web['end'] == 1033.0
    # rolled back: failed, back on its old generation, the one it tried kept
    db = hosts['db']
    assert db['failed'] and db['rolled_back'] and db['failed_phase'] == 'confirm'
    assert db['rollback_reason'] == 'no confirmation within 30s'
    assert db['generation']['after'] == db['generation']['before']
    assert db['generation']['attempted'] == {'generation': 5, 'path': NEW}
    assert db['phases'][-1]['outcome'] == 'rolled_back'
    assert db['summary'].startswith('FAILED: rolled back')
    # failed building: Nix's message without the host prefix
    cache = hosts['cache']
    assert cache['failed_phase'] == 'build' and not cache['rolled_back']
    assert cache['message'].startswith('build of system failed: error: builder for')
    assert [p['outcome'] for p in cache['phases']] == ['ok', 'failed']
    edge = hosts['edge']
    assert edge['connection_lost'] and edge['failed_phase'] == 'copy'
    assert edge['phases'][-1]['outcome'] == 'unreachable'


def test_totals_and_run():
    report = fleet_run()
    totals = report['totals']
    # edge, unreachable, in no status count: failed and unreachable as the recap says them
    assert (totals['hosts'], totals['changed'], totals['failed'], totals['rolled_back'],
            totals['incomplete'], totals['unchanged'], totals['unreachable']) == (5, 1, 1, 1, 1, 0, 1)
    assert totals['bytes_sent'] == 30000 and totals['paths_sent'] == 3
    assert totals['nix_evaluations'] == 1 and totals['connection_lost'] == 1
    assert totals['evaluations_from_cache'] == 2
    assert report['hosts']['db']['eval']['from_cache'] is True
    assert totals['closure_diff'] == {'added': 1, 'removed': 0, 'changed': 1,
                                      'size_change_bytes': 2048}
    (run,) = report['runs']
    assert run['limit'] == 'all:!spare' and run['hosts'] == sorted(report['hosts'])
    assert run['started'] == 1000.0 and run['ended'] == 1035.0 and run['duration'] == 35.0
    assert report['schema_version'] == _report.SCHEMA_VERSION
    assert report['collection_version'] == '0.2.0'


def test_check_mode_changes_no_generation():
    report = validate(fleet_run(check_mode=True))
    web = report['hosts']['web']
    assert web['status'] == 'changed' and report['runs'][0]['check_mode']
    assert web['generation']['after'] == web['generation']['before']
    assert web['summary'] == 'would switch'


def test_plays_without_the_collections_tasks_make_no_report():
    rec = _report_record.Recorder(clock=Clock())
    rec.task_start('web', 'u1', 'ansible.builtin.command')
    rec.task_result('web', 'u1', 'ansible.builtin.command', 'failed', {'msg': 'boom'})
    assert not rec.deployed()
    rec.task_start('web', 'u2', 'nix_eval')        # short names count too
    rec.task_result('web', 'u2', 'nix_eval', 'ok', evaluated('web'))
    assert rec.deployed()
    report = validate(rec.build({'id': 'r', 'limit': None, 'tags': [], 'skip_tags': [],
                                 'diff_mode': False, 'playbooks': [],
                                 'collection_version': None, 'flakes': []}))
    # a failure outside the collection's tasks still fails the host
    assert report['hosts']['web']['status'] == 'failed'
    assert report['hosts']['web']['failed_phase'] is None
    assert report['hosts']['web']['message'] == 'boom'


def test_hosts_of_a_batch_that_never_started_are_not_in_the_report():
    rec = _report_record.Recorder(clock=Clock())
    rec.task_start('web', 'u1', 'nixdeploy.fleet.nix_eval')
    rec.task_result('web', 'u1', 'nixdeploy.fleet.nix_eval', 'ok', evaluated('web'))
    # the next batch's eval says it does not start (nix_max_fail_percentage)
    rec.task_start('db', 'u1', 'nixdeploy.fleet.nix_eval')
    rec.task_result('db', 'u1', 'nixdeploy.fleet.nix_eval', 'ok',
                    {'stopped': True, 'batch': 2, 'msg': 'no further batch starts'})
    report = validate(rec.build({'id': 'r', 'limit': None, 'tags': [], 'skip_tags': [],
                                 'diff_mode': False, 'playbooks': [],
                                 'collection_version': None, 'flakes': []}))
    assert sorted(report['hosts']) == ['web'], report['hosts']


def test_hosts_that_need_a_look_come_first():
    names = [rec['host'] for rec in _report.ordered_hosts(fleet_run())]
    assert names == ['cache', 'edge', 'db', 'lazy', 'web']


def test_flake_record_from_nix_metadata():
    # what the callback passes: nix flake metadata --json read by _nix_output.flake_metadata
    git = flake_metadata({'revision': 'f7c2c6e8', 'lastModified': 17,
                          'locked': {'type': 'git', 'rev': 'f7c2c6e8', 'narHash': 'sha256-x'},
                          'url': 'git+file:///srv/fleet?rev=f7c2c6e8'})
    assert _report_record.flake_record('/srv/fleet', git) == {
        'ref': '/srv/fleet', 'url': 'git+file:///srv/fleet?rev=f7c2c6e8', 'revision': 'f7c2c6e8',
        'dirty': False, 'nar_hash': 'sha256-x', 'last_modified': 17, 'dirty_revision': None,
        'evaluated': None}
    dirty = flake_metadata({'locked': {'type': 'git', 'narHash': 'sha256-y'}, 'lastModified': 18})
    assert _report_record.flake_record('/srv/fleet', dirty)['dirty'] is True
    dirty = flake_metadata({'dirtyRevision': 'f7c2c6e8-dirty', 'lastModified': 18,
                            'locked': {'type': 'git', 'dirtyRev': 'f7c2c6e8-dirty'}})
    assert _report_record.flake_record('/srv/fleet', dirty)['dirty'] is True
    assert _report_record.flake_record('/srv/fleet', dirty)['dirty_revision'] == 'f7c2c6e8-dirty'
    # what a run's evaluation pinned (a result's source) names what it evaluated
    pinned = dict(flake_metadata({'locked': {'type': 'git', 'narHash': 'sha256-y'}}),
                  evaluated='path:/nix/store/x-source?narHash=sha256-y', pinned=True)
    assert _report_record.flake_record('/srv/fleet', pinned)['evaluated'].startswith('path:')
    path = flake_metadata({'locked': {'type': 'path', 'narHash': 'sha256-z'}})
    assert _report_record.flake_record('path:/x', path)['dirty'] is False
    assert _report_record.flake_record('path:/x', None)['revision'] is None
    assert _report_record.flake_record('path:/x', None)['dirty'] is None


def slice_report(run_id, hosts, started, duplicate=None):
    clock = Clock(started)
    rec = _report_record.Recorder(clock=clock)
    for idx, host in enumerate(hosts + ([duplicate] if duplicate else [])):
        rec.task_start(host, 'e', EVAL)
        clock.tick(1)
        rec.task_result(host, 'e', EVAL, 'ok', evaluated(host, here=idx == 0))
        rec.task_start(host, 'a', ACTIVATE)
        clock.tick(1)
        rec.task_result(host, 'a', ACTIVATE, 'ok', activated(phases=None))
    return rec.build({'id': run_id, 'limit': None, 'tags': [], 'skip_tags': [],
                      'diff_mode': False, 'playbooks': ['deploy.yml'],
                      'collection_version': '0.2.0', 'flakes': []})


def test_merge_of_slices():
    parts = [slice_report('s2', ['h4', 'h5', 'h6'], 1005.0),
             slice_report('s1', ['h1', 'h2', 'h3'], 1000.0),
             slice_report('s3', ['h7', 'h8', 'h9'], 1002.0, duplicate='h1')]
    merged = validate(_report.merge(parts))
    assert [run['id'] for run in merged['runs']] == ['s1', 's3', 's2']
    assert sorted(merged['hosts']) == ['h%d' % n for n in range(1, 10)]
    assert merged['duplicates'] == ['h1']
    # the later record of a host deployed twice wins
    assert merged['hosts']['h1']['run'] == 's3'
    assert merged['totals']['hosts'] == 9 and merged['totals']['changed'] == 9
    assert merged['totals']['nix_evaluations'] == 3
    assert merged['totals']['duration'] == 1011.0 - 1000.0


def test_merge_refuses_other_schema_versions():
    newer = dict(slice_report('s1', ['h1'], 1000.0), schema_version=_report.SCHEMA_VERSION + 1)
    with pytest.raises(_report.ReportError, match='schema version'):
        _report.merge([slice_report('s0', ['h0'], 1000.0), newer])
    with pytest.raises(_report.ReportError, match='not a nixdeploy report'):
        _report.check({'hosts': {}})


def test_write_and_merge_as_a_plain_script(tmp_path):
    """The merge runs where the collection is only a folder: python3 FILE."""
    for run_id, hosts, started in (('s1', ['h1', 'h2'], 1000.0), ('s2', ['h3'], 1001.0)):
        written = _report.write(slice_report(run_id, hosts, started), str(tmp_path / run_id),
                                html=_report_html.render)
        assert sorted(os.path.basename(p) for p in written) == [
            'nixdeploy-report.html', 'nixdeploy-report.json']
    out = tmp_path / 'merged'
    env = {'PATH': os.environ['PATH']}   # no ansible_collections on the path
    proc = subprocess.run([sys.executable, SCRIPT, 'merge', '-o', str(out),
                           str(tmp_path / 's1' / 'nixdeploy-report.json'),
                           str(tmp_path / 's2' / 'nixdeploy-report.json')],
                          env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert '3 hosts from 2 runs' in proc.stdout
    merged = validate(json.loads((out / 'nixdeploy-report.json').read_text()))
    assert sorted(merged['hosts']) == ['h1', 'h2', 'h3']
    assert 'h3' in (out / 'nixdeploy-report.html').read_text()
    bad = subprocess.run([sys.executable, SCRIPT, 'merge', str(tmp_path / 'nope.json')],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, check=False)
    assert bad.returncode == 1 and 'nope.json' in bad.stderr


class Tags(HTMLParser):
    def __init__(self):
        HTMLParser.__init__(self)
        self.tags, self.attrs, self.styles = set(), set(), []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.update(name for name, _value in attrs)
        self.styles += [value for name, value in attrs if name == 'style']
        self._in_style = tag == 'style'

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)
            self._in_style = False


def test_page_is_self_contained_and_escapes_everything():
    report = fleet_run()
    nasty = '<script>alert(1)</script>'
    report['hosts']['cache']['message'] = 'error: ' + nasty
    report['hosts']['cache']['host'] = 'cache"><b>'
    report['runs'][0]['limit'] = '"><img src=x>'
    page = _report_html.render(report)
    assert nasty not in page and '&lt;script&gt;' in page
    parsed = Tags()
    parsed.feed(page)
    # nothing that loads: no script, link, image, frame, object; no URL attribute
    assert not parsed.tags & {'script', 'link', 'img', 'iframe', 'object', 'embed', 'base',
                              'audio', 'video', 'source', 'form'}, parsed.tags
    assert not parsed.attrs & {'src', 'href', 'srcset', 'action', 'background'}, parsed.attrs
    for style in parsed.styles:
        assert 'url(' not in style and '@import' not in style
    assert "content=\"default-src 'none'; style-src 'unsafe-inline'\"" in page


def test_page_shows_every_host_failed_ones_first():
    page = _report_html.render(fleet_run())
    for host in ('web', 'db', 'cache', 'edge', 'lazy'):
        assert 'data-host="%s"' % host in page
    attention = page[page.index('id="attention"'):page.index('id="timeline"')]
    assert attention.index('data-host="cache"') < attention.index('data-host="edge"') \
        < attention.index('data-host="db"')
    assert 'data-host="web"' not in attention
    assert 'no confirmation within 30s' in attention
    timeline = page[page.index('id="timeline"'):page.index('id="hosts"')]
    order = [timeline.index('data-host="%s"' % h) for h in ('cache', 'edge', 'db', 'lazy', 'web')]
    assert order == sorted(order)
    # one bar per phase, coloured by outcome
    assert timeline.count('class="bar') == sum(len(r['phases']) for r in
                                               fleet_run()['hosts'].values())
    assert 'o-rolled_back' in timeline and 'o-unreachable' in timeline
    assert '+1 -0 ~1, +2.0 KiB' in page


def test_human_units():
    assert _report_html.human_bytes(0) == '0 B'
    assert _report_html.human_bytes(2048, signed=True) == '+2.0 KiB'
    assert _report_html.human_bytes(-5 * 1024 * 1024, signed=True) == '-5.0 MiB'
    assert _report_html.seconds(75.2) == '1m 15s'


# ------------------------------------------------------------------ secrets and host keys
TOKEN = 'glpat-nixdeploy-report-6c1d'
SECRET_FLAKE = 'git+https://oauth2:%s@gitlab.example/infra/fleet.git?ref=main' % TOKEN


def credentialed_run():
    """One host deployed from a flake reference with a token in it, whose Nix
    message echoes the token too; another deployed with host key checking off."""
    clock = Clock()
    rec = _report_record.Recorder(clock=clock)
    for host in ('web', 'db'):
        rec.task_start(host, 'e', EVAL)
        clock.tick(1)
        rec.task_result(host, 'e', EVAL, 'ok', evaluated(host, here=host == 'web', flake=SECRET_FLAKE))
    rec.task_start('web', 'c', COPY)
    clock.tick(1)
    rec.task_result('web', 'c', COPY, 'failed', {
        'failed': True, 'phase': 'copy', 'connection_lost': False,
        'msg': "web: error: unable to download 'https://deploy:%s@cache.example/nix-cache-info"
               "?access_token=%s': HTTP error 401" % (TOKEN, TOKEN)})
    rec.task_start('db', 'c', COPY)
    clock.tick(1)
    rec.task_result('db', 'c', COPY, 'ok', dict(COPIED, host_key_unchecked=True))
    rec.task_start('db', 'a', ACTIVATE)
    clock.tick(1)
    rec.task_result('db', 'a', ACTIVATE, 'ok', activated(host_key_unchecked=True))
    metadata = {'url': SECRET_FLAKE + '&rev=' + 'c' * 40, 'revision': 'c' * 40}
    return rec.build({'id': 'run-s', 'limit': None, 'tags': [], 'skip_tags': [], 'diff_mode': False,
                      'playbooks': ['deploy.yml'], 'collection_version': '0.2.0',
                      'flakes': [_report_record.flake_record(SECRET_FLAKE, metadata)]})


def test_no_credential_of_a_flake_or_cache_reaches_the_report(tmp_path):
    report = validate(credentialed_run())
    written = _report.write(report, str(tmp_path), html=_report_html.render)
    for path in written:
        with open(path) as handle:
            text = handle.read()
        assert TOKEN not in text, path
    masked = 'git+https://oauth2:***@gitlab.example/infra/fleet.git?ref=main'
    assert report['hosts']['web']['flake'] == masked
    assert report['runs'][0]['flakes'][0]['ref'] == masked
    assert report['runs'][0]['flakes'][0]['url'].startswith(masked + '&rev=ccc')
    assert "'https://deploy:***@cache.example/nix-cache-info?access_token=***'" in report['hosts']['web']['message']
    page = (tmp_path / 'nixdeploy-report.html').read_text()
    assert 'git+https://oauth2:***@gitlab.example/infra/fleet.git' in page


def test_merging_masks_what_an_older_report_kept(tmp_path):
    """A report written before credentials were masked is masked when merged
    (the plain script)."""
    report = credentialed_run()
    report['hosts']['web']['flake'] = SECRET_FLAKE       # as an older collection wrote it
    path = tmp_path / 'old.json'
    path.write_text(json.dumps(report))
    proc = subprocess.run([sys.executable, SCRIPT, 'merge', '-o', str(tmp_path / 'out'), str(path)],
                          env={'PATH': os.environ['PATH']}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for name in ('nixdeploy-report.json', 'nixdeploy-report.html'):
        assert TOKEN not in (tmp_path / 'out' / name).read_text()


def test_a_host_deployed_without_its_host_key_checked_is_marked():
    report = validate(credentialed_run())
    assert report['hosts']['db']['host_key_unchecked'] is True
    assert report['hosts']['web']['host_key_unchecked'] is False
    assert report['totals']['host_key_unchecked'] == 1
    page = _report_html.render(report)
    row = page[page.index('<tr data-host="db">'):]
    row = row[:row.index('</tr>')]
    assert 'class="badge hostkey"' in row and 'host key not checked' in row
    web = page[page.index('<tr data-host="web">'):]
    assert 'hostkey' not in web[:web.index('</tr>')]
    assert '<div class="card hostkey"><b>1</b><small>host key not checked</small></div>' in page
    # a run where every host's key was checked shows no such card
    assert 'card hostkey' not in _report_html.render(validate(fleet_run()))


def test_hosts_of_one_status_in_natural_order():
    # a fleet of 1,000 reads h1, h2 ... h10, not h1, h10, h100, h1000, h101
    report = {'hosts': dict((name, {'host': name, 'status': 'changed'})
                            for name in ('h10', 'h2', 'h1000', 'h1', 'web-a10', 'web-a9', 'db'))}
    report['hosts']['h100'] = {'host': 'h100', 'status': 'failed'}
    names = [rec['host'] for rec in _report.ordered_hosts(report)]
    assert names == ['h100', 'db', 'h1', 'h2', 'h10', 'h1000', 'web-a9', 'web-a10']
