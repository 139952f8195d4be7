"""Reuse across commits on the shapes real flakes have (issue 76's
reproductions): outputs in an imported file, names that are not ASCII, an
input that follows the root, positions of `self`'s attributes, a string of
the source's own path carried into a file. After every commit every host's
answer is what a plain `nix eval` of that commit gives (``Flake.run``
checks it), on the first run too. Real Nix, git and strace."""

import os

import pytest

from tests.unit.plugins.plugin_utils.evaluation import test_eval_reuse
from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse import MK, Flake, how

# the same tools as test_eval_reuse: nix, git and strace
pytestmark = test_eval_reuse.pytestmark

# a flake whose outputs live in an imported file, called at the top level
IMPORTED = {
    'flake.nix': '{ outputs = inputs: import ./outputs.nix inputs; }\n',
    'outputs.nix': '''inputs:
let
  lib = import ./lib/mk.nix;
  users = [ "ann" "bob" ];
  host = name: extra: { config.system.build.toplevel = lib.mk {
    inherit name; args = { users = builtins.concatStringsSep "," users; } // extra; }; };
in { nixosConfigurations = { a = host "a" { }; b = host "b" { v = "b"; }; }; }
''',
    'lib/mk.nix': MK,
}


class Shape(Flake):
    """A git flake made of ``files`` ({relative path: text}), whose hosts
    are ``hosts``."""

    def __init__(self, base, files, hosts):
        self._names = sorted(hosts)
        self.repo = os.path.join(base, 'flake')
        self.cache = os.path.join(base, 'cache')
        self.base = base
        for rel, text in files.items():
            self.write(rel, text)
        self.git('init', '-q')
        self.commit('one')

    def hosts(self):
        return self._names


def record_then_reuse(flake):
    """The entries of three runs of ``flake``: its first (recording) run,
    a run after a commit that changes no host, without the spot check, and
    one more such commit with it. ``Flake.run`` compares every answer with
    a plain `nix eval`; none may fail."""
    runs = [flake.run()[0]]
    flake.write('README', 'x')
    flake.commit('readme')
    runs.append(flake.run(reuse_check=0)[0])
    flake.write('README', 'y')
    flake.commit('readme again')
    runs.append(flake.run()[0])
    for entries in runs:
        assert all('error' not in e and 'error' not in (e.get('answer') or {})
                   for e in entries.values()), entries
    return runs


def test_outputs_in_an_imported_file_are_recorded(tmp_path):
    """`outputs = inputs: import ./outputs.nix inputs;`: Nix's own flake
    call read outputs.nix before recording started, so a commit revoking a
    user there deployed the system from before it."""
    flake = Shape(str(tmp_path), IMPORTED, 'ab')
    assert how(flake.run()[0]) == dict.fromkeys('ab', 'evaluated')
    flake.write('outputs.nix', IMPORTED['outputs.nix'].replace(' "bob" ', ' '))
    flake.commit('revoke bob')
    # run() asserts every answer equals a plain nix eval of this commit
    assert how(flake.run()[0]) == dict.fromkeys('ab', 'evaluated')
    flake.write('README', 'unrelated')
    flake.commit('readme')
    assert how(flake.run()[0]) == dict.fromkeys('ab', 'reused')


def test_a_link_read_at_the_top_level_is_recorded(tmp_path):
    files = dict(IMPORTED)
    # read when the outputs are called, not when a host is evaluated
    files['outputs.nix'] = files['outputs.nix'].replace(
        'users = [ "ann" "bob" ];', 'who = builtins.readFile ./current; users = [ who ];'
    ).replace('in { nixosConfigurations', 'in assert who != ""; { nixosConfigurations')
    files['one'], files['two'] = 'ann', 'bob'
    flake = Shape(str(tmp_path), files, 'ab')
    os.symlink('one', os.path.join(flake.repo, 'current'))
    flake.commit('link')
    flake.run()
    os.unlink(os.path.join(flake.repo, 'current'))
    os.symlink('two', os.path.join(flake.repo, 'current'))
    flake.commit('re-point')
    assert how(flake.run()[0]) == dict.fromkeys('ab', 'evaluated')


