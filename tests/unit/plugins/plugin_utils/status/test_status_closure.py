"""The closure difference of a status line, read from this controller's real
Nix store: paths made with ``builtins.toFile`` (valid at once, nothing
built), one shared between the running and the desired closure; a path the
store lacks gives no difference and stays absent."""

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
    change = _status_closure.closure_change(OPTS, paths['current'], paths['desired'])
    # new: system-2, new-, extra- (lib- is shared); gone: system-1, old-
    assert change['paths_added'] == 3 and change['paths_removed'] == 2, change
    grown = (sum(size(paths[n]) for n in ('desired', 'new', 'extra'))
             - sum(size(paths[n]) for n in ('current', 'old')))
    assert change['size_change_bytes'] == grown > 4096, (change, grown)
    fact = {'class': 'pending', 'words': 'deploy pending', 'reasons': [],
            'current': paths['current'], 'desired': paths['desired'], 'generation': 4,
            'closure_diff': change}
    text = _status_view.line('web1', fact)
    assert text.endswith(', +3 -2 paths, +%.1f KiB' % (grown / 1024.0)), text
    # a host that runs what the flake gives: nothing differs, no Nix asked
    same = _status_closure.closure_change(NixOptions(nix_bin='/nonexistent/nix'),
                                          paths['desired'], paths['desired'])
    assert same == {'paths_added': 0, 'paths_removed': 0, 'size_change_bytes': 0}


def test_a_system_the_store_lacks_has_no_difference_and_is_not_fetched():
    current = to_file('builtins.toFile "system-%s" "x"' % uuid.uuid4().hex)
    absent = '/nix/store/%s-nixos-system-web1' % ('0' * 32)
    assert _status_closure.closure_change(OPTS, current, absent) is None
    assert _status_closure.closure_change(OPTS, absent, current) is None
    assert not os.path.exists(absent)
    # what the host reported is not a store path: nothing is asked
    assert _status_closure.closure_change(OPTS, '/etc/passwd', current) is None
    fact = {'class': 'pending', 'words': 'deploy pending', 'reasons': [], 'current': absent,
            'desired': current, 'generation': 4, 'closure_diff': None}
    assert 'paths' not in _status_view.line('web1', fact)
