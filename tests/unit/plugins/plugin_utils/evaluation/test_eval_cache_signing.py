"""Who can answer for the evaluation cache: its key (plugin_utils/evaluation/
cache/_signing.py, cache/_cache.py; docs/eval-cache.md "Who can answer for the
cache: its key"). Whoever can write the cache folder as the job's user (a CI
cache restored into the job, a shared volume) writes plain files there: an
entry, a reuse entry, a record chain not signed by the run's key or a key it
trusts is a miss, counted once; a record that checks nothing is refused
whoever signed it; a distrust mark counts whatever its size or signature.
Real files, real Nix (a flake of plain derivations: nothing is built), and
for the planted reuse entry a real run of the stage under strace."""

import base64
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
    _signing)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._cache import (  # noqa: E402
    EvalCache)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record._record import (  # noqa: E402
    FORMAT, chain_id)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402
from tests.unit.plugins.plugin_utils.evaluation.test_eval_cache import (  # noqa: E402
    evaluate, fingerprint_of, runner, write_flake)

pytestmark = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')

KEY_FILE, TRUSTED = _signing.KEY_FILE_ENV, _signing.TRUSTED_ENV
# the reviewer's chain: one segment that reads nothing, so holds for any content
EMPTY_CHAIN = {'format': FORMAT, 'segments': [{'reads': {}, 'self': {}}]}


