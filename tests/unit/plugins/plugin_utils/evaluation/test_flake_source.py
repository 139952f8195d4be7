"""One content per run (plugin_utils/evaluation/flake/_source.py): a git work
tree with uncommitted changes is evaluated from the snapshot the pin took,
whatever is written to the tree afterwards; a locked URL that names its
content is evaluated as it is; the run's sources are pinned once and read by
every later evaluator. Real Nix and git on this machine."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake import (  # noqa: E402
    _source)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which('nix') is None or shutil.which('git') is None,
                                reason='needs nix and git')

FLAKE = '''{
  outputs = { self }: {
    word = builtins.readFile ./word;
    # not named as self's own attributes (an output named rev would be self.rev)
    info = { rev = self.rev or "none"; dirty = self.dirtyRev or "none";
             lastModified = self.lastModified; narHash = self.narHash; };
  };
}
'''


def git(folder, *args):
    subprocess.run(['git', '-C', folder, '-c', 'user.name=t', '-c', 'user.email=t@t'] +
                   list(args), check=True, stdout=subprocess.PIPE)


def write(folder, word):
    with open(os.path.join(folder, 'word'), 'w') as handle:
        handle.write(word)


@pytest.fixture
def tree(tmp_path):
    folder = str(tmp_path / 'flake')
    os.makedirs(folder)
    with open(os.path.join(folder, 'flake.nix'), 'w') as handle:
        handle.write(FLAKE)
    write(folder, 'committed')
    git(folder, 'init', '-q')
    git(folder, 'add', '-A')
    git(folder, 'commit', '-qm', 'one')
    return folder


def runner():
    return _nix.NixCommand(_nix.NixOptions(options={'substituters': ''}))


def evaluate(ref, attr):
    return json.loads(runner().check('eval', ['--json', '%s#%s' % (ref, attr)], 'eval',
                                     flake_command=True))


def test_a_dirty_tree_is_evaluated_from_its_snapshot(tree):
    write(tree, 'reviewed')
    source = _source.pin(runner(), 'git+file://%s' % tree)
    assert source.ref.startswith('path:/nix/store/') and 'narHash=' in source.ref, source.ref
    assert source.reason is None and source.identity is not None
    assert source.provenance['dirty'] is True and source.provenance['revision'] is None
    assert source.provenance['pinned'] is True
    # the tree is written after the pin: the snapshot still evaluates what was pinned
    write(tree, 'written during the run')
    assert evaluate(source.ref, 'word') == 'reviewed'
    assert evaluate('git+file://%s' % tree, 'word') == 'written during the run'
    # what self says is the tree's: no rev, its narHash and lastModified
    assert evaluate(source.ref, 'info.rev') == 'none'
    assert evaluate(source.ref, 'info.narHash') == source.provenance['nar_hash']
    assert evaluate(source.ref, 'info.lastModified') == source.provenance['last_modified']


def test_a_clean_tree_is_pinned_to_its_commit(tree):
    source = _source.pin(runner(), 'git+file://%s' % tree)
    assert 'rev=' in source.ref and source.ref.startswith('git+file://'), source.ref
    assert source.provenance['dirty'] is False and source.provenance['revision']
    assert evaluate(source.ref, 'info.rev') == source.provenance['revision']


def test_a_shallow_clone_is_pinned_to_its_commit_as_shallow(tree, tmp_path):
    """A depth-1 clone (actions/checkout's default, AWX 21.4's project
    copy): Nix 2.20+ evaluates its work tree but refuses its locked URL
    unless told it is shallow, so a pin to the commit alone failed every
    host. Pinned with shallow=1 it evaluates that commit. Nix 2.8 refuses
    the clone itself, with its own message. A full clone is pinned as
    before."""
    write(tree, 'second')
    git(tree, 'commit', '-qam', 'two')
    clone = str(tmp_path / 'clone')
    subprocess.run(['git', 'clone', '-q', '--depth', '1', 'file://%s' % tree, clone], check=True)
    source = _source.pin(runner(), 'git+file://%s' % clone)
    if source.reason is not None:
        # Nix 2.8: "is a shallow Git repository, but a non-shallow repository is needed"
        assert 'shallow Git repository' in source.reason, source.reason
        assert not runner().features().config_show
        return
    assert source.ref.startswith('git+file://') and 'rev=' in source.ref, source.ref
    assert source.ref.endswith('&shallow=1'), source.ref
    assert source.provenance['evaluated'] == source.ref
    assert evaluate(source.ref, 'word') == 'second'
    assert evaluate(source.ref, 'info.rev') == source.provenance['revision']
    # the full repository is pinned as before: its history counts
    full = _source.pin(runner(), 'git+file://%s' % tree)
    assert 'shallow=' not in full.ref, full.ref
    assert not _source.is_shallow_clone(tree)


def test_a_shallow_clone_is_told_by_its_files_in_every_shape(tree, tmp_path):
    """Whether a repository is a shallow clone is read from its files
    (git refuses a repository another user owns, as a job's container's
    is): a depth-1 clone, a full one, a linked work tree of each (its
    .git a file, its history in the common folder), a submodule-like .git
    file naming the clone's folder, and a .git file that names nothing."""
    write(tree, 'second')
    git(tree, 'commit', '-qam', 'two')
    clone = str(tmp_path / 'clone')
    subprocess.run(['git', 'clone', '-q', '--depth', '1', 'file://%s' % tree, clone], check=True)
    assert _source.is_shallow_clone(clone)
    assert not _source.is_shallow_clone(tree)
    for repository, shallow in ((clone, True), (tree, False)):
        work_tree = str(tmp_path / ('work-tree-of-%s' % os.path.basename(repository)))
        git(repository, 'worktree', 'add', '-q', work_tree)
        assert os.path.isfile(os.path.join(work_tree, '.git'))
        assert _source.is_shallow_clone(work_tree) is shallow, repository
    linked = tmp_path / 'linked'
    linked.mkdir()
    (linked / '.git').write_text('gitdir: %s\n' % os.path.join(clone, '.git'))
    assert _source.is_shallow_clone(str(linked))
    (linked / '.git').write_text('not a gitdir line\n')
    assert not _source.is_shallow_clone(str(linked))


