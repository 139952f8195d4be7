"""Nothing the repository holds points to notes outside it: a user of the
collection, or a contributor with a clone, has only the repository. The
design notes this project started from lived beside the checkout; what of
them the code relies on is stated in the repository's own docs (the lab's
rules of the real tools: docs/lab.md)."""

import os
import subprocess

from tests.collection import REPO

# written in two parts, so this file does not name what it looks for
OUTSIDE = '../' + 'shared'


def tracked_files():
    out = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO, check=True,
                         stdout=subprocess.PIPE).stdout.decode('utf-8', 'replace')
    return [name for name in out.split('\0') if name]


def test_no_tracked_file_points_outside_the_repository():
    found = []
    for name in tracked_files():
        path = os.path.join(REPO, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, 'rb') as handle:
            text = handle.read().decode('utf-8', 'replace')
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE in line:
                found.append('%s:%d: %s' % (name, number, line.strip()[:120]))
    assert not found, 'files point outside the repository (state it in docs/ instead):\n' + \
        '\n'.join(found)