def home(tmp_path, name):
    """The environment of a job whose user's config folder is ``name``."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / name))
    env.pop(KEY_FILE, None)
    env.pop(TRUSTED, None)
    return env


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'config'))
    monkeypatch.delenv(KEY_FILE, raising=False)
    monkeypatch.delenv(TRUSTED, raising=False)


@pytest.fixture
def flake(tmp_path):
    return write_flake(str(tmp_path / 'flake'))


def keys_of(cache, flake, names=('one', 'two')):
    run = runner()
    fingerprint = fingerprint_of(run, flake)
    return run, [cache.key(fingerprint, [name], run.features(), run.opts) for name in names]


def plant(folder, name, data, signer=None):
    """Write ``data`` as file ``name`` of the folder as the job's user can:
    a plain file, unsigned or signed with ``signer`` (not the run's key)."""
    if signer is not None:
        data = signer.sign(name, data)
    path = os.path.join(folder, name)
    with open(path, 'w') as handle:
        json.dump(data, handle)
    os.chmod(path, 0o600)


def attacker(tmp_path):
    """A Signer of a key the run does not know (the attacker's own)."""
    return _signing.Signer.from_environment(home(tmp_path, 'attacker'))


def a_chain(rel='flake.nix'):
    """A chain as a real evaluator leaves one: its first segment reads the
    flake's own flake.nix."""
    return {'format': FORMAT, 'segments': [
        {'reads': {rel: ['read', 'file:-:' + 'a' * 64], 'hosts': ['list', 'dir:' + 'd' * 64]},
         'self': {}},
        {'reads': {'hosts/b.nix': ['read', 'file:-:' + 'b' * 64]}, 'self': {}}]}


# ------------------------------------------------------------ planted entries
@pytest.mark.parametrize('signed', ['unsigned', 'another key'])
def test_the_reviewers_planted_entry_and_empty_chain_are_misses(tmp_path, flake, signed):
    """A reuse entry rewritten to name another system, its chain one empty
    segment (valid for any content), written as plain files into the folder:
    unsigned, or signed with a key the run does not trust. Neither is read;
    both are counted, once."""
    cache = EvalCache(str(tmp_path / 'cache'))
    run, (key, plain) = keys_of(cache, flake)
    evil = evaluate(flake, 'two')
    signer = attacker(tmp_path) if signed == 'another key' else None
    chain = chain_id(EMPTY_CHAIN)
    plant(cache.folder, 'chain-%s.json' % chain, EMPTY_CHAIN, signer)
    plant(cache.folder, key + '.json', dict(evil, chain=chain, upto=0, origin={}), signer)
    plant(cache.folder, plain + '.json', evil, signer)
    later = EvalCache(cache.folder)
    assert later.get_reuse(key) is None
    assert later.get_chain(chain) is None
    assert later.get_many(run, [plain]) == {}
    # asked again: still three files, said in one line
    assert later.get_reuse(key) is None and later.get_chain(chain) is None
    why = 'unsigned' if signed == 'unsigned' else 'by a key not in %s' % TRUSTED
    assert later.ignored_note() == (
        '3 evaluation cache entries in %s were ignored (evaluated anew): 3 not signed by this '
        "run's key or a trusted one (3 %s)" % (cache.folder, why)), later.ignored_note()
    # the planted files stay (another job's key may trust them), and a
    # real answer of the run replaces the plain one
    assert cache.put(plain, evaluate(flake, 'one'))
    assert EvalCache(cache.folder).get_many(run, [plain]) == {plain: evaluate(flake, 'one')}


def test_an_entry_moved_under_another_name_is_a_miss(tmp_path, flake):
    """Signatures cover the file's name: the run's own signed entry copied
    under another key's name answers nothing there."""
    cache = EvalCache(str(tmp_path / 'cache'))
    run, (one, two) = keys_of(cache, flake)
    assert cache.put(one, evaluate(flake, 'one'))
    shutil.copy(os.path.join(cache.folder, one + '.json'),
                os.path.join(cache.folder, two + '.json'))
    later = EvalCache(cache.folder)
    assert later.get_many(run, [one, two]) == {one: evaluate(flake, 'one')}
    assert 'changed or moved since they were signed' in later.ignored_note()


@pytest.mark.skipif(not shutil.which('strace') or not shutil.which('git'),
                    reason='needs strace and git')
@pytest.mark.parametrize('signed', ['unsigned', 'another key'])
@pytest.mark.parametrize('shape', ['empty', 'flake.nix only'])
def test_a_planted_reuse_entry_never_answers_a_run(tmp_path, monkeypatch, signed, shape):
    """The whole attack on a real run: after a recorded run, every reuse
    entry of the folder is rewritten to name host b's system with a chain
    of one segment, as plain files: the reviewer's empty one, or one that
    reads only flake.nix as it is now (copied from a real chain: it holds
    for every commit that leaves flake.nix alone, so only the signature
    keeps it out). The next commit's run evaluates every host and each
    answer is what `nix eval` gives (Flake.run checks each)."""
    from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse import Flake, how
    monkeypatch.setenv('NIX_CONFIG', 'experimental-features = nix-command flakes\nsubstituters =')
    flake = Flake(str(tmp_path))
    flake.run()
    signer = attacker(tmp_path) if signed == 'another key' else None
    truth = flake.truth()
    reuse = {}
    for name in os.listdir(flake.cache):
        if name.endswith('.json') and not name.startswith('chain-'):
            with open(os.path.join(flake.cache, name)) as handle:
                entry = json.load(handle)
            if 'chain' in entry:
                reuse[name] = entry
    evil = [e for e in reuse.values() if e['drv_path'] == truth['b']][0]
    planted = EMPTY_CHAIN
    if shape == 'flake.nix only':
        with open(os.path.join(flake.cache, 'chain-%s.json' % evil['chain'])) as handle:
            first = json.load(handle)['segments'][0]['reads']['flake.nix']
        planted = {'format': FORMAT, 'segments': [{'reads': {'flake.nix': first}, 'self': {}}]}
    chain = chain_id(planted)
    plant(flake.cache, 'chain-%s.json' % chain, planted, signer)
    for name, entry in reuse.items():
        plant(flake.cache, name, dict(entry, drv_path=evil['drv_path'], out_path=evil['out_path'],
                                      system=evil['system'], chain=chain, upto=0), signer)
    flake.write('README', 'y')
    flake.commit('readme')
    entries, _figures = flake.run()
    assert how(entries) == dict.fromkeys("abcd", "evaluated"), entries


# ------------------------------------------------------------ keys
def test_the_same_key_hits_and_the_key_is_private_and_nixs_own_format(tmp_path, flake):
    cache = EvalCache(str(tmp_path / 'cache'))
    assert cache.usable, cache.reason
    run, (one, two) = keys_of(cache, flake)
    assert cache.put(one, evaluate(flake, 'one'))
    later = EvalCache(cache.folder)
    assert later.get_many(run, [one]) == {one: evaluate(flake, 'one')}
    assert later.ignored_note() is None
    path = tmp_path / 'config' / 'nixdeploy' / 'eval-cache.key'
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(path.parent)).st_mode) == 0o700
    # Nix reads it as its own secret key: the public key it gives is ours
    public = subprocess.run(['nix'] + _nix.EXPERIMENTAL + ['key', 'convert-secret-to-public'],
                            input=path.read_text(), stdout=subprocess.PIPE, check=True,
                            universal_newlines=True).stdout.strip()
    assert public == later.signer.public_key()
    secret = path.read_text().strip().split(':')[1]
    assert secret not in repr(later.signer) and secret not in json.dumps(
        [open(os.path.join(cache.folder, n)).read() for n in os.listdir(cache.folder)
         if n.endswith('.json')])


