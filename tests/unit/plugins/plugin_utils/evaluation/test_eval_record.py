"""What an evaluator read (plugin_utils/evaluation/record/_record.py): a real
strace log read against a source folder, each path described as a later
content must match it (links, the executable bit, absences, listings), and
a derivation that names the source's own path. Real strace and files."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record import (  # noqa: E402
    _record, _trace)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse import (  # noqa: E402
    _mentions)

needs_strace = pytest.mark.skipif(shutil.which('strace') is None, reason='needs strace')

MARKER = 'nixdeploy-eval-result:00112233445566778899aabbccddeeff:'
SELF = 'nixdeploy-eval-result:ffeeddccbbaa99887766554433221100:'

# A stand-in evaluator: touches paths as Nix does (open, stat, list, links)
# and writes each answer's trace line to stderr in between.
READER = r'''
import os, sys
root, marker, self_marker = sys.argv[1:4]
open(os.path.join(root, 'flake.nix')).read()
os.listdir(os.path.join(root, 'hosts'))
os.path.exists(os.path.join(root, 'hosts', 'a', 'extra'))
open(os.path.join(root, 'hosts', 'a', 'default.nix')).read()
sys.stderr.write('trace: %s0 {"drv": "x"}\n' % marker); sys.stderr.flush()
open(os.path.join(root, 'hosts', 'b', 'default.nix')).read()
os.stat(os.path.join(root, 'files', 'tool'))
open(os.path.join(os.fsencode(root), b'conf', b'caf\xc3\xa9.txt'), 'rb').read()
open(os.path.join(os.fsencode(root), b'conf', b'odd \\ "q\xff'), 'rb').read()
sys.stderr.write('trace: %srev\n' % self_marker); sys.stderr.flush()
sys.stderr.write('trace: %s1 {"drv": "y"}\n' % marker); sys.stderr.flush()
'''


def make_source(folder):
    for rel, text in (('flake.nix', '{ }'), ('hosts/a/default.nix', '"a"'),
                      ('hosts/c/default.nix', '"c"'), ('files/tool', 'run')):
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(text)
    # names are bytes: UTF-8, and bytes that are not UTF-8 at all
    os.makedirs(os.path.join(folder, 'conf'))
    for name in (b'caf\xc3\xa9.txt', b'odd \\ "q\xff'):
        with open(os.path.join(os.fsencode(folder), b'conf', name), 'w') as handle:
            handle.write('x')
    # host b is a link to a's folder
    os.symlink('a', os.path.join(folder, 'hosts', 'b'))
    os.chmod(os.path.join(folder, 'files', 'tool'), 0o755)


def traced(tmp_path, root):
    log = str(tmp_path / 'strace.log')
    argv = _trace.strace_argv(shutil.which('strace'), log,
                              [sys.executable, '-c', READER, root, MARKER, SELF])
    subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return _trace.Log.read(log, root, MARKER, SELF)


@needs_strace
def test_a_log_is_split_at_each_answer_and_names_every_kind_of_read(tmp_path):
    root = str(tmp_path / 'source')
    make_source(root)
    log = traced(tmp_path, root)
    assert log.broken is None
    assert log.answered == [0, 1]
    first, second = log.segments
    assert first['reads']['flake.nix'] == 'read'
    assert 'hosts/c/default.nix' not in first['reads']
    assert first['reads']['hosts'] == 'list'
    assert first['reads']['hosts/a/extra'] == 'stat'
    assert first['reads']['hosts/a/default.nix'] == 'read'
    assert 'hosts/b/default.nix' not in first['reads'] and not first['self']
    assert second['reads']['hosts/b/default.nix'] == 'read'
    assert second['reads']['files/tool'] == 'stat'
    assert second['self'] == {'rev'}
    # a name is recorded byte for byte, as the file system names it
    assert second['reads'][os.fsdecode(b'conf/caf\xc3\xa9.txt')] == 'read'
    assert second['reads'][os.fsdecode(b'conf/odd \\ "q\xff')] == 'read'
    assert _record.reads_are_visible(log)
    # a log whose first answer came before any read of flake.nix: its
    # reads may not be visible here
    blind = _trace.Log(root, MARKER, SELF)
    blind.feed('1 write(2, "trace: %s0 {}\\n", 10) = 10\n' % MARKER)
    blind.feed('1 openat(AT_FDCWD</>, "%s/flake.nix", O_RDONLY) = 3\n' % root)
    assert blind.segments and not _record.reads_are_visible(blind)


def test_a_name_strace_escaped_is_decoded_as_bytes():
    """strace prints bytes over 0x7f as octal escapes: each is one byte of
    the name, never one character (cafe with an acute was recorded as
    caf + two Latin-1 characters, absent in every commit)."""
    assert _trace._unescape('conf/caf\\303\\251.txt') == u'conf/caf\u00e9.txt'
    assert _trace._unescape('a\\\\b\\"c\\n') == 'a\\b"c\n'
    assert os.fsencode(_trace._unescape('x\\377')) == b'x\xff'


def test_a_record_that_calls_a_misnamed_file_absent_is_not_kept(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, 'conf'))
    open(os.path.join(root, 'conf', u'caf\u00e9.txt'), 'w').close()
    assert _record.misnamed(root, u'conf/caf\u00c3\u00a9.txt')
    assert not _record.misnamed(root, u'conf/other.txt')
    log = _trace.Log(root, MARKER, SELF)
    log.feed('1 openat(AT_FDCWD</>, "%s/flake.nix", O_RDONLY) = -1 ENOENT\n' % root)
    log.feed('1 openat(AT_FDCWD</>, "%s/conf/caf\u00c3\u00a9.txt", O_RDONLY) = -1 ENOENT\n'
             % root)
    log.feed('1 write(2, "trace: %s0 {}\\n", 10) = 10\n' % MARKER)
    assert _record.chain_of(log, _record.Describer(root), {}) is None


@needs_strace
def test_a_chain_holds_until_what_it_read_changes(tmp_path):
    root = str(tmp_path / 'source')
    make_source(root)
    log = traced(tmp_path, root)
    values = {'rev': 'one', 'outPath': root}
    chain = _record.chain_of(log, _record.Describer(root), values)
    assert chain['segments'][1]['self'] == {'rev': 'one'}

    def holds(changes=None, new_values=None):
        other = str(tmp_path / ('copy-%d' % len(os.listdir(str(tmp_path)))))
        shutil.copytree(root, other, symlinks=True)
        (changes or (lambda _r: None))(other)
        return _record.valid_upto(chain, _record.Describer(other),
                                  dict(new_values or values, outPath=other))[0]

    assert holds() == 2
    # a file nobody read: both hold
    assert holds(lambda r: open(os.path.join(r, 'README'), 'w').close()) == 2
    # c's file is not read, but hosts/ was listed: a new host changes the listing
    assert holds(lambda r: os.makedirs(os.path.join(r, 'hosts', 'd'))) == 0
    assert holds(lambda r: open(os.path.join(r, 'hosts', 'c', 'default.nix'), 'w').close()) == 2
    # the absent path appears
    assert holds(lambda r: open(os.path.join(r, 'hosts', 'a', 'extra'), 'w').close()) == 0
    # b's file is read through its link: a change to a's file breaks the first
    # segment (a read it) and so the second
    assert holds(lambda r: _write(r, 'hosts/a/default.nix', '"A"')) == 0

    def relink(r):
        os.unlink(os.path.join(r, 'hosts', 'b'))
        shutil.copytree(os.path.join(r, 'hosts', 'a'), os.path.join(r, 'hosts', 'b'))
    # the link became a folder with the same content: readDir gives another
    # type for it (the listing was read first), and b no longer passes a link
    assert holds(relink) == 0
    # only looked at: its content may change, its executable bit may not
    assert holds(lambda r: _write(r, 'files/tool', 'other')) == 2
    assert holds(lambda r: os.chmod(os.path.join(r, 'files', 'tool'), 0o644)) == 1
    # the second host forced self.rev: another revision breaks it alone
    assert holds(new_values={'rev': 'two'}) == 1


def _write(root, rel, text):
    with open(os.path.join(root, rel), 'w') as handle:
        handle.write(text)


@needs_strace
def test_an_unknown_forced_attribute_or_a_cut_path_keeps_no_record(tmp_path):
    root = str(tmp_path / 'source')
    make_source(root)
    log = traced(tmp_path, root)
    assert _record.chain_of(log, _record.Describer(root), {'outPath': root}) is None
    cut = _trace.Log(root, MARKER, SELF)
    cut.feed('1 openat(AT_FDCWD</>, "%s/hosts/aaaa"..., O_RDONLY) = 3\n' % root)
    assert cut.broken and 'cut short' in cut.broken
    up = _trace.Log(root, MARKER, SELF)
    up.feed('1 newfstatat(AT_FDCWD</>, "%s/hosts/../../etc", 0x1, 0) = 0\n' % root)
    assert up.broken and '..' in up.broken


def test_unfinished_calls_are_joined_and_fd_relative_paths_placed(tmp_path):
    root = '/nix/store/00000000000000000000000000000000-source'
    log = _trace.Log(root, MARKER, SELF)
    log.feed('7 openat(AT_FDCWD</tmp>, "%s/flake.nix", O_RDONLY|O_CLOEXEC <unfinished ...>\n'
             % root)
    log.feed('8 newfstatat(5<%s/hosts>, "x", 0x1, AT_SYMLINK_NOFOLLOW) = -1 ENOENT (No such '
             'file or directory)\n' % root)
    log.feed('7 <... openat resumed>) = 4<%s/flake.nix>\n' % root)
    log.feed('7 getdents64(4<%s/lib>, 0x55 /* 3 entries */, 32768) = 80\n' % root)
    log.feed('7 openat(AT_FDCWD</tmp>, "/nix/store/11111111111111111111111111111111-nixpkgs/'
             'default.nix", O_RDONLY) = 5\n')
    log.feed('7 write(2<pipe:[1]>, "trace: %s0 {\\"drv\\"...", 40) = 40\n' % MARKER)
    assert log.segments == [{'reads': {'flake.nix': 'read', 'hosts/x': 'stat', 'lib': 'list'},
                             'self': set()}]


def test_describe_names_each_link_and_stays_in_the_source(tmp_path):
    root = str(tmp_path / 'source')
    make_source(root)
    os.symlink('/etc/hostname', os.path.join(root, 'away'))
    os.symlink('../..', os.path.join(root, 'hosts', 'up'))
    assert _record.describe(root, 'hosts/b/default.nix', 'stat') == \
        'link:hosts/b->a|file:-'
    assert _record.describe(root, 'away', 'read') == 'link:away->/etc/hostname|outside:/etc/hostname'
    assert _record.describe(root, 'hosts/up/x', 'stat').endswith('outside:..')
    assert _record.describe(root, 'missing/x', 'read') == 'absent'
    assert _record.describe(root, 'files/tool', 'stat') == 'file:x'
    assert _record.describe(root, 'files', 'list').startswith('dir:')
    assert _record.describe(root, 'files', 'stat') == 'dir'


def instantiate(expr):
    env = dict(os.environ, NIX_CONFIG='experimental-features = nix-command flakes\nsubstituters =')
    return subprocess.run(['nix', 'eval', '--raw', '--expr', expr], check=True, env=env,
                          stdout=subprocess.PIPE).stdout.decode()


@pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')
def test_a_derivation_that_names_the_source_is_found_through_its_inputs():
    needle = '0123456789abcdfghijklmnpqrsvwxyz'
    drv = ('derivation { name = "%s"; system = "x86_64-linux"; builder = "/bin/sh"; '
           'v = %s; }')
    leaf = drv % ('leaf', '"/nix/store/%s-source"' % needle)
    top = instantiate('(%s).drvPath' % (drv % ('top', '(%s)' % (drv % ('mid', '(%s)' % leaf)))))
    clean = instantiate('(%s).drvPath' % (drv % ('clean', '(%s)' % (drv % ('x', '"y"')))))
    memo = {}
    assert _mentions.mentions(top, needle, memo)
    assert not _mentions.mentions(clean, needle, memo)
    # every derivation read once, decided
    assert all(value in (True, False) for value in memo.values()) and len(memo) == 5
    # one that cannot be read counts as naming it: nothing is kept then
    assert _mentions.mentions('/nix/store/%s-gone.drv' % ('0' * 32), needle, {})


def test_describe_follows_a_link_inside_the_source_and_stops_at_a_loop(tmp_path):
    """An absolute link that stays in the source is followed there; a
    loop of links, or a file that is neither file nor folder, is named
    as such, never followed forever."""
    root = str(tmp_path / 'source')
    make_source(root)
    os.symlink(os.path.join(root, 'files'), os.path.join(root, 'inside'))
    os.symlink('round', os.path.join(root, 'round'))
    os.mkfifo(os.path.join(root, 'pipe'))
    assert _record.describe(root, 'inside/tool', 'stat') == \
        'link:inside->%s/files|file:x' % root
    assert _record.describe(root, 'round', 'read').endswith('|loop')
    assert _record.describe(root, 'pipe', 'read') == 'other'


# Nix 2.20 and later keep a fetcher cache: one sqlite table whose rows of
# these two domains let Nix skip reading a source it hashed before
FETCHER_CACHE = ('CREATE TABLE Cache (domain text not null, key text not null, '
                 'value text not null, timestamp integer not null, primary key (domain, key))')


def fetcher_cache(path, rows):
    import sqlite3
    db = sqlite3.connect(path)
    try:
        db.execute(FETCHER_CACHE)
        db.executemany('INSERT INTO Cache VALUES (?, ?, ?, ?)', rows)
        db.commit()
    finally:
        db.close()


def cache_rows(path):
    import sqlite3
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute('SELECT domain, key FROM Cache'))
    finally:
        db.close()


def test_a_recorded_evaluator_never_gets_a_row_that_skips_reading_its_source(tmp_path):
    """An evaluator whose reads are recorded runs with a private copy of
    the user's fetcher cache: the rows that would let Nix skip reading a
    source path are gone (a record missing those reads would let a host
    be reused when its files changed), every other row is kept, and the
    user's own cache is untouched. Only the rows a warm-up found for the
    pinned copy's root are added back; a cache that is no sqlite file is
    not copied (Nix makes its own)."""
    user = tmp_path / 'user-cache'
    user.mkdir()
    root_key = json.dumps({'path': '/', 'fingerprint': 'f'})
    file_key = json.dumps({'path': '/hosts/a.nix', 'fingerprint': 'f'})
    rows = [('sourcePathToHash', file_key, 'sha256-a', 1),
            ('fetchToStore', file_key, '/nix/store/x', 1),
            ('gitRepoToRevCount', 'https://example.invalid/r', '7', 1)]
    fetcher_cache(str(user / 'fetcher-cache-v3.sqlite'), rows)
    (user / 'fetcher-cache-v9.sqlite').write_bytes(b'not a database, a torn file')
    environ = {'NIX_CACHE_HOME': str(user)}
    assert _record.nix_cache_home(environ) == str(user)

    def fetch(env):
        # what one Nix process that fetched the pinned copy added
        import sqlite3
        path = os.path.join(env['NIX_CACHE_HOME'], 'fetcher-cache-v3.sqlite')
        db = sqlite3.connect(path)
        db.executemany('INSERT INTO Cache VALUES (?, ?, ?, ?)', [
            ('sourcePathToHash', root_key, 'sha256-root', 2),
            ('fetchToStore', root_key, '/nix/store/root', 2),
            ('sourcePathToHash', json.dumps({'path': '/lib', 'fingerprint': 'f'}), 's', 2),
            ('fetchToStore', 'not json', 'x', 2)])
        db.commit()
        db.close()
    warm = _record.warm_rows(str(tmp_path / 'warm'), fetch, environ)
    assert sorted((row[1], row[2]) for row in warm['rows']) == [
        ('fetchToStore', root_key), ('sourcePathToHash', root_key)]

    env = _record.private_cache(str(tmp_path / 'eval'), environ, warm)
    copy = os.path.join(env['NIX_CACHE_HOME'], 'fetcher-cache-v3.sqlite')
    assert cache_rows(copy) == sorted([
        ('fetchToStore', root_key), ('gitRepoToRevCount', 'https://example.invalid/r'),
        ('sourcePathToHash', root_key)])
    assert not os.path.exists(os.path.join(env['NIX_CACHE_HOME'], 'fetcher-cache-v9.sqlite'))
    assert cache_rows(str(user / 'fetcher-cache-v3.sqlite')) == sorted(
        (domain, key) for domain, key, _value, _time in rows)

    # a user without a fetcher cache of that version gets the warm-up's own
    # (a copy of the first user's, stripped as any copy is): the other
    # rows, and of the skipping ones the root's only
    bare = tmp_path / 'bare'
    bare.mkdir()
    env = _record.private_cache(str(tmp_path / 'eval-bare'), {'NIX_CACHE_HOME': str(bare)}, warm)
    assert cache_rows(os.path.join(env['NIX_CACHE_HOME'], 'fetcher-cache-v3.sqlite')) == sorted([
        ('fetchToStore', root_key), ('gitRepoToRevCount', 'https://example.invalid/r'),
        ('sourcePathToHash', root_key)])
