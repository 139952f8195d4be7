"""The evaluation cache between runs (plugin_utils/build/_eval_cache.py): a
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

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.build import _eval_cache  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.build._eval_cache import (  # noqa: E402
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
    return _nix.Runner(_nix.NixOptions(options=dict(OPTIONS), **kwargs))


def evaluate(ref, attr):
    """What the evaluation answers for ``attr``: the three fields, from Nix."""
    out = subprocess.run(
        ['nix'] + _nix.EXPERIMENTAL + ['--option', 'substituters', '', 'eval', '--json',
                                       '%s#%s' % (ref, attr), '--apply', APPLY],
        check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    return json.loads(out)


@pytest.fixture
def flake(tmp_path):
    return write_flake(str(tmp_path / 'flake'))


@pytest.fixture
def cache(tmp_path):
    return EvalCache(str(tmp_path / 'cache'))


def test_a_put_answer_is_a_hit_and_the_folder_and_file_are_private(flake, cache):
    run = runner()
    fingerprint = cache.fingerprint(run, flake)
    assert fingerprint and fingerprint['narHash'].startswith('sha256-')
    result = evaluate(cache.locked_flake(fingerprint), 'one')
    key = cache.key(fingerprint, ['one'], run.features(), run.opts)
    assert len(key) == 64
    assert cache.get_many(run, [key]) == {}
    assert cache.put(key, dict(result, error='not stored'))
    assert cache.get_many(run, [key]) == {key: result}
    # the same answer a second run computes: same fingerprint, same key
    assert cache.key(cache.fingerprint(runner(), flake), ['one'], run.features(),
                     runner().opts) == key
    assert stat.S_IMODE(os.stat(cache.folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(cache.folder, key + '.json')).st_mode) == 0o600
    with open(os.path.join(cache.folder, key + '.json')) as handle:
        assert sorted(json.load(handle)) == ['drv_path', 'out_path', 'system']
    # the locked reference evaluates to what the flake's own reference does
    assert evaluate(flake, 'one') == result


def test_anything_else_misses(tmp_path, flake, cache):
    run = runner()
    fingerprint = cache.fingerprint(run, flake)
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
                  _nix.NixOptions(options=dict(OPTIONS), extra_args=['--option', 'a', 'b'])),
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
    changed = cache.fingerprint(run, flake)
    assert changed and changed['narHash'] != fingerprint['narHash']
    new_key = cache.key(changed, ['one'], run.features(), run.opts)
    assert new_key != key and cache.get_many(run, [new_key]) == {}
    now = evaluate(cache.locked_flake(changed), 'one')
    assert now == evaluate(flake, 'one')
    # the old locked reference never evaluates the new content: Nix 2.8 finds
    # the old source in the store by its narHash, newer Nix refuses it (a NAR
    # hash mismatch)
    try:
        before = evaluate(cache.locked_flake(fingerprint), 'one')
    except subprocess.CalledProcessError:
        before = None
    assert before != now


def test_what_cannot_be_pinned_is_not_cached(tmp_path, flake, cache):
    assert cache.fingerprint(runner(impure=True), flake) is None
    assert cache.key(None, ['one'], ('nix', (2, 8, 0)), {}) is None
    assert cache.get_many(runner(), [None]) == {}
    assert cache.put(None, evaluate(flake, 'one')) is False
    assert cache.fingerprint(runner(), 'path:%s' % (tmp_path / 'no-such-flake')) is None
    # an override input that names no input of the flake
    assert cache.fingerprint(runner(override_inputs={'nope': flake}), flake) is None


def test_a_broken_entry_is_a_miss(flake, cache):
    run = runner()
    fingerprint = cache.fingerprint(run, flake)
    result = evaluate(flake, 'one')
    keys = [cache.key(fingerprint, [name], run.features(), run.opts) for name in 'abcdef']
    bad = ['{"drv_path": "/nix/st', 'not json', json.dumps([result]),
           json.dumps(dict(result, extra='x')), json.dumps(dict(result, drv_path='/etc/passwd')),
           json.dumps(dict(result, system='x y'))]
    for key, text in zip(keys, bad):
        with open(os.path.join(cache.folder, key + '.json'), 'w') as handle:
            handle.write(text)
    assert cache.get_many(run, keys + ['../../etc/passwd', 'zz']) == {}
    assert cache.put(keys[0], dict(result, drv_path='/tmp/x.drv')) is False
    assert cache.put('../escape', result) is False


def test_a_derivation_no_longer_in_the_store_misses_and_its_file_goes(flake, cache):
    run = runner()
    fingerprint = cache.fingerprint(run, flake)
    good = cache.key(fingerprint, ['one'], run.features(), run.opts)
    gone = cache.key(fingerprint, ['two'], run.features(), run.opts)
    assert cache.put(good, evaluate(flake, 'one'))
    assert cache.put(gone, {'drv_path': GONE + '.drv', 'out_path': GONE,
                            'system': _nix.native_system()})
    before = run.processes
    assert list(cache.get_many(run, [good, gone])) == [good]
    assert run.processes == before + 1  # one nix-store for all of them
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
        assert json.dumps(json.loads(text), sort_keys=True) in wanted, text
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
    assert _eval_cache.FORMAT == 1


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
    _nix.Runner(runner().opts).check('flake lock', [ref], 'lock', flake_command=True)
    plain = cache.fingerprint(runner(), ref)
    assert plain and 'lib' in plain['locks']['nodes']
    # an overridden input is not the flake's own: never cached
    assert cache.fingerprint(runner(override_inputs={'lib': 'path:%s' % lib}), ref) is None
    # the input changes: the flake's lock changes with it, so does the key
    with open(os.path.join(lib, 'flake.nix'), 'w') as handle:
        handle.write('{ outputs = { self }: { word = "changed"; }; }\n')
    _nix.Runner(runner().opts).check('flake lock', ['--update-input', 'lib', ref], 'lock',
                                     flake_command=True)
    changed = cache.fingerprint(runner(), ref)
    assert changed and cache.key(changed, ['one'], '2.8', {}) != cache.key(plain, ['one'], '2.8', {})