def test_a_key_nix_made_is_used_from_the_environment(tmp_path, flake, monkeypatch):
    secret = subprocess.run(['nix'] + _nix.EXPERIMENTAL + ['key', 'generate-secret',
                                                           '--key-name', 'team-eval-1'],
                            stdout=subprocess.PIPE, check=True).stdout
    key_file = tmp_path / 'credential'
    key_file.write_bytes(secret)
    key_file.chmod(0o600)
    monkeypatch.setenv(KEY_FILE, str(key_file))
    cache = EvalCache(str(tmp_path / 'cache'))
    assert cache.usable, cache.reason
    run, (one, _two) = keys_of(cache, flake)
    assert cache.put(one, evaluate(flake, 'one'))
    with open(os.path.join(cache.folder, one + '.json')) as handle:
        assert json.load(handle)['signature'].startswith('team-eval-1:')
    assert EvalCache(cache.folder).get_many(run, [one]) == {one: evaluate(flake, 'one')}
    # nothing was made in the config folder
    assert not (tmp_path / 'config').exists()


def test_a_cache_filled_under_another_key_is_ignored_and_counted_once(tmp_path, flake):
    folder = str(tmp_path / 'cache')
    theirs = EvalCache(folder, home(tmp_path, 'other-home'))
    run, keys = keys_of(theirs, flake)
    for key, name in zip(keys, ('one', 'two')):
        assert theirs.put(key, evaluate(flake, name))
    mine = EvalCache(folder)
    assert mine.signer.public_key() != theirs.signer.public_key()
    assert mine.get_many(run, keys) == {}
    assert mine.get_many(run, keys) == {}
    assert mine.ignored_note() == (
        "2 evaluation cache entries in %s were ignored (evaluated anew): 2 not signed by this "
        "run's key or a trusted one (2 by a key not in %s)" % (folder, TRUSTED))
    # theirs still hit for them: nothing of theirs was removed
    assert EvalCache(folder, home(tmp_path, 'other-home')).get_many(run, keys) == dict(
        zip(keys, (evaluate(flake, 'one'), evaluate(flake, 'two'))))


def test_a_rotated_key_ignores_the_old_entries(tmp_path, flake):
    cache = EvalCache(str(tmp_path / 'cache'))
    run, (one, _two) = keys_of(cache, flake)
    assert cache.put(one, evaluate(flake, 'one'))
    path = str(tmp_path / 'config' / 'nixdeploy' / 'eval-cache.key')
    os.rename(path, path + '.old')
    rotated = EvalCache(cache.folder)
    assert rotated.usable and rotated.signer.public_key() != cache.signer.public_key()
    assert rotated.get_many(run, [one]) == {}
    assert rotated.ignored_note().endswith('(1 by a key not in %s)' % TRUSTED)
    assert rotated.put(one, evaluate(flake, 'one'))
    assert EvalCache(cache.folder).get_many(run, [one]) == {one: evaluate(flake, 'one')}


def test_the_trusted_public_keys_are_honoured(tmp_path, flake):
    folder = str(tmp_path / 'cache')
    team = EvalCache(folder, home(tmp_path, 'team-home'))
    run, (one, _two) = keys_of(team, flake)
    assert team.put(one, evaluate(flake, 'one'))
    other = attacker(tmp_path).public_key()
    env = dict(home(tmp_path, 'mine'), **{TRUSTED: '%s  %s\n' % (other, team.signer.public_key())})
    trusting = EvalCache(folder, env)
    assert trusting.get_many(run, [one]) == {one: evaluate(flake, 'one')}
    assert trusting.ignored_note() is None
    # the same name with another key is not that key
    name = team.signer.public_key().split(':')[0]
    env[TRUSTED] = '%s:%s' % (name, other.split(':')[1])
    assert EvalCache(folder, env).get_many(run, [one]) == {}
    # a list with an entry that is no key keeps the cache from use, said
    env[TRUSTED] = '%s not-a-key' % team.signer.public_key()
    refused = EvalCache(folder, env)
    assert not refused.usable and '%s: its entry 2 (not-a-key)' % TRUSTED in refused.reason