def test_a_subflake_keeps_its_folder(tree):
    sub = os.path.join(tree, 'sub')
    os.makedirs(sub)
    shutil.copy(os.path.join(tree, 'flake.nix'), sub)
    write(sub, 'below')
    git(tree, 'add', '-A')
    write(sub, 'below, changed')
    source = _source.pin(runner(), 'git+file://%s?dir=sub' % tree)
    # Nix 2.25+ takes dir= on the snapshot; before, the folder inside it
    in_dir = 'dir=sub' if runner().features().path_dir else '-source/sub'
    assert source.ref.startswith('path:/nix/store/') and in_dir in source.ref, source.ref
    assert evaluate(source.ref, 'word') == 'below, changed'


def test_what_cannot_be_pinned_says_why(tmp_path):
    source = _source.pin(runner(), 'path:%s' % (tmp_path / 'none'))
    assert source.ref == 'path:%s' % (tmp_path / 'none')
    assert source.identity is None and source.provenance['pinned'] is False
    assert 'nix flake metadata failed' in source.reason


def test_a_run_pins_once(tree, tmp_path):
    """The first evaluator pins; every later one (another process: a wave, a
    memory restart) reads that pin, not the tree again."""
    folder = str(tmp_path / 'run')
    os.makedirs(folder, 0o700)
    write(tree, 'first')
    first = _source.RunSources(folder).source(runner(), 'git+file://%s' % tree, 'k')
    write(tree, 'second')
    count = runner()
    again = _source.RunSources(folder).source(count, 'git+file://%s' % tree, 'k')
    assert count.processes == 0
    assert again.ref == first.ref and evaluate(again.ref, 'word') == 'first'
    # the snapshot is rooted while the run lasts
    root = os.path.join(folder, 'source-k.json.root')
    assert os.path.islink(root) and os.readlink(root) == first.root
    runs = _source.RunSources(folder)
    assert runs.warn_once('note') is True and runs.warn_once('note') is False


def test_a_narhash_written_into_a_dirty_trees_url_pins_nothing(tree):
    """Nix keeps a narHash a user writes into a git+file URL and never checks
    it for a dirty tree: the run still evaluates its own snapshot."""
    write(tree, 'reviewed')
    now = _source.pin(runner(), 'git+file://%s' % tree).provenance['nar_hash']
    for nar_hash in (now, 'sha256-' + 'A' * 43 + '='):
        source = _source.pin(runner(), 'git+file://%s?narHash=%s' % (tree, nar_hash))
        assert source.ref.startswith('path:/nix/store/'), source.ref
    write(tree, 'written after the pin')
    assert evaluate(source.ref, 'word') == 'reviewed'


