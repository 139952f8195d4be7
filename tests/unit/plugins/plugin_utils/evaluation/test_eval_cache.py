"""The evaluation cache between runs (plugin_utils/evaluation/cache/_cache.py): a
hit only for the same locked flake, attribute, Nix and options, and only
while its derivation is valid in the store; anything else, and anything
broken, is a miss. Real Nix on this machine, a flake of plain derivations in
a temporary folder (nothing is built: an evaluation only writes .drv files)."""

import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache import (  # noqa: E402
    _cache, _signing)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake import (  # noqa: E402
    _source)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._cache import (  # noqa: E402
    EvalCache)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')

FLAKE = '''{
  outputs = { self }: {
    one = derivation { name = "nixdeploy-eval-cache-one"; system = "@SYSTEM@";
                       builder = "/bin/sh"; args = [ "-c" "echo @WORD@ > $out" ]; };
    two = derivation { name = "nixdeploy-eval-cache-two"; system = "@SYSTEM@";
                       builder = "/bin/sh"; args = [ "-c" "echo two > $out" ]; };
  };
}
'''
APPLY = 'd: { drv_path = d.drvPath; out_path = d.outPath; system = d.system; }'
OPTIONS = {'substituters': '', 'allow-import-from-derivation': False}
# a well-formed store path no store holds
GONE = '/nix/store/' + '0' * 32 + '-nixdeploy-eval-cache-gone'


def write_flake(folder, word='one'):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'flake.nix'), 'w') as handle:
        handle.write(FLAKE.replace('@SYSTEM@', _nix.native_system()).replace('@WORD@', word))
    return 'path:%s' % folder


def runner(**kwargs):
    return _nix.NixCommand(_nix.NixOptions(options=dict(OPTIONS), **kwargs))


def fingerprint_of(run, flake):
    """The flake's pinned identity, as a run's sources give it."""
    return _source.pin(run, flake).identity


def locked(fingerprint):
    return fingerprint['url']