def _cache_key_in_child(folder, queue):
    queue.put(EvalCache(folder).signer.public_key())


def test_jobs_starting_at_once_make_one_key(tmp_path):
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    children = [ctx.Process(target=_cache_key_in_child, args=(str(tmp_path / 'cache'), queue))
                for _number in range(4)]
    for child in children:
        child.start()
    found = set(queue.get(timeout=60) for _child in children)
    for child in children:
        child.join()
    assert len(found) == 1
    assert os.listdir(str(tmp_path / 'config' / 'nixdeploy')) == ['eval-cache.key']


def test_a_key_that_cannot_be_used_keeps_the_cache_from_use(tmp_path, flake, monkeypatch):
    """Said once through the cache's ``reason`` (the stage's note "the
    evaluation cache ... is not used: ..."), never a traceback, never the
    key's content."""
    folder = str(tmp_path / 'cache')
    good = EvalCache(folder)
    text = (tmp_path / 'config' / 'nixdeploy' / 'eval-cache.key').read_text()
    secret = text.strip().split(':')[1]
    cases = {}
    # named by the environment but not there (a credential not injected)
    cases['missing'] = (str(tmp_path / 'nope.key'), 'cannot be read')
    # readable by others
    loose = tmp_path / 'loose.key'
    loose.write_text(text)
    loose.chmod(0o644)
    cases['mode'] = (str(loose), 'is not private')
    # not a key: a truncated one, no name, a public half not the seed's, binary
    raw = base64.b64decode(secret)
    other_half = 'x:' + base64.b64encode(raw[:63] + bytes([raw[63] ^ 1])).decode()
    for number, body in enumerate([text[:40], secret, other_half, '\0' * 9]):
        bad = tmp_path / ('bad%d.key' % number)
        bad.write_text(body)
        bad.chmod(0o600)
        cases['ill-formed %d' % number] = (str(bad), 'is not a key')
    cases['folder'] = (str(tmp_path), 'is not a file')
    for case, (path, said) in cases.items():
        monkeypatch.setenv(KEY_FILE, path)
        cache = EvalCache(folder)
        assert not cache.usable, case
        assert said in cache.reason and path in cache.reason, (case, cache.reason)
        assert secret[:12] not in cache.reason, case
        assert cache.put('d' * 64, evaluate(flake, 'one')) is False
        assert cache.trust.distrusted('x') is None
    monkeypatch.delenv(KEY_FILE)
    # a home where no key can be made (HOME on a read-only or foreign
    # place; root writes anywhere, so a file stands where the folder goes)
    (tmp_path / 'not-a-folder').write_text('')
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'not-a-folder'))
    cache = EvalCache(folder)
    assert not cache.usable and 'no key could be made' in cache.reason, cache.reason
    assert KEY_FILE in cache.reason
    assert sorted(os.listdir(folder)) == sorted(os.listdir(good.folder))


# ------------------------------------------------------------ records
def test_a_record_that_checks_nothing_is_refused_even_signed_by_the_runs_key(tmp_path):
    cache = EvalCache(str(tmp_path / 'cache'))
    good = a_chain()
    assert cache.get_chain(cache.put_chain(good)) == good
    sub = a_chain('machines/flake.nix')
    assert cache.get_chain(cache.put_chain(sub)) == sub
    # signed with the run's own key (_store signs), as a bug would write them
    refused = {}
    # not its name's digest
    refused['renamed'] = ('b' * 64, good)
    for shape, chain in [('empty', EMPTY_CHAIN),
                         ('no segment', {'format': FORMAT, 'segments': []}),
                         ('no segments', {'format': 1}),
                         ('flake.nix only looked at', {'format': FORMAT, 'segments': [
                             {'reads': {'flake.nix': ['stat', 'file:-']}, 'self': {}}]}),
                         ('another file first', {'format': FORMAT, 'segments': [
                             {'reads': {'myflake.nix': ['read', 'file:-:' + 'c' * 64]},
                              'self': {}}] + good['segments']}),
                         ('flake.nix later', {'format': FORMAT, 'segments': [
                             {'reads': {}, 'self': {}}] + good['segments']})]:
        refused[shape] = (chain_id(chain), chain)
    for shape, (name, chain) in refused.items():
        # pylint: disable-next=protected-access
        assert cache.store('chain-%s.json' % name, chain), shape
        assert cache.get_chain(name) is None, shape
    later = EvalCache(cache.folder)
    assert [later.get_chain(name) for name, _chain in refused.values()] == [None] * len(refused)
    assert later.ignored_note().endswith(': %d records that check nothing' % len(refused))