def test_what_names_its_content_is_decided_by_nix_s_own_locked_attributes():
    names = _source.names_its_content
    # github:o/r/<rev> carries its commit in the path, not in a query
    assert names({'type': 'github', 'rev': 'abc', 'narHash': 'sha256-x'}, {})
    assert names({'type': 'git', 'rev': 'abc'}, {})
    assert not names({'type': 'git', 'narHash': 'sha256-x'}, {'narHash': ['sha256-x']})
    assert names({'type': 'path', 'narHash': 'sha256-x'}, {'narHash': ['sha256-x']})
    assert not names({'type': 'path', 'narHash': 'sha256-x'}, {'narHash': ['sha256-y']})
    assert not names({'type': 'path', 'narHash': 'sha256-x'}, {})
    assert not names({'type': 'mercurial-or-else'}, {'rev': ['abc']})


def test_a_dirty_subflake_on_a_nix_that_takes_dir(tree):
    """Where Nix takes ``?dir=`` on a path: flake, the snapshot keeps the
    whole tree (a subflake may import from above its folder)."""
    features = _nix.NixFeatures('nix', (2, 34, 0))
    ref = _source.snapshot_ref(
        {'path': '/nix/store/' + 'a' * 32 + '-source'},
        {'narHash': 'sha256-x/y=', 'lastModified': 7}, {'dir': ['nix/hosts']}, features)
    assert ref == ('path:/nix/store/%s-source?dir=nix/hosts&narHash=sha256-x/y%%3D&'
                   'lastModified=7' % ('a' * 32)), ref
    old = _source.snapshot_ref(
        {'path': '/nix/store/' + 'a' * 32 + '-source'}, {'narHash': 'sha256-x'},
        {'dir': ['nix']}, _nix.NixFeatures('nix', (2, 8, 0)))
    assert old == 'path:/nix/store/%s-source/nix' % ('a' * 32)
    assert _source.snapshot_ref(
        {'path': '/nix/store/' + 'a' * 32 + '-source'}, {'narHash': 'sha256-x'},
        {'dir': ['../up']}, features) is None


def test_the_controller_s_own_nix_configuration_is_read_once(tmp_path, monkeypatch):
    monkeypatch.setenv('NIX_CONFIG', 'experimental-features = nix-command flakes\n'
                       'accept-flake-config = true')
    assert _source.impure_config(runner()) is None
    unsafe = _nix.NixCommand(_nix.NixOptions(options={
        'substituters': '', 'allow-unsafe-native-code-during-evaluation': True}))
    assert 'allow-unsafe-native-code' in _source.impure_config(unsafe)
    # the user's NIX_CONFIG cannot turn on a flake's nixConfig; the
    # operator's nix_options can, and then nothing is cached, said as such
    accepting = _nix.NixCommand(_nix.NixOptions(options={
        'substituters': '', 'accept-flake-config': True}))
    assert 'may set any Nix setting' in _source.impure_config(accepting)
    # an answer "y" the user once gave Nix, saved: Nix applies it to the
    # flake whatever accept-flake-config says; nothing is cached
    data = tmp_path / 'data'
    (data / 'nix').mkdir(parents=True)
    (data / 'nix' / 'trusted-settings.json').write_text(json.dumps(
        {'pure-eval': {'false': True}, 'sandbox': {'false': False}}))
    monkeypatch.setenv('XDG_DATA_HOME', str(data))
    said = _source.impure_config(runner())
    assert 'trusted-settings.json (pure-eval)' in said, said
    monkeypatch.setenv('XDG_DATA_HOME', str(tmp_path / 'none'))
    folder = str(tmp_path / 'run')
    os.makedirs(folder, 0o700)
    first = _source.RunSources(folder).config_reason(unsafe, 'k')
    count = runner()
    assert _source.RunSources(folder).config_reason(count, 'k') == first
    assert count.processes == 0


def test_a_stage_pins_with_the_fetch_arguments_and_refuses_an_unpinned_folder(tree, tmp_path):
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._batch import (
        EvalStage)
    opts = _nix.NixOptions(options={'substituters': ''}, extra_args=[
        '--show-trace', '--no-update-lock-file', '--impure', '--store', 'auto'])
    stage = EvalStage(opts)
    assert stage._pin_runner().opts.extra_args == ['--no-update-lock-file', '--store', 'auto']
    assert stage._pin_runner().opts.impure is False
    # a folder of the controller that cannot be pinned: its hosts fail, the
    # others are evaluated
    answers = {}
    missing = 'path:%s' % (tmp_path / 'gone')
    requests = {'h1': {'flake': missing, 'attr': ['word'], 'attr_string': 'word',
                       'platform': 'nixos'},
                'h2': {'flake': 'git+file://%s' % tree, 'attr': ['word'], 'attr_string': 'word',
                       'platform': 'nixos'}}
    EvalStage(_nix.NixOptions(options={'substituters': ''})).evaluate(
        requests, answers.__setitem__)
    assert 'could not be pinned' in answers['h1']['error'], answers['h1']
    assert 'nix flake metadata failed' in answers['h1']['error']
    # h2's flake was pinned and evaluated (its attribute is no system: Nix's error)
    assert answers['h2']['source']['pinned'] is True and 'error' not in answers['h2']


