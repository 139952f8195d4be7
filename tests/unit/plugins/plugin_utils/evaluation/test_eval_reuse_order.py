"""Where each host a commit sends back is evaluated
(plugin_utils/evaluation/reuse/_order.py, docs/eval-cache.md "Exact
records"): only the cost depends on it, so each test counts the hosts a
commit evaluates, every answer checked against a plain `nix eval` of that
commit (``Flake.run``). Real Nix, git and strace."""

from tests.unit.plugins.plugin_utils.evaluation.test_eval_reuse import (  # noqa: F401  pylint: disable=unused-import
    Flake, how, pytestmark)


def evaluated(entries):
    return sorted(name for name, said in how(entries).items() if said == 'evaluated')


def change(flake, rel, text, workers):
    """Commit ``text`` to ``rel``; the hosts the next run evaluates."""
    flake.write(rel, text)
    flake.commit('%s: %s' % (rel, text))
    return evaluated(flake.run(workers=workers)[0])


def test_a_host_naming_the_source_is_evaluated_after_a_changed_neighbour(tmp_path):
    """b's system names the source (``"${self}"``): it is never reused, so
    it has no reuse entry. It is still evaluated after c, whose own file
    changed, in their one evaluator: c's new record then leaves out
    ``self.outPath``, and the next commit evaluates b alone again."""
    flake = Flake(str(tmp_path))
    flake.write('hosts/b.nix', '{ self }: { v = "${self}"; }\n')
    flake.write('hosts/c.nix', '{ self }: { v = builtins.readFile ../files/c.txt; }\n')
    flake.write('files/c.txt', 'c')
    flake.commit('b names the source')
    flake.run(workers=1)
    # until every record but b's is its own (the first commit sends the
    # hosts after b back, each alone)
    change(flake, 'README', 'settle', 1)
    assert change(flake, 'README', 'settled', 1) == ['b']
    assert change(flake, 'files/c.txt', 'c2', 1) == ['b', 'c']
    assert change(flake, 'README', 'after c', 1) == ['b']


def test_a_file_one_host_reads_and_another_copies_with_its_folder(tmp_path):
    """a reads bin/tool; d copies ./bin whole (``builtins.path``); b, c, e
    and f each read a file of their own. a and d are the first hosts of
    their evaluators, so both first segments hold bin/tool, one as a file
    read on its own, the other with the folder it lists: not a part every
    host shares. A commit to it sends back a and d, and the hosts after them
    once, each alone: a later commit to f's file then evaluates f only, and
    the next commit to bin/tool only a and d."""
    flake = Flake(str(tmp_path))
    flake.write('bin/tool', 'v1')
    flake.write('bin/other', 'o')
    for name in 'bcef':
        flake.write('hosts/%s.nix' % name,
                    '{ self }: { v = builtins.readFile ../files/%s.txt; }\n' % name)
        flake.write('files/%s.txt' % name, name)
    flake.write('hosts/a.nix', '{ self }: { v = builtins.readFile ../bin/tool; }\n')
    flake.write('hosts/d.nix',
                '{ self }: { v = builtins.path { path = ../bin; name = "bin"; }; }\n')
    flake.commit('a reads bin/tool, d copies bin')
    _entries, figures = flake.run(workers=2)
    assert figures['processes'] == 2, figures
    assert change(flake, 'bin/tool', 'v2', 2) == list('abcdef')
    assert change(flake, 'files/f.txt', 'f2', 2) == ['f']
    assert change(flake, 'bin/tool', 'v3', 2) == ['a', 'd']