# ------------------------------------------------------------ distrust marks
def spot_check_mark(flake):
    """What a failed spot check writes (reuse/_spot_check.py _spot_check): the reused
    answer, where it came from, and what Nix gave (an error's text too)."""
    return {'attr': ['nixosConfigurations', 'web', 'config', 'system', 'build', 'toplevel'],
            'reused': evaluate(flake, 'one'),
            'from': {'url': 'git+file:///srv/fleet', 'revision': 'a' * 40, 'dirty': False,
                     'nar_hash': 'sha256-' + 'A' * 43, 'last_modified': 1700000000},
            'nix': dict(evaluate(flake, 'two'), error='error: ' + 'while evaluating ' * 400),
            'when': 1700000000}


def test_a_distrust_mark_is_read_whatever_its_size(tmp_path, flake):
    cache = EvalCache(str(tmp_path / 'cache'))
    mark = spot_check_mark(flake)
    assert cache.trust.distrust('git+file:///srv/fleet', mark)
    path = cache.trust.distrusted('git+file:///srv/fleet')
    assert os.path.getsize(path) > 4096
    later = EvalCache(cache.folder)
    assert later.trust.distrusted('git+file:///srv/fleet') == path
    assert later.trust.distrust_record('git+file:///srv/fleet') == mark
    assert later.trust.distrusted('git+file:///srv/other') is None


def test_a_mark_counts_unsigned_signed_by_another_or_unreadable(tmp_path, flake):
    """A mark only turns reuse off: whoever wrote it, it counts."""
    cache = EvalCache(str(tmp_path / 'cache'))
    for number, how in enumerate(['unsigned', 'another key', 'not json', 'not ours']):
        flake_ref = 'git+file:///srv/fleet-%d' % number
        assert cache.trust.distrust(flake_ref, {})
        path = cache.trust.distrusted(flake_ref)
        if how == 'unsigned':
            plant(cache.folder, os.path.basename(path), spot_check_mark(flake))
        elif how == 'another key':
            plant(cache.folder, os.path.basename(path), {}, attacker(tmp_path))
        elif how == 'not json':
            with open(path, 'w') as handle:
                handle.write('{"attr": ')
        else:
            os.chown(path, 65534, 65534)
        later = EvalCache(cache.folder)
        assert later.trust.distrusted(flake_ref) == path, how
        assert later.trust.distrust_record(flake_ref) is None, how
        assert os.path.exists(path), how


# ------------------------------------------------------------ spot check times
def test_a_planted_checked_mark_does_not_steer_the_spot_check(tmp_path):
    """When a spot check last found a reused answer right decides which
    hosts it checks next (reuse/_spot_check.py _spot_check): a mark written into the
    folder by anyone but a trusted key counts as never checked."""
    cache = EvalCache(str(tmp_path / 'cache'))
    mine, planted, other = 'a' * 64, 'b' * 64, 'c' * 64
    cache.trust.mark_checked([mine, '../x'], now=1700000000)
    assert cache.trust.last_checked([mine, planted, other]) == {mine: 1700000000}
    plant(cache.folder, 'checked-%s.json' % planted, {'when': 2000000000})
    plant(cache.folder, 'checked-%s.json' % other, {'when': 2000000000}, attacker(tmp_path))
    later = EvalCache(cache.folder)
    assert later.trust.last_checked([mine, planted, other]) == {mine: 1700000000}
    assert 'not signed' in later.ignored_note()
    # pruned as the entries are
    month = time.time() - 31 * 24 * 3600
    os.utime(os.path.join(cache.folder, 'checked-%s.json' % mine), (month, month))
    assert later.prune(now=time.time() + 25 * 3600)
    assert not os.path.exists(os.path.join(cache.folder, 'checked-%s.json' % mine))