def test_a_path_flake_whose_narhash_holds_a_plus_is_pinned_as_it_is():
    """Nix writes a narHash's base64 into the URL as it is: a ``+`` is no space."""
    url = 'path:/srv/fleet?lastModified=1&narHash=sha256-Sni+AB/x%2By='
    query = _source.url_query(url)
    assert query['narHash'] == ['sha256-Sni+AB/x+y=']
    assert _source.names_its_content(
        {'type': 'path', 'narHash': 'sha256-Sni+AB/x+y='}, query)


LOCKED_INPUT_FLAKE = '''{
  inputs.data = { url = "path:%s"; flake = false; };
  outputs = { self, data }: { word = builtins.readFile "${data}/word"; };
}
'''


def input_flake(tmp_path):
    """A flake whose input (a folder holding ``word``: alice) its flake.lock
    does not lock yet: (the input's folder, the flake's reference)."""
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'word').write_text('alice')
    top = tmp_path / 'top'
    top.mkdir()
    (top / 'flake.nix').write_text(LOCKED_INPUT_FLAKE % data)
    return data, 'path:%s' % top


@pytest.mark.parametrize('write_lock', [True, False])
def test_an_input_missing_from_flake_lock_is_not_pinned_under_no_write_lock_file(
        tmp_path, write_lock):
    """Under --no-write-lock-file every evaluator would lock an input
    missing from flake.lock anew, from its live location: no pin, naming the
    input and the fix. With the lock written (Nix writes it when allowed, or
    it was committed), the flake is pinned."""
    _data, flake = input_flake(tmp_path)
    if write_lock:
        runner().check('flake lock', [flake], 'lock', flake_command=True)
    pinner = _nix.NixCommand(_nix.NixOptions(options={'substituters': ''},
                                             extra_args=['--no-write-lock-file']))
    source = _source.pin(pinner, flake)
    if write_lock:
        assert source.reason is None and source.provenance['pinned'] is True, source.reason
        assert source.identity is not None
        return
    assert source.local and source.provenance['pinned'] is False and source.identity is None
    assert "lock file has a missing input 'data'" in source.reason
    assert 'nix flake lock' in source.reason
    assert not (tmp_path / 'top' / 'flake.lock').exists()


def _locks(**inputs):
    nodes = {'root': {'inputs': dict((k, v[0]) for k, v in inputs.items())}}
    for name, (ref, locked) in inputs.items():
        if isinstance(ref, str):
            nodes[ref] = {'locked': locked}
    return {'nodes': nodes, 'root': 'root', 'version': 7}


def test_a_lock_graph_is_compared_by_input_path_not_node_name(tmp_path, monkeypatch):
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake import _identity
    one = {'type': 'path', 'path': '/a', 'narHash': 'sha256-1'}
    two = {'type': 'path', 'path': '/a', 'narHash': 'sha256-2'}
    written = {}
    monkeypatch.setattr(_identity, '_read_lock_file', lambda data, locked: written.get('x'))
    data = {'locked': {}, 'locks': _locks(a=('a_2', one))}
    # the same graph under other node names (an older Nix wrote it)
    written['x'] = _locks(a=('a', one))
    assert _identity.lock_mismatch(data) is None
    written['x'] = _locks(a=('a', two))
    assert _identity.lock_mismatch(data) == "stale input 'a'"
    written['x'] = _locks()
    assert _identity.lock_mismatch(data) == "missing input 'a'"
    written['x'] = None
    assert _identity.lock_mismatch(data) == "missing input 'a'"
    # a nested input, and a follows resolved in each graph
    nested = {'nodes': {'root': {'inputs': {'a': 'a', 'b': ['a']}},
                        'a': {'locked': one, 'inputs': {'c': 'c'}}, 'c': {'locked': two}},
              'root': 'root'}
    written['x'] = json.loads(json.dumps(nested))
    assert _identity.lock_mismatch({'locked': {}, 'locks': nested}) is None
    del written['x']['nodes']['a']['inputs']
    assert _identity.lock_mismatch({'locked': {}, 'locks': nested}) == \
        "missing input 'a/c'"
    # no inputs: nothing to lock
    assert _identity.lock_mismatch({'locked': {}, 'locks': _locks()}) is None


