"""benchmarks/report_render.py: a report page in a real headless Chromium,
measured over the DevTools pipe. Skipped where no Chromium is installed
(CI has none); a few seconds where one is."""

import copy
import struct

import pytest

from benchmarks import report_render
from tests.unit.plugins.plugin_utils.report.test_report import fleet_run
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import _report, _report_html

try:
    report_render.binary()
except report_render.ChromiumMissing as missing:
    pytest.skip(str(missing), allow_module_level=True)


def write(report, directory):
    paths = _report.write(report, str(directory), html=_report_html.render)
    return [p for p in paths if p.endswith('.html')][0]


def png_size(path):
    with open(path, 'rb') as handle:
        head = handle.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', head[16:24])


def test_render_measures_the_page_failed_hosts_first(tmp_path):
    # the callback's own records: cache failed building, edge unreachable, db rolled back
    page = write(fleet_run(), tmp_path)
    out = report_render.render(page, str(tmp_path / 'report.png'), runs=2)
    for key in report_render.FIGURES:
        assert out[key] is not None and out[key] >= 0, (key, out)
    assert 0 < out['fcp_ms'] and 0 < out['dcl_ms'] <= out['load_ms'] <= out['rendered_ms']
    assert out['task_ms'] > 0 and out['layout_ms'] > 0
    assert len(out['loads']) == 2
    assert out['rows'] == 5 and out['height'] > 1000 and out['elements'] > 100
    assert [host for host, _badge in out['first_rows']] == ['cache', 'edge', 'db', 'lazy', 'web']
    assert out['first_heading'] == 'Failed (1), rolled back (1), unreachable (1)'
    assert out['console'] == [], out['console']
    assert 'Chrome/' in out['chromium']
    assert png_size(out['png']) == (report_render.WIDTH, report_render.HEIGHT)


def test_a_long_failure_leaves_the_other_rows_one_line(tmp_path):
    """At 1,000 rows, one failed host's long summary must not squeeze the
    store path column of every other row into three lines."""
    report = fleet_run()
    web = report['hosts']['web']
    for idx in range(40):
        name = 'web%02d' % idx
        report['hosts'][name] = dict(copy.deepcopy(web), host=name,
                                     store_path=web['store_path'] + '-23.11.20240101.%s' % name)
    plain = copy.deepcopy(report)
    for rec in plain['hosts'].values():
        rec['summary'] = rec['summary'] and rec['summary'][:20]
    long_one = copy.deepcopy(report)
    long_one['hosts']['edge']['summary'] = 'FAILED at copy: unreachable: connection lost: ' + \
        'ssh: connect to host 10.200.4.12 port 22: No route to host ' * 3
    (tmp_path / 'plain').mkdir()
    (tmp_path / 'long').mkdir()
    rows = [report_render.render(write(rep, tmp_path / sub), runs=1)['row_px']
            for rep, sub in ((plain, 'plain'), (long_one, 'long'))]
    assert rows[1] == rows[0], rows