def test_a_batch_s_marks_are_written_side_by_side(tmp_path, monkeypatch):
    """A batch of 250 reused hosts marks the 249 it did not check: each mark
    is a file synced before its rename, and on a busy disk a sync takes
    milliseconds. Written one after the other they held the batch's answers
    back for seconds; side by side their syncs overlap. Every mark is still
    whole and counts its batch."""
    cache = EvalCache(str(tmp_path / 'cache'))
    keys = ['%064x' % n for n in range(32)]
    cache.trust.mark_checked(keys[:16], now=1700000000)
    marks = cache.trust.check_marks(keys)
    sync = os.fsync

    def slow_sync(fd):
        time.sleep(0.05)
        sync(fd)
    monkeypatch.setattr(os, 'fsync', slow_sync)
    started = time.monotonic()
    cache.trust.mark_waited(dict((key, marks.get(key)) for key in keys))
    # one after the other: 32 syncs of 50 ms, 1.6 s
    assert time.monotonic() - started < 0.8
    later = EvalCache(cache.folder)
    assert later.trust.check_marks(keys) == dict(
        [(key, {'when': 1700000000, 'waited': 1}) for key in keys[:16]]
        + [(key, {'when': 0, 'waited': 1}) for key in keys[16:]])
    assert not [n for n in os.listdir(cache.folder) if n.startswith('.tmp')]


def test_without_cryptography_the_cache_is_not_used_and_says_why(tmp_path, monkeypatch):
    """A controller whose Python lacks cryptography signs nothing: the cache
    is not used (every host evaluated), said once, never a traceback."""
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'config'))
    monkeypatch.setattr(_signing, 'MISSING', ImportError("No module named 'cryptography'"))
    cache = EvalCache(str(tmp_path / 'cache'))
    assert not cache.usable
    assert 'needs the Python package cryptography' in cache.reason, cache.reason


# ------------------------------------------------------------ the key's place
@pytest.mark.parametrize('how', ['named inside', 'default a link into it', 'a folder on the way'])
def test_a_key_inside_the_cache_folder_keeps_the_cache_from_use(
        tmp_path, flake, monkeypatch, how):
    """The sixth review's B3: a key the folder's writer can reach (named by
    the environment inside the folder, the default path a link to a file
    there, or a folder on its way a link into it) would let it swap the key
    and sign what it plants. The cache is not used (every host evaluated,
    nothing written), and its reason names the key, the folder and the fix."""
    folder = tmp_path / 'cache'
    folder.mkdir(mode=0o700)
    default = tmp_path / 'config' / 'nixdeploy' / 'eval-cache.key'
    if how == 'named inside':
        path = str(folder / 'eval-cache.key')
        _signing._generate(path)  # pylint: disable=protected-access
        monkeypatch.setenv(KEY_FILE, path)
    elif how == 'default a link into it':
        path = str(default)
        _signing._generate(str(folder / 'eval-cache.key'))  # pylint: disable=protected-access
        default.parent.mkdir(parents=True)
        os.symlink(str(folder / 'eval-cache.key'), path)
    else:
        path = str(default)
        (folder / 'keys').mkdir()
        (tmp_path / 'config').mkdir()
        os.symlink(str(folder / 'keys'), str(default.parent))
    cache = EvalCache(str(folder))
    assert not cache.usable
    for said in (path, str(folder), 'keep the key outside the folder', KEY_FILE):
        assert said in cache.reason, (said, cache.reason)
    assert cache.put('d' * 64, evaluate(flake, 'one')) is False
    assert not [name for name in os.listdir(str(folder)) if name.endswith('.json')]
    # the same key kept outside: used
    if how != 'a folder on the way':
        outside = tmp_path / 'outside.key'
        shutil.copy2(str(folder / 'eval-cache.key'), str(outside))
        monkeypatch.setenv(KEY_FILE, str(outside))
        assert EvalCache(str(folder)).usable


@pytest.mark.skipif(shutil.which('strace') is None or shutil.which('git') is None,
                    reason='needs strace and git')