NAMES = {
    'flake.nix': '''{ outputs = { self }: let lib = import ./lib/mk.nix; in {
  nixosConfigurations = {
    a = { config.system.build.toplevel = lib.mk { name = "a";
      args.v = builtins.readFile (./conf + "/caf\u00e9.txt"); }; };
    b = { config.system.build.toplevel = lib.mk { name = "b";
      args.v = builtins.toJSON (builtins.readDir (./hosts + "/z\u00fcrich")); }; };
    c = { config.system.build.toplevel = lib.mk { name = "c";
      args.v = builtins.readFile (./keys + "/zo\u00eb's \\\\ key.pub"); }; };
    d = { config.system.build.toplevel = lib.mk { name = "d"; args.v = "plain"; }; };
  }; }; }
''',
    'lib/mk.nix': MK,
    u'conf/caf\u00e9.txt': 'one',
    u'hosts/z\u00fcrich/web.nix': '{ }',
    u"keys/zo\u00eb's \\ key.pub": 'ssh-ed25519 AAAA',
}


def test_names_that_are_not_ascii_are_recorded_byte_for_byte(tmp_path):
    """strace prints a name's bytes over 0x7f as escapes; decoded as
    characters, `conf/café.txt` was recorded under another name, absent in
    every commit, and its edits reused stale."""
    flake = Shape(str(tmp_path), NAMES, 'abcd')
    flake.run()
    flake.write(u'conf/caf\u00e9.txt', 'two')
    flake.commit('edit cafe')
    assert how(flake.run()[0]) == {'a': 'evaluated', 'b': 'reused', 'c': 'reused',
                                   'd': 'reused'}
    flake.write(u'hosts/z\u00fcrich/db.nix', '{ }')
    flake.commit('a second host in zurich')
    assert how(flake.run()[0]) == {'a': 'reused', 'b': 'evaluated', 'c': 'reused',
                                   'd': 'reused'}
    flake.write(u"keys/zo\u00eb's \\ key.pub", 'ssh-ed25519 BBBB')
    flake.commit('rotate a key')
    assert how(flake.run()[0]) == {'a': 'reused', 'b': 'reused', 'c': 'evaluated',
                                   'd': 'reused'}


FOLLOWS = {
    'flake.nix': '''{
  inputs.me.follows = "";
  outputs = { self, me }: let lib = import ./lib/mk.nix; in {
    nixosConfigurations = {
      a = { config.system.build.toplevel = lib.mk { name = "a";
        args.v = me.shortRev or "dirty"; }; };
      b = { config.system.build.toplevel = lib.mk { name = "b";
        args.v = toString (builtins.unsafeGetAttrPos "nixosConfigurations" self).line; }; };
      c = { config.system.build.toplevel = lib.mk { name = "c";
        args.v = toString __curPos.line; }; };
      d = { config.system.build.toplevel = lib.mk { name = "d";
        args.v = builtins.toFile "where" (toString ./.); }; };
      e = { config.system.build.toplevel = lib.mk { name = "e"; args.v = "plain"; }; };
    }; }; }
''',
    'lib/mk.nix': MK,
}


def test_an_input_that_follows_the_root_and_positions_of_self(tmp_path):
    """`inputs.me.follows = ""` is the flake itself: a host using
    `me.shortRev` kept the previous commit's revision. Positions of
    `self`'s attributes are Nix's on the first run (a flake call that
    rebuilt `self` attribute by attribute lost them). A string of the
    source's path written to a file by `toFile` names every commit."""
    flake = Shape(str(tmp_path), FOLLOWS, 'abcde')
    flake.git('add', '-A')
    # nix writes the lock of the follows input; commit it
    flake.truth()
    flake.commit('lock')
    assert how(flake.run()[0]) == dict.fromkeys('abcde', 'evaluated')
    flake.write('README', 'x')
    flake.commit('readme')
    entries = flake.run()[0]
    assert how(entries) == {'a': 'evaluated', 'b': 'reused', 'c': 'reused', 'd': 'evaluated',
                            'e': 'reused'}


def test_a_reused_answer_is_never_kept_as_a_plain_hit(tmp_path):
    """A reused answer was stored under the new content's key: the next run
    answered `cached`, out of the spot check's sight."""
    flake = Shape(str(tmp_path), IMPORTED, 'ab')
    flake.run()
    flake.write('README', 'x')
    flake.commit('readme')
    assert how(flake.run()[0]) == dict.fromkeys('ab', 'reused')
    entries = flake.run()[0]
    assert how(entries) == dict.fromkeys('ab', 'reused')
    assert entries['a']['reused']['from']['revision'] != entries['a']['source']['revision']


