# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What signing the evaluation cache's files costs (issue 77).

    python -m benchmarks.eval_cache_signing [--entries 2000] [--chain-reads 2000]

Every file of the evaluation cache is signed when written and verified when
read (plugin_utils/evaluation/cache/_signing.py). This signs and verifies
``--entries`` cache entries (the three fields, a few hundred bytes), reuse
entries (with their origin) and one record chain of ``--chain-reads`` paths,
with a fresh key in a temporary config folder, and prints the microseconds
each costs, beside a plain JSON write and read of the same entries through
``EvalCache`` (the whole put and get of a file: signature, rename, fsync).
Figures only: nothing here asserts on time; the goal is under 1 ms an entry.
No Nix, no lab, no root.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.collection import collections_path  # noqa: E402

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache import (  # noqa: E402
    _signing)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._cache import (  # noqa: E402
    EvalCache)

ENTRIES = 2000
CHAIN_READS = 2000
STORE = '/nix/store/'


def entry(number):
    base = '%032d' % number
    return {'drv_path': STORE + base + '-nixos-system-host%d.drv' % number,
            'out_path': STORE + base[::-1] + '-nixos-system-host%d' % number,
            'system': 'x86_64-linux'}


def reuse_entry(number):
    return dict(entry(number), chain='c' * 64, upto=number % 7, origin={
        'url': 'git+file:///srv/fleet?ref=main&rev=' + 'a' * 40, 'revision': 'a' * 40,
        'dirty': False, 'nar_hash': 'sha256-' + 'A' * 43, 'last_modified': 1700000000})


def chain(reads):
    return {'format': 2, 'segments': [{'reads': dict(
        ('hosts/h%05d.nix' % n, ['read', 'file:-:' + '%064x' % n]) for n in range(reads)),
        'self': {}}]}


def per_item(func, items):
    started = time.perf_counter()
    for item in items:
        func(item)
    return (time.perf_counter() - started) / max(1, len(items)) * 1e6


def run(entries=ENTRIES, chain_reads=CHAIN_READS, log=print):
    work = tempfile.mkdtemp(prefix='nixdeploy-bench-signing-')
    try:
        env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(work, 'config'))
        env.pop(_signing.KEY_FILE_ENV, None)
        signer = _signing.Signer.from_environment(env)
        rows = []
        for kind, make in (('entry', entry), ('reuse entry', reuse_entry)):
            names = ['%064x%s' % (n, '.json') for n in range(entries)]
            data = [make(n) for n in range(entries)]
            signed = []
            sign_us = per_item(lambda i: signed.append(signer.sign(names[i], data[i])),
                               range(entries))
            verify_us = per_item(lambda i: signer.verify(names[i], signed[i]), range(entries))
            rows.append({'kind': kind, 'n': entries, 'sign_us': sign_us, 'verify_us': verify_us,
                         'bytes': len(_signing.canonical(signed[0]))})
        big = chain(chain_reads)
        signed_chain = [None]
        sign_us = per_item(lambda _i: signed_chain.__setitem__(0, signer.sign('chain-x.json', big)),
                           range(20))
        verify_us = per_item(lambda _i: signer.verify('chain-x.json', signed_chain[0]), range(20))
        rows.append({'kind': 'chain of %d reads' % chain_reads, 'n': 20, 'sign_us': sign_us,
                     'verify_us': verify_us,
                     'bytes': len(_signing.canonical(signed_chain[0]))})
        # the whole put and read of a file through the cache (fsync included)
        cache = EvalCache(os.path.join(work, 'cache'), env)
        keys = ['%064x' % n for n in range(min(entries, 500))]
        put_us = per_item(lambda i: cache.put(keys[i], entry(i)), range(len(keys)))
        # pylint: disable-next=protected-access
        read_us = per_item(lambda i: cache._read(keys[i]), range(len(keys)))
        figures = {'rows': rows, 'put_us': put_us, 'read_us': read_us, 'files': len(keys)}
        log(table(figures))
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table(data):
    lines = ['Evaluation cache signatures (ed25519, one key): microseconds each',
             '%-22s %7s %7s %9s %10s' % ('file', 'n', 'bytes', 'sign us', 'verify us')]
    lines.append('-' * len(lines[-1]))
    for row in data['rows']:
        lines.append('%-22s %7d %7d %9.1f %10.1f' % (
            row['kind'], row['n'], row['bytes'], row['sign_us'], row['verify_us']))
    lines.append('EvalCache.put (signed, written whole, fsync) %.1f us, read and verified '
                 '%.1f us, %d files' % (data['put_us'], data['read_us'], data['files']))
    entry_row = data['rows'][0]
    lines.append('an entry signed and verified: %.3f ms (goal: under 1 ms)'
                 % ((entry_row['sign_us'] + entry_row['verify_us']) / 1000.0))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--entries', type=int, default=ENTRIES)
    parser.add_argument('--chain-reads', type=int, default=CHAIN_READS)
    args = parser.parse_args(argv)
    run(args.entries, args.chain_reads)


if __name__ == '__main__':
    main()