def test_an_input_missing_from_flake_lock_travels_as_the_runs_resolved_lock(tmp_path):
    """Where Nix reads a lock file given to it (--reference-lock-file, Nix
    2.25+), the pin writes the lock graph it resolved to the run's private
    file and every evaluator reads that: the input's content at the pin,
    whatever is written to it afterwards; never cached. A Nix without the
    flag (2.8), or no file of the run to write, keeps the hosts from it."""
    data, flake = input_flake(tmp_path)
    pinner = _nix.NixCommand(_nix.NixOptions(options={'substituters': ''},
                                             extra_args=['--no-write-lock-file']))
    folder = tmp_path / 'run'
    folder.mkdir(mode=0o700)
    source = _source.RunSources(str(folder)).source(pinner, flake, 'k')
    if not pinner.features().reference_lock_file:
        assert source.reason and source.lock_file is None, source.to_data()
        assert "missing input 'data'" in source.reason
        assert not [n for n in os.listdir(str(folder)) if n.endswith('flake.lock')]
        return
    assert source.reason is None and source.provenance['pinned'] is True, source.reason
    assert source.identity is None, 'a graph of the run is never cached'
    assert "missing input 'data'" in source.provenance['lock']
    assert source.lock_file.startswith(str(folder)) and source.lock_note
    assert os.stat(source.lock_file).st_mode & 0o077 == 0
    assert source.eval_args() == ['--reference-lock-file', source.lock_file,
                                  '--no-write-lock-file']
    (data / 'word').write_text('alice-and-mallory')
    said = json.loads(pinner.check('eval', ['--json'] + source.eval_args()
                                   + ['%s#word' % source.ref], 'eval', flake_command=True))
    assert said == 'alice'
    # the live input, for contrast: what each evaluator would have read
    assert json.loads(pinner.check('eval', ['--json', '%s#word' % flake], 'eval',
                                   flake_command=True)) == 'alice-and-mallory'
    assert not (tmp_path / 'top' / 'flake.lock').exists()
    # every later evaluator of the run reads the same file
    again = _source.RunSources(str(folder)).source(pinner, flake, 'k')
    assert again.lock_file == source.lock_file and again.ref == source.ref
    # no file of the run (a stage used alone): not evaluated, as on Nix 2.8
    alone = _source.pin(pinner, flake)
    assert alone.reason and alone.lock_file is None


def test_a_resolved_lock_travels_only_where_every_input_names_its_content():
    locks = _locks(a=('a', {'type': 'path', 'path': '/a', 'narHash': 'sha256-1'}),
                   b=('b', {'type': 'github', 'owner': 'o', 'repo': 'r', 'rev': 'f' * 40}))
    assert _source.locks_every_input(locks)
    # a dirty git tree (no rev), a path without its hash, a kind unknown here
    for locked in ({'type': 'git', 'url': 'file:///a'}, {'type': 'path', 'path': '/a'},
                   {'type': 'indirect', 'id': 'nixpkgs'}, None):
        assert not _source.locks_every_input(_locks(a=('a', locked))), locked
    assert not _source.locks_every_input({'nodes': None})


def test_a_pin_whose_holder_never_lets_go_is_waited_for_within_a_bound(tmp_path, monkeypatch):
    """Another process holds the run's lock of a flake's pin and never lets
    go: this one waits at most PIN_WAIT, then gives up saying which lock,
    where, and what to do, and computes nothing."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake import _source
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import (
        LockWaitTimeout)
    lock = str(tmp_path / 'pin-x.json.lock')
    # a group of its own: flock runs the sleep as its child, which holds
    # the lock and would outlive flock alone
    holder = subprocess.Popen(['flock', lock, 'sh', '-c', 'echo held; exec sleep 600'],
                              stdout=subprocess.PIPE, universal_newlines=True,
                              start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        monkeypatch.setattr(_source, 'PIN_WAIT', 1)
        computed = []
        with pytest.raises(LockWaitTimeout) as raised:
            _source.RunSources(str(tmp_path))._once('pin-x', computed.append)
        message = u'%s' % raised.value
        assert computed == []
        assert message.startswith("waited 1s for the lock of the run's pin of a flake"), message
        assert lock in message and 'end the run and start it again' in message, message
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
