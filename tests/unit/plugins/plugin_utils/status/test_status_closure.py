"""The closure difference of a status line, read from this controller's real
Nix store: paths made with ``builtins.toFile`` (valid at once, nothing
built), one shared between the running and the desired closure; a path the
store lacks gives no difference and stays absent. Several hosts are asked
together, as one wave of the batch asks them."""

import os
import subprocess
import sys
import uuid

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixOptions)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import (  # noqa: E402
    _status_closure, _status_view)

OPTS = NixOptions(options={'substituters': ''})


def to_file(expr):
    """The store path a Nix expression (a ``builtins.toFile``) writes."""
    out = subprocess.run(['nix-instantiate', '--eval', '--read-write-mode', '-E', expr],
                         stdout=subprocess.PIPE, check=True, universal_newlines=True).stdout
    return out.strip().strip('"')


def size(path):
    out = subprocess.run(['nix-store', '--query', '--size', path], stdout=subprocess.PIPE,
                         check=True, universal_newlines=True).stdout
    return int(out)


def test_the_difference_counts_added_and_dropped_paths_and_the_size():
    files = ('let lib = builtins.toFile "lib-M" "shared"; '
             'old = builtins.toFile "old-M" "x"; '
             'new = builtins.toFile "new-M" "%s"; '
             'extra = builtins.toFile "extra-M" "z"; in '
             '{ lib = lib; old = old; new = new; extra = extra; '
             'current = builtins.toFile "system-M-1" "${lib} ${old}"; '
             'desired = builtins.toFile "system-M-2" "${lib} ${new} ${extra}"; }'
             % ('y' * 5000)).replace('-M', '-' + uuid.uuid4().hex)
    paths = dict((name, to_file('(%s).%s' % (files, name)))
                 for name in ('lib', 'old', 'new', 'extra', 'current', 'desired'))
    absent = '/nix/store/%s-nixos-system-web3' % ('0' * 32)
    changes = _status_closure.closure_changes(OPTS, {
        'web1': (paths['current'], paths['desired']),
        'web2': (paths['desired'], paths['current']),
        'web3': (paths['current'], absent)})
    change = changes['web1']
    # new: system-2, new-, extra- (lib- is shared); gone: system-1, old-
    assert change['paths_added'] == 3 and change['paths_removed'] == 2, change
    grown = (sum(size(paths[n]) for n in ('desired', 'new', 'extra'))
             - sum(size(paths[n]) for n in ('current', 'old')))
    assert change['size_change_bytes'] == grown > 4096, (change, grown)
    # the same two systems the other way round, beside them
    assert changes['web2'] == {'paths_added': 2, 'paths_removed': 3,
                               'size_change_bytes': -grown}, changes
    # a system the store lacks leaves its host alone without a difference
    assert changes['web3'] is None and not os.path.exists(absent), changes
    fact = {'class': 'pending', 'words': 'deploy pending', 'reasons': [],
            'current': paths['current'], 'desired': paths['desired'], 'generation': 4,
            'closure_diff': change}
    text = _status_view.line('web1', fact)
    assert text.endswith(', +3 paths, -2 paths, +%.1f KiB' % (grown / 1024.0)), text
    # one path each way: the word is singular
    one = dict(fact, closure_diff={'paths_added': 1, 'paths_removed': 1,
                                   'size_change_bytes': 10})
    assert _status_view.line('web1', one).endswith(', +1 path, -1 path, +10 B')
    # a host that runs what the flake gives: nothing differs, no Nix asked
    same = _status_closure.own_answer(paths['desired'], paths['desired'])
    assert same == {'paths_added': 0, 'paths_removed': 0, 'size_change_bytes': 0}


def test_a_system_the_store_lacks_has_no_difference_and_is_not_fetched():
    current = to_file('builtins.toFile "system-%s" "x"' % uuid.uuid4().hex)
    absent = '/nix/store/%s-nixos-system-web1' % ('0' * 32)
    assert _status_closure.closure_changes(OPTS, {'web1': (current, absent),
                                                  'web2': (absent, current)}) == \
        {'web1': None, 'web2': None}
    assert not os.path.exists(absent)
    # what the host reported is not a store path: the host asks nothing
    assert _status_closure.own_answer('/etc/passwd', current) is None
    assert _status_closure.own_answer(None, current) is None
    fact = {'class': 'pending', 'words': 'deploy pending', 'reasons': [], 'current': absent,
            'desired': current, 'generation': 4, 'closure_diff': None}
    assert 'paths' not in _status_view.line('web1', fact)