def test_a_key_inside_the_cache_folder_is_said_once_and_every_host_evaluated(
        tmp_path, monkeypatch):
    """The reviewer's run: NIXDEPLOY_EVAL_CACHE_KEY_FILE in the folder. Two
    commits, every host evaluated on each, nothing kept, the run says once
    that the cache is not used and why."""
    from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse import Flake, how
    monkeypatch.setenv('NIX_CONFIG', 'experimental-features = nix-command flakes\nsubstituters =')
    flake = Flake(str(tmp_path))
    os.makedirs(flake.cache, mode=0o700)
    key = os.path.join(flake.cache, 'eval-cache.key')
    _signing._generate(key)  # pylint: disable=protected-access
    for step in range(2):
        flake.write('README', 'step %d' % step)
        flake.commit('step %d' % step)
        entries, _figures = flake.run(env={KEY_FILE: key})
        assert how(entries) == dict.fromkeys('abcd', 'evaluated'), entries
        notes = [note for entry in entries.values() for note in entry.get('notes') or []
                 if 'is not used' in note]
        # each host carries it; the action says it once (warn_once)
        assert len(set(notes)) == 1 and key in notes[0], notes
    assert os.listdir(flake.cache) == ['eval-cache.key']


# ------------------------------------------------------------ distrust kept outside
@pytest.mark.skipif(shutil.which('strace') is None or shutil.which('git') is None,
                    reason='needs strace and git')
def test_a_deleted_distrust_mark_still_counts_from_the_users_own_folder(tmp_path, monkeypatch):
    """The sixth review's B1: a failed spot check's mark is also kept beside
    the user's key (~/.config/nixdeploy/distrust/); deleting the folder's
    copy (or restoring an older cache) leaves reuse off, and the run names
    the mark; the documented command, removing both, turns it back on."""
    from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse import how
    from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse_shapes import STALE, Shape
    monkeypatch.setenv('NIX_CONFIG', 'experimental-features = nix-command flakes\nsubstituters =')
    flake = Shape(str(tmp_path), STALE, 'ab')
    flake.run(reuse_check=2)
    flake.write('README', '1')
    flake.commit('1')
    entries, _figures = flake.run(reuse_check=2)
    assert 'is not what Nix gives' in str(entries['a']), entries['a']
    marks = [name for name in os.listdir(flake.cache) if name.startswith('distrust-')]
    outside = os.path.join(str(tmp_path), 'config', 'nixdeploy', 'distrust')
    assert len(marks) == 1 and os.listdir(outside) == marks
    os.unlink(os.path.join(flake.cache, marks[0]))
    flake.write('README', '2')
    flake.commit('2')
    entries, _figures = flake.run(reuse_check=0)
    assert how(entries) == dict.fromkeys('ab', 'evaluated'), entries
    notes = [note for entry in entries.values() for note in entry.get('notes') or []]
    assert [note for note in notes if os.path.join(outside, marks[0]) in note], notes
    # `rm <cache>/distrust-*.json ~/.config/nixdeploy/distrust/distrust-*.json`:
    # a is reused again, and caught again
    os.unlink(os.path.join(outside, marks[0]))
    flake.write('README', '3')
    flake.commit('3')
    entries, _figures = flake.run(reuse_check=2)
    assert 'is not what Nix gives' in str(entries['a']), entries['a']


def test_a_distrust_mark_is_kept_in_the_cache_folder_where_no_other_is_writable(
        tmp_path, monkeypatch):
    """A job with a key given by a file and no writable config folder (a
    CI job's fresh HOME made read-only, here a file where the folder goes):
    the mark is still written in the cache folder, and counts."""
    key = tmp_path / 'ci.key'
    _signing._generate(str(key))  # pylint: disable=protected-access
    monkeypatch.setenv(KEY_FILE, str(key))
    (tmp_path / 'not-a-folder').write_text('')
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'not-a-folder'))
    cache = EvalCache(str(tmp_path / 'cache'))
    assert cache.usable
    assert cache.trust.distrust('git+file:///srv/fleet', {'when': 1})
    assert cache.trust.distrust_marks('git+file:///srv/fleet') == [
        os.path.join(cache.folder, os.path.basename(cache.trust.distrusted('git+file:///srv/fleet')))]