def test_a_recorded_evaluation_says_the_flake_settings_it_does_not_apply(tmp_path):
    """Recorded evaluators call the flake themselves, never through Nix's
    own flake call, which is what warns of a nixConfig it does not apply:
    the run still says the settings, as plain evaluators make it say."""
    files = dict(IMPORTED)
    files['flake.nix'] = ('{ nixConfig.sandbox = false;\n'
                          '  outputs = inputs: import ./outputs.nix inputs; }\n')
    flake = Shape(str(tmp_path), files, 'ab')
    entries = flake.run()[0]
    assert how(entries) == dict.fromkeys('ab', 'evaluated')
    for entry in entries.values():
        assert [n for n in entry['notes'] if "nixConfig sets sandbox: not applied" in n], \
            entry['notes']


def test_the_spot_check_rotates_over_the_reused_hosts(tmp_path):
    """One reused host a batch is evaluated again by default, the least
    recently checked first: over as many runs as hosts, every one."""
    flake = Shape(str(tmp_path), IMPORTED, 'ab')
    flake.run()

    def checked():
        # (a host reused unchecked has a mark too: its wait)
        cache = test_eval_reuse._cache.EvalCache(flake.cache, environ=flake.environ())
        keys = [n[len('checked-'):-len('.json')] for n in os.listdir(flake.cache)
                if n.startswith('checked-')]
        return sorted(key for key, mark in cache.trust.check_marks(keys).items() if mark['when'])
    seen = []
    for step in range(2):
        flake.write('README', 'step %d' % step)
        flake.commit('step %d' % step)
        assert how(flake.run(reuse_check=1)[0]) == dict.fromkeys('ab', 'reused')
        seen.append(checked())
    assert len(seen[0]) == 1 and len(seen[1]) == 2, seen


def _reading(name):
    return {
        'flake.nix': '''{ outputs = { self }: let lib = import ./lib/mk.nix; in {
  nixosConfigurations = {
    a = { config.system.build.toplevel = lib.mk { name = "a";
      args.v = builtins.readFile (./conf + "/%s"); }; };
    b = { config.system.build.toplevel = lib.mk { name = "b"; args.v = "plain"; }; };
  }; }; }
''' % name.replace('\\', '\\\\').replace('"', '\\"'),
        'lib/mk.nix': MK,
        'conf/' + name: 'one',
    }


@pytest.mark.parametrize('name', ['O_PATH.txt', 'O_DIRECTORY', 'x) = -1'])
def test_a_name_that_looks_like_strace_words_is_read_as_a_name(tmp_path, name):
    """A file named like strace's own flags (O_PATH, O_DIRECTORY) or its
    return value (") = -1") made its read a mere look: its edits were
    reused stale (found by a reviewer who did not write the code)."""
    flake = Shape(str(tmp_path), _reading(name), 'ab')
    assert how(flake.run()[0]) == dict.fromkeys('ab', 'evaluated')
    flake.write('conf/' + name, 'two')
    flake.commit('edit')
    # run() asserts every answer equals a plain nix eval of this commit
    assert how(flake.run()[0]) == {'a': 'evaluated', 'b': 'reused'}


@pytest.mark.parametrize('expr', ['if self ? _type then "has" else "none"',
                                  'builtins.concatStringsSep "," (builtins.attrNames self)'])
def test_self_has_the_names_nix_gives_it(tmp_path, expr):
    """Nix 2.8's flake call gives self no _type; a later one does: the
    recorded call asks Nix which (found by a reviewer)."""
    files = {
        'flake.nix': '''{ outputs = { self }: let lib = import ./lib/mk.nix; in {
  nixosConfigurations = {
    a = { config.system.build.toplevel = lib.mk { name = "a"; args.v = %s; }; };
  }; }; }
''' % expr,
        'lib/mk.nix': MK,
    }
    flake = Shape(str(tmp_path), files, 'a')
    # run() asserts the recorded evaluator's answer equals a plain nix eval
    assert how(flake.run()[0]) == {'a': 'evaluated'}


# host a's answer depends on the source's own store path (builtins.hashString
# of toString ./.: documented as not defended), so reusing it on another
# commit is wrong; only the spot check catches it
STALE = {
    'flake.nix': '''{ outputs = { self }: let lib = import ./lib/mk.nix; in {
  nixosConfigurations = {
    a = { config.system.build.toplevel = lib.mk { name = "a";
      args.v = builtins.hashString "sha256" (toString ./.); }; };
    b = { config.system.build.toplevel = lib.mk { name = "b"; args.v = "b"; }; };
  }; }; }
''',
    'lib/mk.nix': MK,
}


