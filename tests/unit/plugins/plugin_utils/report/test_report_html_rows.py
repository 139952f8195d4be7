"""The host table at 1,000 rows: one failed host's long outcome must not
squeeze the other columns of every row into several lines (the browser test,
tests/unit/benchmarks/test_report_render.py, measures the rows' height where
Chromium is installed; this one holds without it)."""

import re

from tests.unit.plugins.plugin_utils.report.test_report import fleet_run
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import _report_html


def nowrap_selectors(css):
    out = set()
    for selectors, body in re.findall(r'([^{}]+)\{([^}]*)\}', css):
        if re.search(r'white-space:\s*nowrap', body):
            out.update(s.strip() for s in re.sub(r'/\*.*?\*/', '', selectors).split(','))
    return out


def test_only_the_outcome_cell_of_a_host_row_wraps():
    page = _report_html.render(fleet_run())
    rows = re.findall(r'<tr data-host="web">(.*?)</tr>', page)
    assert len(rows) == 1
    cells = re.findall(r'<td(?: class="([^"]*)")?', rows[0])
    # host, platform, outcome, generation, store path, copied, closure change, duration
    assert len(cells) == 8
    nowrap = nowrap_selectors(_report_html.CSS)
    kept = [idx for idx, cls in enumerate(cells) if cls and 'td.%s' % cls in nowrap]
    assert kept == [3, 4, 5, 6, 7], (cells, nowrap)


def test_timeline_axis_labels_stay_on_one_line():
    assert '.axis span' in nowrap_selectors(_report_html.CSS)
