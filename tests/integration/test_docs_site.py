"""The documentation site as `make docs` builds it and a reader sees it.

One build (antsibull-docs lint-collection-docs on the plugin and role docs
and the extra docs, the pages, Sphinx with -W, the internal links checked),
then a module page and a guide page rendered in a real headless Chromium.
Marker docsite: this machine's stack runs it with its checks (make
test-here-checks); the current stack does not build the site again.
"""

import os
import re

import pytest

from tests.docsite import build, guides, links
from tests.integration import chromium

pytestmark = pytest.mark.docsite

FLEET = os.path.join('collections', 'nixdeploy', 'fleet')


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    return build.build(str(tmp_path_factory.mktemp('docs')))


def text_of(html):
    return re.sub(r'\s+', ' ', re.sub(r'<[^>]+>', ' ', html))


def rendered(site, page, tmp_path):
    if chromium.binary() is None:
        pytest.fail('Debian chromium is needed for this test (make deps installs it)')
    shot = str(tmp_path / (os.path.basename(page) + '.png'))
    out = chromium.render(os.path.join(site, FLEET, page), shot, height=1200)
    assert os.path.getsize(shot) > 20000, 'an empty screenshot'
    assert out.console == [], out.console
    return out.dom


def test_every_page_is_generated_and_every_guide_is_in_the_site(site):
    fleet = os.path.join(site, FLEET)
    for page in ('nix_activate_module', 'nix_eval_module', 'nix_inventory', 'summary_callback',
                 'report_callback', 'deploy_stats_filter', 'deploy_role', 'rollback_role',
                 'publish_role'):
        assert os.path.isfile(os.path.join(fleet, page + '.html')), page
    with open(os.path.join(fleet, 'index.html'), encoding='utf-8') as handle:
        index = handle.read()
    repo_guides = guides.Site(build.REPO)
    for rel in repo_guides.order():
        page = repo_guides.guides[rel].page
        assert os.path.isfile(os.path.join(fleet, guides.SITE_DIR, page + '.html')), rel
        assert 'href="%s/%s.html"' % (guides.SITE_DIR, page) in index, rel
    assert links.broken(site) == []


def test_the_module_page_renders_its_options(site, tmp_path):
    dom = rendered(site, 'nix_activate_module.html', tmp_path)
    assert '<h1>nixdeploy.fleet.nix_activate module' in dom
    text = text_of(dom)
    # the option table: each of the table's options, the health checks' sub-options
    for option in ('magic_rollback', 'confirm_timeout', 'health_checks', 'follow_redirects',
                   'from_role_vars', 'reboot_timeout'):
        assert ' %s ' % option in text, option
    assert 'ansible-option-table' in dom
    assert 'Return Values' in text and 'Examples' in text
    # docutils' own error boxes (a markup problem -W let through)
    assert 'system-message' not in dom and 'Problematic' not in dom


def test_a_guide_renders_with_its_links_to_other_pages(site, tmp_path):
    dom = rendered(site, os.path.join(guides.SITE_DIR, 'quickstart.html'), tmp_path)
    assert re.search(r'<h1>Quickstart', dom)
    assert re.search(r'<h2>[^<]*Check, then deploy', dom)
    # a link to another guide goes to its page, named by its title
    assert re.search(r'<a class="reference external" href="inventory.html">The inventory', dom)
    assert 'system-message' not in dom and 'Problematic' not in dom
