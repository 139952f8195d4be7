"""Fixtures shared by test_nix_eval.py and test_nix_build.py (imported explicitly).

A lab of 8 hosts of every persona, fixture flakes for it, a logging ``nix``
wrapper that counts the Nix processes a playbook starts, and a runner that
plays a playbook against a static inventory of the lab with the host vars
the Nix inventory would set (nix_flake, nix_attr, nix_platform).
"""

import hashlib
import os
import stat
import uuid

import pytest

from tests.collection import run_playbook
from tests.lab import Lab, heavy
from tests.lab.fixtures import FleetFlake, evaluate_systems

PERSONAS = ['nixos', 'darwin', 'nix-on-droid', 'home-manager']
NIX_OPTIONS = {'substituters': ''}


def lab_session(name='evb'):
    """Body of a test module's lab fixture (test_nix_build's): 8 hosts, every persona."""
    lab = Lab(name).up(8, personas=PERSONAS)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope='module')
def calibrated(tmp_path_factory):
    """This machine's heavy-system figures, measured once for the pytest
    session (heavy.session_folder)."""
    return heavy.calibrate(folder=heavy.session_folder(tmp_path_factory))


def make_flake(path, lab, **kwargs):
    """A fixture flake for ``lab`` whose systems are new to every store: each
    configuration's version carries a token unique to this call."""
    flake = FleetFlake.for_lab(str(path), lab, **kwargs)
    token = uuid.uuid4().hex[:10]
    given = kwargs.get('configurations') or {}
    for name, cfg in flake.data['configurations'].items():
        if 'version' not in given.get(name, {}):
            cfg['version'] = '1-%s' % token
    flake.save()
    flake.token = token
    return flake


# {(flake reference, digest of its files): {host: paths}}
_TRUTHS = {}


def _flake_digest(folder):
    """A digest of the flake folder's files (its .git apart: no output reads it)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != '.git')
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode() + b'\0')
            if not os.path.islink(path):
                with open(path, 'rb') as handle:
                    digest.update(handle.read())
            digest.update(b'\0')
    return digest.hexdigest()


def truth(flake, host):
    """drvPath/outPath of a host's system as a plain nix eval gives them.
    The tests are about nix_eval's and nix_build's answers, not about this
    reference's processes: every host of the flake as it is now, but those
    whose configuration does not evaluate (``broken_eval``), is evaluated
    in ONE nix eval, kept until the flake's files change."""
    key = (flake.ref, _flake_digest(flake.path))
    if key not in _TRUTHS:
        _TRUTHS[key] = evaluate_systems(flake.ref, dict(
            (name, flake.attr(name)) for name in flake.data['hosts']
            if not flake.data['configurations'][flake.config_of(name)].get('broken_eval')))
    return _TRUTHS[key][host]


def nix_wrapper(directory):
    """A ``nix`` that logs each invocation (one line) and execs the real one."""
    log = os.path.join(str(directory), 'nix-calls.log')
    path = os.path.join(str(directory), 'nix')
    with open(path, 'w') as handle:
        handle.write('#!/bin/sh\nline=$(printf "%%s" "$*" | tr "\\n" " ")\n'
                     'printf "%%s\\n" "$line" >>"%s"\nexec /usr/bin/nix "$@"\n' % log)
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path, log


def calls(log, subcommand):
    """The logged invocations of ``nix <subcommand>``; for ``eval``, the
    evaluators only (their expression traces answers with the marker), not
    the run's one look at the flake's attributes (docs/eval-cache.md, "Reuse
    across commits")."""
    if not os.path.exists(log):
        return []
    with open(log) as handle:
        found = [ln for ln in handle.read().splitlines() if ln.split(' ', 1)[0] == subcommand]
    if subcommand == 'eval':
        found = [ln for ln in found if 'nixdeploy-eval-result' in ln]
        if any(RECORDED in ln for ln in found):
            # a recording run: the spot check's own Nix evaluation of the
            # hosts it drew (the flake as an installable, as a plain `nix
            # eval`) is no evaluator of the batch (spot_checks)
            found = [ln for ln in found if RECORDED in ln]
    return found


# a recorded evaluator calls the flake through record.nix, an expression;
# Nix's own evaluation (an evaluator that does not record, the spot check)
# names the flake as an installable
RECORDED = ' --expr '


def spot_checks(log):
    """The spot check's Nix evaluations in a recording run (docs/eval-cache.md,
    "The spot check": a recorder never checked before has one host drawn)."""
    if not os.path.exists(log):
        return []
    with open(log) as handle:
        found = [ln for ln in handle.read().splitlines()
                 if ln.split(' ', 1)[0] == 'eval' and 'nixdeploy-eval-result' in ln]
    if not any(RECORDED in ln for ln in found):
        return []
    return [ln for ln in found if RECORDED not in ln]


def inventory(lab, flake, hosts=None, extra=None):
    """The lab's static inventory plus the host vars of the Nix inventory."""
    inv = lab.ansible_inventory()
    for group in inv['all']['children'].values():
        for name in list(group['hosts']):
            if hosts is not None and name not in hosts:
                del group['hosts'][name]
                continue
            group['hosts'][name].update({'nix_flake': flake.ref, 'nix_attr': flake.attr(name)})
            group['hosts'][name].update((extra or {}).get(name, {}))
    return inv


def play(workdir, lab, flake, tasks, hosts='all', args=(), serial=None, inv=None, check=False,
         env=None, strategy=None):
    playbook = [{'hosts': hosts, 'gather_facts': False, 'tasks': tasks}]
    if serial:
        playbook[0]['serial'] = serial
    if strategy:
        playbook[0]['strategy'] = strategy
    argv = list(args) + (['--check'] if check else [])
    return run_playbook(playbook, inv or inventory(lab, flake), str(workdir), args=argv,
                        env=dict({'ANSIBLE_FORKS': '8'}, **(env or {})))