def _names(folder, prefix):
    return sorted(n for n in os.listdir(folder) if n.startswith(prefix))


def test_deleting_other_hosts_check_times_does_not_keep_a_host_from_the_check(tmp_path):
    """The sixth review's B2: a writer of the cache folder deletes every
    spot check time but host a's (an old genuine one, replayed), so b, never
    checked, would come first on every run and a's wrong reuse never be
    checked. Where some reused hosts have a time and others none, the check
    takes one more host drawn by the time since its check: here a, the only
    one left, so it is caught on the first such run (Flake.run checks every
    answer given against `nix eval`)."""
    flake = Shape(str(tmp_path), STALE, 'ab')
    flake.run(reuse_check=1)
    # the same commit answered by reuse until both hosts have a check time
    for _step in range(6):
        for name in _names(flake.cache, ''):
            path = os.path.join(flake.cache, name)
            if len(name) == 69 and name.endswith('.json') and '"chain"' not in open(path).read():
                os.unlink(path)
        flake.run(reuse_check=1)
        if len(_names(flake.cache, 'checked-')) == 2:
            break
    kept = os.path.join(flake.cache, host_mark(flake, 'a'))
    with open(kept) as handle:
        saved = handle.read()
    flake.write('README', 'next')
    flake.commit('next')
    for name in _names(flake.cache, 'checked-'):
        os.unlink(os.path.join(flake.cache, name))
    with open(kept, 'w') as handle:
        handle.write(saved)
    os.chmod(kept, 0o600)
    entries, _figures = flake.run(reuse_check=1)
    assert 'is not what Nix gives' in str(entries['a']), entries['a']
    assert _names(flake.cache, 'distrust-')


def host_mark(flake, name):
    """The file of host ``name``'s check mark (``host_key``: the same on
    every commit), as a run of ``flake`` names it."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse._spot_check import (
        host_key)
    request = test_eval_reuse._eval.normalised(test_eval_reuse._eval.host_request(
        name, {'flake': 'git+file://%s' % flake.repo,
               'attr': ['nixosConfigurations', name] + test_eval_reuse.ATTR}, {}, lambda f: f))
    options = test_eval_reuse._eval.evaluation_opts(
        test_eval_reuse._nix.NixOptions(options={'substituters': ''}))
    return 'checked-%s.json' % host_key(request['flake'], request['attr'], options)


def test_the_spot_check_draw(tmp_path):
    """spot_check_sample: the least recently checked first (with none, a
    random draw), each within the budget; a host that does not fit waits,
    and once it has waited its turn out it is drawn whatever it costs."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse._spot_check import (
        due_after, spot_check_sample)
    hosts = ['a', 'b', 'c', 'd']
    marks = dict((k, {'when': when, 'waited': 0})
                 for k, when in {'a': 400, 'b': 100, 'c': 300, 'd': 200}.items())
    assert [spot_check_sample(hosts, marks, {}, 2, 0) for _draw in range(20)] == [['b', 'd']] * 20
    drawn = [spot_check_sample(hosts, {}, {}, 1, 0)[0] for _draw in range(200)]
    assert set(drawn) == set(hosts)
    # b is next but costs more than the budget: d, the next that fits
    costs = {'a': 1, 'b': 20, 'c': 1, 'd': 1}
    assert spot_check_sample(hosts, marks, costs, 1, 6) == ['d']
    # b has waited its turn out: drawn whatever it costs
    assert due_after(4, 1) == 6
    marks['b'] = {'when': 100, 'waited': 6}
    assert spot_check_sample(hosts, marks, costs, 1, 6) == ['b']
    # a recorder never checked: one of its hosts, whatever it costs
    assert spot_check_sample(hosts, {}, costs, 1, 0, forced=['c']) == ['c']


