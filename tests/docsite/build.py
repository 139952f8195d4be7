"""Build the documentation site (``make docs``): antsibull-docs renders the
module, plugin and role pages from DOCUMENTATION and the argument specs,
docs/'s Markdown guides become its extra docs (guides.py), Sphinx with the
Ansible theme builds the HTML.

    python -m tests.docsite.build [--out DIR] [--no-lint]

Into DIR (tests/output/docs): ``site/`` what ``antsibull-docs sphinx-init``
makes, ``build/html/`` the site. The collection is staged in a temporary
folder outside any git work tree (what git holds, as tests/sanity/run.sh
stages it, plus the generated extra docs): inside this checkout, where
tests/output is ignored, lint-collection-docs asks git for the collection's
files, gets none and checks no plugin.
Fails on any lint message of ``antsibull-docs lint-collection-docs``, any
Sphinx warning and any internal link that leads nowhere (links.py).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from tests.docsite import guides, links

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, 'tests', 'output', 'docs')
BIN = os.path.dirname(sys.executable)

# Appended to the conf.py sphinx-init writes. The build is offline (no
# intersphinx inventories): a reference to Ansible's own docs (a label of
# ansible.builtin or of the Ansible docsite, an environment variable) becomes
# a link to docs.ansible.com; one into this collection stays unresolved, so
# -W fails the build on it.
CONF = r'''
intersphinx_mapping = {}
# the guides' unlabelled code blocks (terminal output, diagrams) are text
highlight_language = 'none'
html_theme_options = {'collapse_navigation': False, 'navigation_depth': 3}

_ANSIBLE_DOCS = 'https://docs.ansible.com/ansible/latest/'
_ANSIBLE_LABELS = {
    'action_plugins': 'plugins/action.html',
    'callback_plugins': 'plugins/callback.html',
    'inventory_plugins': 'plugins/inventory.html',
    'filter_plugins': 'plugins/filter.html',
    'common_return_values': 'reference_appendices/common_return_values.html',
    'ansible_configuration_settings': 'reference_appendices/config.html',
}


def _ansible_docs(app, env, node, contnode):
    from docutils import nodes
    target, kind = node.get('reftarget', ''), node.get('reftype')
    url = None
    if kind == 'envvar':
        url = _ANSIBLE_DOCS + 'reference_appendices/config.html#envvar-' + target
    elif kind == 'ref' and target in _ANSIBLE_LABELS:
        url = _ANSIBLE_DOCS + _ANSIBLE_LABELS[target]
    elif kind == 'ref' and target.startswith('ansible_collections.') and \
            not target.startswith('ansible_collections.nixdeploy.fleet.'):
        parts = target.split('.')
        if len(parts) == 4:
            url = _ANSIBLE_DOCS + 'collections/%s/%s/%s.html' % tuple(parts[1:])
    if url is None:
        return None
    ref = nodes.reference('', '', internal=False, refuri=url)
    ref += contnode
    return ref


def setup(app):
    app.connect('missing-reference', _ansible_docs)
'''


def run(argv, **kwargs):
    print('+ ' + ' '.join(argv), flush=True)
    subprocess.run(argv, check=True, **kwargs)


def stage(dest):
    """What git holds of this checkout (tracked, and untracked files it does
    not ignore) copied to ``dest``."""
    files = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                           cwd=REPO, stdout=subprocess.PIPE, check=True).stdout.split(b'\0')
    for name in files:
        rel = name.decode('utf-8')
        src = os.path.join(REPO, rel)
        if not rel or not os.path.lexists(src) or os.path.isdir(src):
            continue
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)


def private_dir(path):
    # antsibull-docs refuses a folder others may write to
    os.makedirs(path, mode=0o755, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def build(out=OUT, lint=True):
    """The site of this checkout into ``out``; returns build/html's path."""
    started = time.monotonic()
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    collections = tempfile.mkdtemp(prefix='nixdeploy-docs-')
    try:
        return _build(out, collections, lint, started)
    finally:
        shutil.rmtree(collections, ignore_errors=True)


def _build(out, collections, lint, started):
    dest = os.path.join(collections, 'ansible_collections', 'nixdeploy', 'fleet')
    stage(dest)
    pages = guides.Site(dest).write(dest, pandoc=shutil.which('pandoc') or 'pandoc')
    print('extra docs: %d guides' % len(pages), flush=True)

    # run in ``out``: no ansible.cfg of a checkout around
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections,
               PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    antsibull = os.path.join(BIN, 'antsibull-docs')
    if lint:
        run([antsibull, 'lint-collection-docs', '--plugin-docs', '--check-extra-docs-refs',
             '--validate-collection-refs', 'all', dest], env=env, cwd=out)

    site = private_dir(os.path.join(out, 'site'))
    run([antsibull, 'sphinx-init', '--use-current', '--dest-dir', site, '--project',
         guides.COLLECTION, '--title', 'nixdeploy.fleet documentation', '--html-short-title',
         guides.COLLECTION, '--copyright', 'nixdeploy.fleet contributors', guides.COLLECTION],
        env=env, cwd=out, stdout=subprocess.DEVNULL)
    with open(os.path.join(site, 'conf.py'), 'a', encoding='utf-8') as handle:
        handle.write(CONF)
    # site/build.sh's two steps, with the guides' images copied in between
    # (antsibull-docs takes only the .rst files of docs/docsite/rst)
    rst = private_dir(os.path.join(site, 'rst'))
    run([antsibull, '--config-file', os.path.join(site, 'antsibull-docs.cfg'), 'collection',
         '--cleanup', 'everything', '--use-current', '--fail-on-error', '--dest-dir', rst,
         guides.COLLECTION], env=env, cwd=out, stdout=subprocess.DEVNULL)
    shutil.copytree(os.path.join(dest, 'docs', 'images'),
                    os.path.join(rst, 'collections', 'nixdeploy', 'fleet', guides.SITE_DIR,
                                 'images'))
    html = os.path.join(out, 'build')
    run([os.path.join(BIN, 'sphinx-build'), '-M', 'html', rst, html, '-c', site, '-W',
         '--keep-going', '-q'], env=env, cwd=out)
    html = os.path.join(html, 'html')
    bad = links.broken(html)
    for page, link, why in bad:
        print('broken link: %s -> %s: %s' % (page, link, why), file=sys.stderr)
    if bad:
        raise SystemExit('%d broken internal links' % len(bad))
    print('site: %s (%.0f s)' % (os.path.join(html, 'index.html'), time.monotonic() - started))
    return html


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--out', default=OUT)
    parser.add_argument('--no-lint', action='store_true',
                        help='skip antsibull-docs lint-collection-docs')
    args = parser.parse_args()
    try:
        build(os.path.abspath(args.out), lint=not args.no_lint)
    except (subprocess.CalledProcessError, guides.BrokenLink) as exc:
        raise SystemExit(str(exc))
    except FileNotFoundError as exc:
        raise SystemExit('%s: run make deps (pandoc, the venv)' % exc)


if __name__ == '__main__':
    main()
