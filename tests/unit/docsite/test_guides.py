"""The guides' links on the docs site (tests/docsite/guides.py, links.py):
a link to another guide and its heading goes to that page and the id the
heading has there, a plugin's file to its page, any other file to the
repository; a link to a file or heading that does not exist stops the build,
and so does a built page's link to a page or id the site lacks."""

import os

import pytest

from tests.docsite import guides, links

GUIDES = {
    'docs/README.md': '- [a](a.md)\n- [the module](modules/m.md)\n',
    'docs/a.md': ('# A guide\n\n## The copy\'s GC root\n\nSee [b.md](b.md#why-not), '
                  '[m](modules/m.md), [nix_eval](../plugins/modules/nix_eval.py), '
                  '[lab](../tests/lab/) and [up](#the-copys-gc-root).\n'),
    'docs/b.md': ('# B\n\n<a id="why-not"></a>\n**Why not**, in a paragraph.\n\n'
                  '```yaml\n- [not](nothing.md)\n```\n'),
    'docs/modules/m.md': '# m\n\nBack to [A](../a.md#the-copys-gc-root).\n',
    'plugins/modules/nix_eval.py': '',
    'tests/lab/__init__.py': '',
    'galaxy.yml': 'repository: https://example.org/fleet\n',
}


@pytest.fixture
def repo(tmp_path):
    for rel, text in GUIDES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_links_go_to_the_pages_and_ids_of_the_site(repo):
    site = guides.Site(repo)
    assert site.order() == ['docs/a.md', 'docs/modules/m.md', 'docs/b.md']
    a = site.markdown(site.guides['docs/a.md'])
    anchor = 'ansible-collections-nixdeploy-fleet-docsite-b-why-not'
    # named by the guide's title, its anchor the label the build gives it
    assert '[B](b.html#%s)' % anchor in a
    assert '[m](modules/m.html)' in a
    assert '[nix_eval](../nix_eval_module.html)' in a
    assert '[lab](https://example.org/fleet/tree/main/tests/lab)' in a
    # docutils' id of the heading, not GitHub's
    assert '[up](#the-copy-s-gc-root)' in a
    assert '[A](../a.html#the-copy-s-gc-root)' in site.markdown(site.guides['docs/modules/m.md'])
    b = site.markdown(site.guides['docs/b.md'])
    assert guides.PLACEHOLDER % 'why-not' in b and '[not](nothing.md)' in b


@pytest.mark.parametrize('link, why', [('b.md#nowhere', 'no heading or anchor #nowhere'),
                                       ('c.md', 'docs/c.md does not exist')])
def test_a_link_to_nothing_stops_the_build(repo, link, why):
    with open(os.path.join(repo, 'docs', 'a.md'), 'a') as handle:
        handle.write('And [this](%s).\n' % link)
    site = guides.Site(repo)
    with pytest.raises(guides.BrokenLink, match=why):
        site.markdown(site.guides['docs/a.md'])


def test_a_built_page_linking_to_nothing_is_found(tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'index.html').write_text(
        '<a href="sub/p.html#here">ok</a><a href="sub/p.html#gone">id</a>'
        '<img src="missing.png"><a href="https://example.org/x">out</a><a href="/">root</a>')
    (tmp_path / 'sub' / 'p.html').write_text('<h2 id="here">Here</h2><a href="../index.html">up</a>')
    assert links.broken(str(tmp_path)) == [('index.html', 'sub/p.html#gone', 'no such id on the page'),
                                           ('index.html', 'missing.png', 'no such file')]


def test_the_developers_guides_have_a_section_of_their_own(tmp_path):
    """docs/README.md's "Developing this collection" guides come in a section
    of the site after the user's guides and the modules'."""
    for rel, text in dict(GUIDES, **{
            'docs/README.md': ('## Using the collection\n\n- [a](a.md)\n- [the module](modules/m.md)\n\n'
                               '## Developing this collection\n\n- [b](b.md)\n\n## The site\n\n[a](a.md)\n')}).items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    site = guides.Site(str(tmp_path))
    assert site.order() == ['docs/a.md', 'docs/modules/m.md', 'docs/b.md']
    assert [site.section(rel) for rel in site.order()] == ['', 'modules/', 'developing']