def test_a_host_that_does_not_fit_is_checked_within_the_bound():
    """Six hosts reused run after run, one twenty times the others' cost,
    the budget a quarter of what reuse saved: the light hosts take turns,
    the heavy one waits, no host goes more than due_after batches unchecked,
    and a batch costs one light host's check (the median); deleting the
    other hosts' marks before every batch (a writer of the cache folder)
    does not keep the heavy host out either."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse._spot_check import (
        due_after, spot_check_sample)
    hosts = list('abcdeh')
    costs = dict(dict.fromkeys('abcde', 1.0), h=20.0)
    for attack in (False, True):
        marks, unchecked, longest, spent = {}, dict.fromkeys(hosts, 0), {}, []
        for batch in range(1, 60):
            if attack:
                marks = dict((k, v) for k, v in marks.items() if k == 'h')
            sample = spot_check_sample(hosts, marks, costs, 1, 0.25 * sum(costs.values()))
            spent.append(sum(costs[k] for k in sample))
            for key in hosts:
                if key in sample:
                    marks[key] = {'when': batch, 'waited': 0}
                    unchecked[key] = 0
                else:
                    mark = marks.get(key) or {'when': 0, 'waited': 0}
                    marks[key] = {'when': mark['when'], 'waited': mark['waited'] + 1}
                    unchecked[key] += 1
                    longest[key] = max(longest.get(key, 0), unchecked[key])
        # (a host whose own mark is deleted is never checked, so first: it
        # is drawn at random among such hosts, with no bound on bad luck)
        watched = ['h'] if attack else hosts
        assert max(longest[k] for k in watched) <= due_after(len(hosts), 1), (attack, longest)
        assert 20.0 in spent
        if not attack:
            # (under the attack every batch also draws one more by age: the
            # attacker adds cost, never keeps a host out)
            assert sorted(spent)[len(spent) // 2] <= 1.0, spent


# outputs that export the names Nix's own flake call puts last (`inherit
# inputs;` reaches the inputs from `nix repl`), an input flake whose own
# `.inputs` a host reads, and a non-flake input's names (Nix 2.34 gives it a
# `sourceInfo`, 2.8 does not)
EXPORTS = '''{
  inputs.dep.url = "path:%(base)s/dep";
  inputs.raw = { url = "path:%(base)s/raw"; flake = false; };
  outputs = inputs@{ self, dep, raw }:
    let
      lib = import ./lib/mk.nix;
      host = name: v: { config.system.build.toplevel = lib.mk { inherit name; args.v = v; }; };
      names = set: builtins.concatStringsSep "," (builtins.attrNames set);
    in {
%(exports)s
      nixosConfigurations = {
        a = host "a" (names self.inputs);
        b = host "b" (names dep.inputs);
        c = host "c" "${builtins.typeOf self.sourceInfo} ${builtins.typeOf self.outputs}";
        d = host "d" "plain";
        e = host "e" (names raw);
      };
    };
}
'''
DEP = '''{
  inputs.leaf.url = "path:%(base)s/leaf";
  outputs = { self, leaf }: { lib.v = 1; };
}
'''
LEAF = '{ outputs = { self }: { }; }\n'


@pytest.mark.parametrize('exports', [
    'inherit inputs;',
    'inherit inputs; sourceInfo = "the outputs\' own"; outputs = "the outputs\' own";'])
def test_self_and_inputs_end_as_nix_s_call_ends_them(tmp_path, exports):
    """Nix's flake call ends every node with its own `inputs`, `outputs`
    and `sourceInfo`, whatever the outputs define. The recorded call gave
    only the names the root's outputs lacked, to every node: `self.inputs`
    was the outputs' (`dep,self` where Nix gives `dep`), `self.sourceInfo`
    the outputs' string, and `dep.inputs` was missing (the host failed
    where Nix evaluates it); a non-flake input lacked the `sourceInfo` Nix
    2.34 gives it. Equal to `nix eval` on the first (recording) run, on a
    reused run without the spot check, and with it."""
    base = str(tmp_path)
    for name, text in (('dep', DEP), ('leaf', LEAF), ('raw', None)):
        os.makedirs(os.path.join(base, name))
        rel, text = ('flake.nix', text % {'base': base}) if text else ('file', 'raw\n')
        with open(os.path.join(base, name, rel), 'w') as handle:
            handle.write(text)
    flake = Shape(base, {'flake.nix': EXPORTS % {'base': base, 'exports': '      ' + exports},
                         'lib/mk.nix': MK}, 'abcde')
    flake.git('add', '-A')
    # nix writes the lock of the inputs; commit it
    flake.truth()
    flake.commit('lock')
    runs = record_then_reuse(flake)
    assert how(runs[0]) == dict.fromkeys('abcde', 'evaluated')
    assert how(runs[1]) == dict.fromkeys('abcde', 'reused')
