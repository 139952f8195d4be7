"""Every reason a flake's hosts are not reused is one row
(plugin_utils/evaluation/reuse/_rules.py), and the docs' table of
them is that table, row for row, in its order."""

import os
import re
import sys
import threading
import time

from tests.collection import REPO, collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse import (  # noqa: E402
    _rules)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._pin import (  # noqa: E402
    FlakeSource)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixFeatures, NixOptions)


def test_the_docs_table_is_the_rules_table():
    with open(os.path.join(REPO, 'docs', 'eval-cache.md')) as handle:
        text = handle.read()
    section = text[text.index('### When nothing is reused'):]
    section = section[:section.index('\n### ')]
    rows = re.findall(r'^\| `([a-z0-9.-]+)` \|', section, re.MULTILINE)
    assert rows == [rule.name for rule in _rules.RULES]


def facts(source, features, asked=None, distrust=None, options=None, call=None):
    return _rules.Facts(
        NixOptions(options=options or {}), lambda: features, source,
        distrust=lambda: distrust, trace=lambda: None,
        info=lambda: asked or {'info': {'lastModified': 1}, 'refused': []},
        call=lambda: call or {'flake': ['inputs', 'outputs', 'sourceInfo'], 'plain': []})


def test_the_first_row_that_applies_decides_and_later_facts_are_not_asked():
    source = FlakeSource('git+file:///f', 'git+file:///f?rev=1', identity_={'locks': {}},
                         provenance={'nar_hash': 'sha256-x'}, store_path='/nix/store/x-source')
    features = NixFeatures('nix', (2, 8, 0))
    asked = []

    def trace():
        asked.append('trace')
        return None
    found = _rules.Facts(
        NixOptions(options={'allow-import-from-derivation': True}), lambda: features, source,
        distrust=lambda: None, trace=trace, info=lambda: {'info': {}}, call=lambda: {})
    assert _rules.why_not(found).startswith('import-from-derivation is allowed')
    assert asked == []
    marked = facts(source, features, distrust='/c/distrust-1.json')
    assert _rules.why_not(marked) == (
        'a spot check found a reused answer Nix does not give; reuse stays off for this flake '
        'until /c/distrust-1.json is removed')
    assert _rules.why_not(facts(source, features)) is None


def _attributes_after(asked, info):
    """The flake's attributes (``info``), given only once the probe was
    ``asked``: one after the other, the probe would start only once this
    returned."""
    def attributes():
        assert asked.wait(10), "the flake call's probe was not asked beside the attributes"
        return info
    return attributes


def test_the_flake_call_is_asked_beside_the_flake_s_attributes():
    """Two Nix processes a run that need nothing of each other: the flake's
    attributes (its row) and the probe of Nix's flake call (the next row)
    are asked at once, not one after the other. Where the attributes' row
    applies, the probe's answer is waited for and decides nothing."""
    source = FlakeSource('git+file:///f', 'git+file:///f?rev=1', identity_={'locks': {}},
                         provenance={'nar_hash': 'sha256-x'}, store_path='/nix/store/x-source')
    features = NixFeatures('nix', (2, 8, 0))
    for info, said in (({'info': {'lastModified': 1}, 'refused': []}, None),
                       ('error: no flake', "Nix did not give the flake's attributes")):
        asked, answered = threading.Event(), threading.Event()

        def call(asked=asked, answered=answered):
            asked.set()
            time.sleep(0.2)
            answered.set()
            return {'flake': ['inputs', 'outputs', 'sourceInfo'], 'plain': []}

        found = _rules.Facts(
            NixOptions(options={}), lambda: features, source, distrust=lambda: None,
            trace=lambda: None, info=_attributes_after(asked, info), call=call)
        reason = _rules.why_not(found)
        assert reason is None if said is None else reason.startswith(said), reason
        assert answered.is_set()


def test_a_subflake_of_a_dirty_tree_on_an_older_nix():
    source = FlakeSource('git+file:///f?dir=sub', 'path:/nix/store/x-source/sub',
                         identity_={'locks': {}}, provenance={'nar_hash': 'sha256-x'},
                         root='/nix/store/x-source', store_path='/nix/store/x-source', sub='sub')
    assert 'uncommitted changes' in _rules.why_not(
        facts(source, NixFeatures('nix', (2, 8, 0))))
    assert 'Nix 2.20-2.24' in _rules.why_not(
        facts(FlakeSource('x', 'x', identity_={}, provenance={'nar_hash': 'h'},
                          store_path='/nix/store/x-source', sub='sub'),
              NixFeatures('nix', (2, 22, 0))))
    assert _rules.why_not(facts(source, NixFeatures('nix', (2, 34, 8)))) is None


def test_a_flake_call_the_recorded_call_cannot_give():
    source = FlakeSource('git+file:///f', 'git+file:///f?rev=1', identity_={'locks': {}},
                         provenance={'nar_hash': 'sha256-x'}, store_path='/nix/store/x-source')
    said = "this Nix's flake call gives self lazyThing that the recorded call cannot give"
    assert _rules.why_not(
        facts(source, NixFeatures('nix', (2, 40, 0)), call=said)) == said


def test_an_input_this_nix_places_otherwise_stops_only_the_flakes_that_have_one():
    """A Nix whose call places relative or `?dir=` inputs elsewhere than
    record.nix (Nix 2.26-2.28 repeated a nested input's parent folder)
    records no flake that has such an input, and every other flake."""
    said = ("this Nix's flake call places grand at <src>/./rel//./rel/./grand where the "
            "recorded call places it at <src>/./rel/./grand")
    call = {'flake': ['inputs', 'outputs', 'sourceInfo'], 'plain': [], 'placed': said}
    nodes = {'root': {'inputs': {'kid': 'kid', 'nf': 'nf', 'dep': 'dep'}},
             'dep': {'locked': {'type': 'path', 'path': '/srv/dep', 'narHash': 'h'}}}
    shapes = {'kid': {'locked': {'type': 'path', 'path': './kid'}, 'parent': []},
              'nf': {'locked': {'type': 'path', 'path': '/srv/nf', 'dir': 'sub', 'narHash': 'h'},
                     'flake': False}}
    features = NixFeatures('nix', (2, 27, 0))
    for name, node in sorted(shapes.items()):
        source = FlakeSource('git+file:///f', 'git+file:///f?rev=1',
                             identity_={'locks': {'root': 'root', 'nodes': dict(nodes, **{
                                 name: node})}},
                             provenance={'nar_hash': 'sha256-x'}, store_path='/nix/store/x-source')
        assert _rules.placed_nodes(source) == [name]
        assert _rules.why_not(facts(source, features, call=call)) == (
            'it has a relative or ?dir= input, and ' + said)
        # a Nix that places them as record.nix does
        assert _rules.why_not(
            facts(source, features, call=dict(call, placed=None))) is None
    plain = FlakeSource('git+file:///f', 'git+file:///f?rev=1',
                        identity_={'locks': {'root': 'root', 'nodes': nodes}},
                        provenance={'nar_hash': 'sha256-x'}, store_path='/nix/store/x-source')
    assert _rules.placed_nodes(plain) == []
    assert _rules.why_not(facts(plain, features, call=call)) is None
