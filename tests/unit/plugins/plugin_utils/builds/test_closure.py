"""The one closure walk (plugin_utils/builds/_closure.py) and what is read from it:
the derivations a derivation needs, the sizes and the listing of a path's
closure. The closure difference: test_nix_output.py (its reader) and the lab
tests of nix_activate's diff mode."""

import json
import sys

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _closure  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output  # noqa: E402

S = '/nix/store/'
A, B, LIB, GLIBC, GONE = ('%s%s-%s' % (S, c * 32, n) for c, n in (
    ('a', 'sys-a'), ('b', 'sys-b'), ('c', 'lib'), ('d', 'glibc'), ('e', 'gone')))


def infos():
    # as the reader returns them (every shape of path-info --json: test_nix_output.py)
    return _nix_output.path_infos([
        {'path': A, 'narSize': 10, 'references': [A, LIB]},
        {'path': B, 'narSize': 20, 'references': [GLIBC, GONE]},
        {'path': LIB, 'narSize': 5, 'references': [GLIBC]},
        {'path': GLIBC, 'narSize': 1, 'references': []},
        {'path': GONE, 'valid': False}])


def test_walk_follows_references_and_cycles():
    found = infos()
    assert _closure.walk(found, A) == {A, LIB, GLIBC}
    # a path without an entry (not valid, or not asked) is kept unless known_only
    assert _closure.walk(found, B) == {B, GLIBC, GONE}
    assert _closure.walk(found, B, known_only=True) == {B, GLIBC}
    assert _closure.walk(found, S + 'x' * 32 + '-unknown') == {S + 'x' * 32 + '-unknown'}
    assert _closure.walk(found, GONE, known_only=True) == set()


def test_walk_of_derivations():
    graph = _nix_output.derivations({'version': 4, 'derivations': {
        'd-top.drv': {'inputs': {'drvs': {'d-lib.drv': {'outputs': ['out']},
                                          'd-src.drv': {'outputs': ['out']}}},
                      'outputs': {'out': {'path': 'o-top'}}},
        'd-lib.drv': {'inputs': {'drvs': {'d-src.drv': {'outputs': ['out']}}},
                      'outputs': {'out': {'path': 'o-lib'}}}}})
    top, lib, src = (S + n for n in ('d-top.drv', 'd-lib.drv', 'd-src.drv'))
    # d-src.drv is not in the graph: it is needed all the same
    assert _closure.walk(graph, top, 'input_drvs') == {top, lib, src}
    assert _closure.walk(graph, lib, 'input_drvs') == {lib, src}


def test_sizes_count_the_valid_paths_once():
    found = infos()
    assert _closure.sizes(found, A) == (3, 16)
    assert _closure.sizes(found, B) == (2, 21)
    assert json.loads(json.dumps(_closure.sizes(found, LIB))) == [2, 6]
    assert _closure.sizes(found, GONE) == (0, 0)


def test_listing_is_each_hosts_own_closure():
    found = dict((p, {'narSize': i['narSize'], 'references': i['references']})
                 for p, i in infos().items() if i)  # as _copy.batch_infos keeps them
    assert _closure.listing(found, A) == [
        {'path': A, 'narSize': 10}, {'path': LIB, 'narSize': 5}, {'path': GLIBC, 'narSize': 1}]
    assert [p['path'] for p in _closure.listing(found, B)] == [B, GLIBC]
    assert _closure.listing(found, GONE) == []
