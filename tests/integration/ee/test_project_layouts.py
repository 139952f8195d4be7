"""The project as AWX hands it to a job, against a workstation's clone.

AWX 24.6.1 copies the project's checkout into the job's private data dir
without ``.git`` (RunProjectUpdate.make_local_copy, ``shutil.copytree(...,
ignore=shutil.ignore_patterns('.git'))`` since AWX 21.5), and transmit zips
it to the worker; AWX 21.4 and older made a depth-1 clone of the job's
revision from a temporary branch (``git clone --depth 1 --single-branch
--branch awx_internal/<uuid> file://...``). Nix reads the first as a
``path:`` flake, the second and a workstation's clone as ``git+file:``. In
the EE's Nix, each in a fresh fetcher cache (a job's container starts with
none; Nix caches a revision's revCount, so one cache would hide the
difference), the test evaluates every host's system and the flake's own
attributes: the systems are the same; ``rev``, ``revCount`` and
``lastModified`` are not.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
from ansible_runner.utils.streaming import stream_dir, unstream_dir

from tests.deploy_fleet import git
from tests.integration.ee import awx_job
from tests.integration.ee.jobs import CONTAINERS_CONF, IMAGE, JOB_UID, NAMES

pytestmark = pytest.mark.lab

HOUR = 3600


def through_transmit(source, target):
    """``source`` as the worker unpacks it: transmit's zip (mtimes in the
    control node's local time, 2 s steps) and the worker's unstream_dir."""
    with tempfile.TemporaryFile('w+b') as stream:
        stream_dir(source, stream)
        stream.seek(0)
        length = json.loads(stream.readline())['zipfile']
        os.makedirs(target)
        unstream_dir(stream, length, target)


def flake_facts(base, layouts, attrs):
    """{layout: the flake's rev, revCount, lastModified, narHash and every
    host's out path} as a job's Nix reads it: one EE container (``base``
    mounted), a fresh fetcher cache per layout."""
    apply = ('f: { rev = f.rev or null; revCount = f.revCount or null; '
             'lastModified = f.lastModified or null; narHash = f.narHash; paths = { %s }; }'
             % ' '.join('%s = f.%s.outPath;' % (h, a) for h, a in sorted(attrs.items())))
    script = ''.join(
        'XDG_CACHE_HOME=$(mktemp -d) nix eval --json --impure --expr '
        '"(%s) (builtins.getFlake \\"%s\\")"; echo\n' % (apply.replace('"', '\\"'), ref)
        for ref in layouts.values())
    proc = subprocess.run(['podman', 'run', '--rm', '-i', '--user', '%d:0' % JOB_UID,
                           '-v', '%s:%s' % (base, base), IMAGE, 'sh', '-e'], input=script, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False,
                          env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF), timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(zip(layouts, (json.loads(line) for line in proc.stdout.split())))


def test_awx_copy_deploys_the_systems_of_a_full_clone_but_not_its_rev(awx, tmp_path):
    awx.flake.set_all(version='layout')
    committed = int(time.time()) - HOUR    # pushed an hour before the job
    revision = awx.commit('version layout', date=committed)
    assert awx.project_update() == revision
    base = str(tmp_path)
    # a workstation's clone
    full = os.path.join(base, 'full')
    git(base, 'clone', '-q', awx.upstream, full)
    # AWX 21.4 and older: a depth-1 clone of the revision from a temporary branch
    branch = 'awx_internal/%s' % uuid.uuid4()
    git(awx.checkout, 'branch', branch, revision)
    shallow = os.path.join(base, 'shallow')
    try:
        git(base, 'clone', '-q', '--depth', '1', '--single-branch', '--branch', branch,
            'file://' + awx.checkout, shallow)
    finally:
        git(awx.checkout, 'branch', '-D', branch)
    # AWX 24.6.1: the checkout copied without .git, then through transmit to the worker
    private = awx_job.new_private_dir(os.path.join(base, 'control'), 900, awx.checkout)
    through_transmit(os.path.join(private, 'project'), os.path.join(base, 'worker', 'project'))
    copy = os.path.join(base, 'worker', 'project')
    # Nix takes the newest mtime of the tree, folders included (the worker
    # made those as it unpacked: the job's start)
    newest = max(os.lstat(os.path.join(d, f)).st_mtime
                 for d, subs, files in os.walk(copy) for f in subs + files + ['.'])
    # the job's UID owns what it reads, as in a job (git refuses another's repository)
    subprocess.run(['chown', '-R', '%d:0' % JOB_UID, base], check=True)
    layouts = {'full': 'git+file://' + full, 'shallow': 'git+file://' + shallow,
               'awx': 'path:' + copy}
    facts = flake_facts(base, layouts, dict((h, awx.flake.attr(h)) for h in NAMES))

    # the same systems from all three
    assert facts['full']['paths'] == facts['shallow']['paths'] == facts['awx']['paths'], facts
    assert sorted(facts['awx']['paths']) == NAMES
    # the same content
    assert facts['full']['narHash'] == facts['shallow']['narHash'] == facts['awx']['narHash']
    # the revision: the clones have it, AWX's copy has none
    assert facts['full']['rev'] == facts['shallow']['rev'] == revision
    assert facts['awx']['rev'] is None and facts['awx']['revCount'] is None
    # revCount: the history's length, 1 in a depth-1 clone
    count = int(git(full, 'rev-list', '--count', 'HEAD'))
    assert count > 1
    assert (facts['full']['revCount'], facts['shallow']['revCount']) == (count, 1)
    # lastModified: the commit's time in a clone; in AWX's copy, the newest
    # mtime of its files (the project sync's checkout, through the zip) and folders
    assert facts['full']['lastModified'] == facts['shallow']['lastModified'] == committed
    assert facts['awx']['lastModified'] == int(newest) >= committed + HOUR - 5, facts['awx']
    shutil.rmtree(private)