def evaluate(ref, attr):
    """What the evaluation answers for ``attr``: the three fields, from Nix."""
    out = subprocess.run(
        ['nix'] + _nix.EXPERIMENTAL + ['--option', 'substituters', '', 'eval', '--json',
                                       '%s#%s' % (ref, attr), '--apply', APPLY],
        check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    return json.loads(out)


@pytest.fixture(autouse=True)
def cache_key(tmp_path, monkeypatch):
    """The cache's key made in the test's own config folder, no key trusted
    but it (cache/_signing)."""
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'config'))
    monkeypatch.delenv(_signing.KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(_signing.TRUSTED_ENV, raising=False)


@pytest.fixture
def flake(tmp_path):
    return write_flake(str(tmp_path / 'flake'))


@pytest.fixture
def cache(tmp_path):
    return EvalCache(str(tmp_path / 'cache'))


def test_a_put_answer_is_a_hit_and_the_folder_and_file_are_private(flake, cache):
    run = runner()
    fingerprint = fingerprint_of(run, flake)
    assert fingerprint and fingerprint['narHash'].startswith('sha256-')
    result = evaluate(locked(fingerprint), 'one')
    key = cache.key(fingerprint, ['one'], run.features(), run.opts)
    assert len(key) == 64
    assert cache.get_many(run, [key]) == {}
    assert cache.put(key, dict(result, error='not stored'))
    assert cache.get_many(run, [key]) == {key: result}
    # the same answer a second run computes: same fingerprint, same key
    assert cache.key(fingerprint_of(runner(), flake), ['one'], run.features(),
                     runner().opts) == key
    assert stat.S_IMODE(os.stat(cache.folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(cache.folder, key + '.json')).st_mode) == 0o600
    with open(os.path.join(cache.folder, key + '.json')) as handle:
        assert sorted(json.load(handle)) == ['drv_path', 'out_path', 'signature', 'system']
    # the locked reference evaluates to what the flake's own reference does
    assert evaluate(flake, 'one') == result


def test_anything_else_misses(tmp_path, flake, cache):
    run = runner()
    fingerprint = fingerprint_of(run, flake)
    key = cache.key(fingerprint, ['one'], run.features(), run.opts)
    assert cache.put(key, evaluate(flake, 'one'))
    others = [
        cache.key(fingerprint, ['two'], run.features(), run.opts),
        cache.key(fingerprint, ['one'], ('nix', (2, 99, 0)), run.opts),
        cache.key(fingerprint, ['one'], run.features(),
                  _nix.NixOptions(options=dict(OPTIONS, system='aarch64-linux'))),
        cache.key(fingerprint, ['one'], run.features(),
                  _nix.NixOptions(options=dict(OPTIONS, **{'allow-import-from-derivation': True}))),
        cache.key(fingerprint, ['one'], run.features(),
                  _nix.NixOptions(options=dict(OPTIONS),
                                  extra_args=['--option', 'connect-timeout', '5'])),
    ]
    assert len(set(others + [key])) == len(others) + 1
    assert cache.get_many(run, others) == {}
    # show-trace changes no answer
    assert cache.key(fingerprint, ['one'], run.features(),
                     _nix.NixOptions(options=dict(OPTIONS), show_trace=True)) == key
    # a dict of options is digested as given, its values in the digest only
    plain = cache.key(fingerprint, ['one'], run.features(), {'access-tokens': 'github.com=s3cret'})
    assert plain != cache.key(fingerprint, ['one'], run.features(),
                              {'access-tokens': 'github.com=other'})

    # the flake's content changes: another fingerprint, another key, a miss.
    # A second later: newer Nix caches a path: flake's fetch by its
    # lastModified (whole seconds), and would find the old content for the
    # new locked reference (a NAR hash mismatch: an error, never a wrong answer)
    time.sleep(1.1)
    write_flake(flake[len('path:'):], word='changed')
    changed = fingerprint_of(run, flake)
    assert changed and changed['narHash'] != fingerprint['narHash']
    new_key = cache.key(changed, ['one'], run.features(), run.opts)
    assert new_key != key and cache.get_many(run, [new_key]) == {}
    now = evaluate(locked(changed), 'one')
    assert now == evaluate(flake, 'one')
    # the old locked reference never evaluates the new content: Nix 2.8 finds
    # the old source in the store by its narHash, newer Nix refuses it (a NAR
    # hash mismatch)
    try:
        before = evaluate(locked(fingerprint), 'one')
    except subprocess.CalledProcessError:
        before = None
    assert before != now


def test_what_cannot_be_pinned_is_not_cached(tmp_path, flake, cache):
    run = runner()
    fingerprint = fingerprint_of(run, flake)
    assert fingerprint
    for opts in (runner(impure=True).opts, runner(override_inputs={'nope': flake}).opts,
                 _nix.NixOptions(options=dict(OPTIONS, **{'pure-eval': False})),
                 _nix.NixOptions(options=dict(OPTIONS), extra_args=['--impure']),
                 _nix.NixOptions(options=dict(OPTIONS), extra_args=['--expr', '1']),
                 _nix.NixOptions(options=dict(OPTIONS), extra_args=['--file', 'x.nix']),
                 _nix.NixOptions(options=dict(OPTIONS), extra_args=['-I', 'nixpkgs=/x']),
                 _nix.NixOptions(options=dict(OPTIONS),
                                 extra_args=['--option', 'pure-eval', 'false']),
                 _nix.NixOptions(options=dict(OPTIONS), extra_args=['--store']),
                 # the operator's opt-in to the flake's nixConfig (which can
                 # set pure-eval = false where `nix config show` cannot see it)
                 _nix.NixOptions(options=dict(OPTIONS, **{'accept-flake-config': True})),
                 _nix.NixOptions(options=dict(OPTIONS, **{'accept-flake-config': 'true'})),
                 _nix.NixOptions(options=dict(OPTIONS), extra_args=['--accept-flake-config']),
                 _nix.NixOptions(options=dict(OPTIONS),
                                 extra_args=['--option', 'accept-flake-config', 'true'])):
        assert _cache.uncacheable(opts), opts.extra_args
        assert cache.key(fingerprint, ['one'], run.features(), opts) is None, opts.extra_args
    # what an allow-list knows to be pure is cached
    pure = _nix.NixOptions(options=dict(OPTIONS), extra_args=[
        '--show-trace', '--offline', '--store', 'local', '--option', 'max-jobs', '2'])
    assert _cache.uncacheable(pure) is None
    assert _cache.uncacheable(_nix.NixOptions(options=dict(
        OPTIONS, **{'accept-flake-config': False}))) is None
    assert 'nixConfig' in _cache.uncacheable(_nix.NixOptions(options=dict(
        OPTIONS, **{'accept-flake-config': True})))
    assert cache.key(fingerprint, ['one'], run.features(), pure)
    assert cache.key(None, ['one'], ('nix', (2, 8, 0)), {}) is None
    assert cache.get_many(runner(), [None]) == {}
    assert cache.put(None, evaluate(flake, 'one')) is False
    assert fingerprint_of(runner(), 'path:%s' % (tmp_path / 'no-such-flake')) is None


def test_a_broken_entry_is_a_miss(flake, cache):
    run = runner()
    fingerprint = fingerprint_of(run, flake)
    result = evaluate(flake, 'one')
    keys = [cache.key(fingerprint, [name], run.features(), run.opts) for name in 'abcdef']
    # signed with the run's own key, as a bug of its own would write them
    signed = [cache.signer.sign(key + '.json', entry) for key, entry in zip(keys[3:], [
        dict(result, extra='x'), dict(result, drv_path='/etc/passwd'), dict(result, system='x y')])]
    bad = ['{"drv_path": "/nix/st', 'not json', json.dumps([result])] + [
        json.dumps(entry) for entry in signed]
    for key, text in zip(keys, bad):
        with open(os.path.join(cache.folder, key + '.json'), 'w') as handle:
            handle.write(text)
    assert cache.get_many(run, keys + ['../../etc/passwd', 'zz']) == {}
    assert cache.put(keys[0], dict(result, drv_path='/tmp/x.drv')) is False
    assert cache.put('../escape', result) is False


def test_a_derivation_no_longer_in_the_store_misses_and_its_file_goes(flake, cache):
    run = runner()
    fingerprint = fingerprint_of(run, flake)
    good = cache.key(fingerprint, ['one'], run.features(), run.opts)
    gone = cache.key(fingerprint, ['two'], run.features(), run.opts)
    assert cache.put(good, evaluate(flake, 'one'))
    assert cache.put(gone, {'drv_path': GONE + '.drv', 'out_path': GONE,
                            'system': _nix.native_system()})
    other = cache.key(fingerprint, ['two'], run.features(), _nix.NixOptions(
        options=dict(OPTIONS), extra_args=['--show-trace']))
    assert cache.put(other, evaluate(flake, 'two'))
    before = run.processes
    assert sorted(cache.get_many(run, [good, other])) == sorted([good, other])
    assert run.processes == before + 1  # one nix derivation show for all of them
    # one gone: each is shown alone, the gone one misses
    assert list(cache.get_many(run, [good, gone])) == [good]
    assert not os.path.exists(os.path.join(cache.folder, gone + '.json'))
    assert os.path.exists(os.path.join(cache.folder, good + '.json'))


def _writer(folder, key, entries, rounds):
    cache = EvalCache(folder)
    for i in range(rounds):
        cache.put(key, entries[i % len(entries)])


def test_concurrent_writers_never_leave_half_a_file(flake, cache):
    result = evaluate(flake, 'one')
    other = dict(result, system='aarch64-linux')
    key = 'a' * 64
    path = os.path.join(cache.folder, key + '.json')
    wanted = [json.dumps(e, sort_keys=True) for e in (result, other)]
    ctx = multiprocessing.get_context('fork')
    writers = [ctx.Process(target=_writer, args=(cache.folder, key, [result, other], 300))
               for _writer_number in range(2)]
    for proc in writers:
        proc.start()
    seen = 0
    while any(p.is_alive() for p in writers) or not seen:
        try:
            with open(path) as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        whole = json.loads(text)
        assert cache.signer.verify(key + '.json', whole)[1] is None, text
        assert json.dumps(dict((k, v) for k, v in whole.items() if k != 'signature'),
                          sort_keys=True) in wanted, text
        assert cache._read(key) in (result, other)
        seen += 1
    for proc in writers:
        proc.join()
        assert proc.exitcode == 0
    assert seen
    assert [n for n in os.listdir(cache.folder) if n.startswith('.tmp-')] == []


def test_old_entries_are_pruned_at_most_once_a_day(flake, cache):
    result = evaluate(flake, 'one')
    old, new = 'b' * 64, 'c' * 64
    assert cache.put(old, result) and cache.put(new, result)
    month = time.time() - 31 * 24 * 3600
    os.utime(os.path.join(cache.folder, old + '.json'), (month, month))
    stray = os.path.join(cache.folder, '.tmp-left.json')
    open(stray, 'w').close()
    os.utime(stray, (month, month))
    assert cache.prune() is False  # the puts above looked a moment ago
    assert cache.prune(now=time.time() + 25 * 3600) is True
    assert sorted(os.listdir(cache.folder)) == ['.pruned', new + '.json']


def test_folders(tmp_path, monkeypatch):
    assert EvalCache.default_folder({'NIXDEPLOY_EVAL_CACHE': '/nix/var/x'}) == '/nix/var/x'
    assert EvalCache.default_folder({'XDG_CACHE_HOME': '/c', 'HOME': '/h'}) == '/c/nixdeploy-eval'
    assert EvalCache.default_folder({'HOME': '/h'}) == '/h/.cache/nixdeploy-eval'
    shared = tmp_path / 'shared'
    shared.mkdir()
    shared.chmod(0o777)
    cache = EvalCache(str(shared))
    assert not cache.usable
    assert cache.put('d' * 64, {'drv_path': GONE + '.drv', 'out_path': GONE,
                                'system': 'x86_64-linux'}) is False
    assert os.listdir(str(shared)) == []
    assert _cache.FORMAT == 1


def test_a_flake_with_inputs_is_keyed_by_them_and_overrides_are_not_cached(tmp_path, cache):
    lib, top = (str(tmp_path / n) for n in ('lib', 'top'))
    os.makedirs(lib)
    with open(os.path.join(lib, 'flake.nix'), 'w') as handle:
        handle.write('{ outputs = { self }: { word = "lib"; }; }\n')
    os.makedirs(top)
    with open(os.path.join(top, 'flake.nix'), 'w') as handle:
        handle.write(FLAKE.replace('@SYSTEM@', _nix.native_system())
                     .replace('@WORD@', '${lib.word}')
                     .replace('{ self }', '{ self, lib }')
                     .replace('{\n  outputs', '{\n  inputs.lib.url = "path:%s";\n  outputs' % lib))
    ref = 'path:%s' % top
    _nix.NixCommand(runner().opts).check('flake lock', [ref], 'lock', flake_command=True)
    plain = fingerprint_of(runner(), ref)
    assert plain and 'lib' in plain['locks']['nodes']
    # an overridden input is not the flake's own: never cached
    overridden = runner(override_inputs={'lib': 'path:%s' % lib})
    assert cache.key(fingerprint_of(overridden, ref), ['one'], overridden.features(),
                     overridden.opts) is None
    # the input changes: the flake's lock changes with it, so does the key
    with open(os.path.join(lib, 'flake.nix'), 'w') as handle:
        handle.write('{ outputs = { self }: { word = "changed"; }; }\n')
    _nix.NixCommand(runner().opts).check('flake lock', ['--update-input', 'lib', ref], 'lock',
                                         flake_command=True)
    changed = fingerprint_of(runner(), ref)
    assert changed and cache.key(changed, ['one'], '2.8', {}) != cache.key(plain, ['one'], '2.8', {})


# ------------------------------------------------------------ a co-tenant's folder
# nobody: another account of the controller
OTHER_UID = 65534


def test_a_folder_reached_through_a_link_is_never_used(tmp_path, flake):
    """A co-tenant plants the cache's name as a link to a folder of the job's
    user it can read: the job never opens it, reads or writes nothing there."""
    theirs = tmp_path / 'readable'
    theirs.mkdir(mode=0o755)
    (tmp_path / 'cache').symlink_to(theirs)
    cache = EvalCache(str(tmp_path / 'cache'))
    assert not cache.usable and 'cache' in cache.reason, cache.reason
    assert cache.put('d' * 64, evaluate(flake, 'one')) is False
    assert os.listdir(str(theirs)) == []


def test_every_folder_above_is_checked_as_openssh_does(tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    shared.chmod(0o777)
    cache = EvalCache(str(shared / 'cache'))
    assert not cache.usable and 'writable by another account' in cache.reason
    assert not (shared / 'cache').exists()
    # a folder of another account above it
    theirs = tmp_path / 'theirs'
    theirs.mkdir()
    os.chown(str(theirs), OTHER_UID, OTHER_UID)
    assert not EvalCache(str(theirs / 'cache')).usable
    # a sticky folder like /tmp: no one else can rename what the user made there
    sticky = tmp_path / 'sticky'
    sticky.mkdir()
    sticky.chmod(0o1777)
    cache = EvalCache(str(sticky / 'cache'))
    assert cache.usable, cache.reason
    assert stat.S_IMODE(os.stat(str(sticky / 'cache')).st_mode) == 0o700


def test_a_name_flipped_after_the_open_changes_nothing(tmp_path, flake):
    """The co-tenant flips the name to its own folder of forged entries after
    the job opened it: every read, write, time update and removal still goes
    to the folder the job opened and checked."""
    run = runner()
    cache = EvalCache(str(tmp_path / 'cache'))
    fingerprint = fingerprint_of(run, flake)
    key = cache.key(fingerprint, ['one'], run.features(), run.opts)
    result = evaluate(flake, 'one')
    assert cache.put(key, result)
    forged = tmp_path / 'forged'
    forged.mkdir()
    with open(str(forged / (key + '.json')), 'w') as handle:
        json.dump(dict(result, out_path=evaluate(flake, 'two')['out_path']), handle)
    os.rename(str(tmp_path / 'cache'), str(tmp_path / 'moved'))
    (tmp_path / 'cache').symlink_to(forged)
    assert cache.get_many(run, [key]) == {key: result}
    other = cache.key(fingerprint, ['two'], run.features(), run.opts)
    assert cache.put(other, evaluate(flake, 'two'))
    assert sorted(os.listdir(str(tmp_path / 'moved'))) == sorted(
        [key + '.json', other + '.json', '.pruned'])
    assert os.listdir(str(forged)) == [key + '.json']


def test_a_hit_must_be_its_derivations_output_and_system(flake, cache):
    """An entry whose out_path is not an output of its drv_path (another
    host's system beside a valid derivation), or whose system is not the
    derivation's, is a miss and goes."""
    run = runner()
    fingerprint = fingerprint_of(run, flake)
    one, two = evaluate(flake, 'one'), evaluate(flake, 'two')
    mixed, other_system, good = (cache.key(fingerprint, [n], run.features(), run.opts)
                                 for n in ('a', 'b', 'c'))
    assert cache.put(mixed, dict(one, out_path=two['out_path']))
    assert cache.put(other_system, dict(one, system='aarch64-linux'))
    assert cache.put(good, one)
    assert cache.get_many(run, [mixed, other_system, good]) == {good: one}
    assert sorted(os.listdir(cache.folder)) == ['.pruned', good + '.json']


def test_a_trailing_newline_is_no_store_path(flake, cache):
    result = evaluate(flake, 'one')
    for field in ('drv_path', 'out_path', 'system'):
        assert _cache._checked(dict(result, **{field: result[field] + '\n'})) is None
        assert cache.put('e' * 64, dict(result, **{field: result[field] + '\n'})) is False


def test_a_link_above_the_folder_is_followed_only_when_the_user_made_it(tmp_path):
    sticky = tmp_path / 'sticky'
    sticky.mkdir()
    sticky.chmod(0o1777)
    victim = tmp_path / 'victim'
    victim.mkdir()
    (sticky / 'theirs').symlink_to(victim)
    os.lchown(str(sticky / 'theirs'), OTHER_UID, OTHER_UID)
    cache = EvalCache(str(sticky / 'theirs' / 'eval'))
    assert not cache.usable and 'another account' in cache.reason, cache.reason
    assert os.listdir(str(victim)) == []
    (sticky / 'mine').symlink_to(victim)
    assert EvalCache(str(sticky / 'mine' / 'eval')).usable
    # a folder of the user's readable by others is made private
    (tmp_path / 'open').mkdir(mode=0o755)
    assert EvalCache(str(tmp_path / 'open')).usable
    assert stat.S_IMODE(os.stat(str(tmp_path / 'open')).st_mode) == 0o700


def test_an_entry_the_user_did_not_write_is_a_miss_and_goes(flake, cache):
    run = runner()
    fingerprint = fingerprint_of(run, flake)
    key = cache.key(fingerprint, ['one'], run.features(), run.opts)
    path = os.path.join(cache.folder, key + '.json')
    with open(path, 'w') as handle:
        json.dump(evaluate(flake, 'one'), handle)
    os.chown(path, OTHER_UID, OTHER_UID)
    assert cache.get_many(run, [key]) == {}
    assert not os.path.exists(path)
