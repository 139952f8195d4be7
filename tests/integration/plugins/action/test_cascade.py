"""nix_copy_closure mode=cascade against the lab: real nix, real sshd, real hops.

Lab ``cas``: 8 NixOS hosts (root), every host link and the controller's own
uplink shaped to RATE with tbf (tests/lab/links.py), so the controller's
bytes and the hosts' bytes to each other are counted apart. All hosts deploy
ONE shared system (configuration ``fleet``), as hosts of one role do.

1. A deploy (eval -> build -> copy in cascade mode -> activate) on the
   builtin ``free`` strategy, two sites (tags ``east``/``west``): every host ends
   with the verified closure and activates; the controller's uplink carries one
   closure; each site is entered once; the copy time is printed against
   (log2 8 + 1) x S / U (printed, not asserted: this machine's 2 cores are
   shared with other work, so wall times are noisy).
2. Faults in one run (copy only), beside healthy hosts: a sender killed
   mid-cascade, a receiver whose address on the peer network answers with
   another host key (the hop fails, named; the controller pushes), a host
   the other hosts cannot reach (direct push), a host whose real host key
   changed (fails, named, alone).
"""

import json
import math
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from tests.collection import run_playbook
from tests.deploy_fleet import prepare, write_inventory
from tests.lab.links import Links, leftovers, wait_for

pytestmark = pytest.mark.lab

HOSTS = ['h%d' % i for i in range(1, 9)]
SITES = dict((h, 'east' if i <= 4 else 'west') for i, h in enumerate(HOSTS, start=1))
RATE = '20mbit'
RATE_BYTES = 20e6 / 8
MODULE = 'nixdeploy.fleet.nix_copy_closure'
HOP_LOST = 'the controller lost its connection to the sender'

# The deploy role's four phases, with the copy in cascade mode.
DEPLOY = [{
    'name': 'Deploy one system to the fleet with a closure cascade',
    'hosts': 'all', 'gather_facts': False, 'strategy': 'free',
    'tasks': [
        {'name': 'eval', 'nixdeploy.fleet.nix_eval': {}, 'register': 'ev'},
        {'name': 'build', 'nixdeploy.fleet.nix_build': {'drv_path': '{{ ev.drv_path }}'}},
        {'name': 'copy', MODULE: {'path': '{{ ev.out_path }}', 'copy_mode': 'cascade',
                                  'signing_key': '{{ nix_signing_key }}',
                                  'nix_options': '{{ nix_options }}'}},
        {'name': 'activate', 'nixdeploy.fleet.nix_activate': {
            'path': '{{ ev.out_path }}', 'goal': 'switch'}},
    ]}]


class Fleet:
    def __init__(self, lab, flake, inventory, links, folder):
        self.lab, self.flake, self.inventory = lab, flake, inventory
        self.links, self.folder = links, folder
        self.runs = 0

    def workdir(self, label):
        self.runs += 1
        return str(self.folder / ('%02d-%s' % (self.runs, label)))


@pytest.fixture(scope='module')
def cas(make_lab, tmp_path_factory):
    # "cas" plus this run's pid, so two runs of the suite never share a lab
    lab = make_lab('cas%d' % (os.getpid() % 100000), len(HOSTS))
    folder = tmp_path_factory.mktemp('cas')
    flake, secret = prepare(lab, str(folder / 'flake'),
                            tags=dict((h, [SITES[h]]) for h in HOSTS),
                            shared=dict((h, 'fleet') for h in HOSTS),
                            configurations={'fleet': {'platform': 'nixos'}})
    inventory = write_inventory(str(folder / 'inventory'), lab, flake, secret)
    links = Links(lab)
    links.shape_all(RATE)
    yield Fleet(lab, flake, inventory, links, folder)
    links.clear()


def _copies(run):
    return dict((h, run.result('copy', h)['result']) for h in HOSTS)


def _site_crossings(copies, sites):
    return sorted('%s -> %s' % (r['copied_from'], h) for h, r in copies.items()
                  if r.get('copied_from') not in (None, 'controller')
                  and sites[r['copied_from']] != sites[h])


def test_cascade_deploy_sends_one_closure_over_the_uplink(cas):
    lab, links = cas.lab, cas.links
    cas.flake.set_config('fleet', version='c1', extra_paths=4, extra_bytes=4000000,
                         extra_seed='cas-main')
    started = time.time()
    before = links.traffic()
    run = run_playbook(DEPLOY, cas.inventory, cas.workdir('deploy'))
    moved = links.traffic().since(before)
    assert run.rc == 0, run
    copies = _copies(run)
    path = copies['h1']['path']
    size = copies['h1']['bytes_missing']
    assert size > 4000000
    for host in HOSTS:
        res = copies[host]
        assert res['path'] == path and res['mode'] == 'cascade', (host, res)
        assert res['changed'] is True and res['paths_missing'] == res['closure_paths'], res
        assert res['bytes_sent'] == size == res['bytes_missing'], (host, res)
        assert res['hop_errors'] == [], (host, res)
        assert res['copied_from'] == 'controller' or res['copied_from'] in HOSTS, res
        assert links.verify_closure(host, path) == '', host
        assert lab.active(host) == path, host
    # the deploy summary (the nixdeploy.fleet.summary callback): every host
    # switched, and says which host it got its closure from
    for host in HOSTS:
        giver = copies[host]['copied_from']
        outcome = 'switched' if giver == 'controller' else 'switched (closure from %s)' % giver
        line = [ln for ln in run.stdout.splitlines() if ln.startswith(host + ' ')]
        assert line and line[-1].endswith(outcome), (host, line)

    seeds = [h for h in HOSTS if copies[h]['copied_from'] == 'controller']
    assert len(seeds) == 1, copies
    # everyone else got it from a host that held it: a tree rooted at the seed
    for host in HOSTS:
        assert copies[host]['cascade']['depth'] >= 1
        giver = copies[host]['copied_from']
        if giver != 'controller':
            assert host in copies[giver]['sent_to']
            assert copies[giver]['cascade']['depth'] < copies[host]['cascade']['depth']
    summary = copies['h1']['cascade']
    assert summary['controller_bytes'] == size and summary['hops'] == len(HOSTS)
    # each site entered once: the seed's site from the controller, the other
    # one from a holder there
    assert len(_site_crossings(copies, SITES)) == 1, copies

    # the controller's uplink: one closure, plus ssh and the activations
    assert moved.controller_sent <= 1.3 * size, moved.as_dict()
    # the other seven closures went host to host
    assert moved.host_to_host >= 7 * size * 0.98, moved.as_dict()

    copy_wall = max(c['cascade']['seconds'] for c in copies.values())
    estimate = (math.log(len(HOSTS), 2) + 1) * size / RATE_BYTES
    print('cascade deploy of %d hosts: closure %.2f MB; uplink %.2f MB (%.2fx), host to host '
          '%.2f MB, all links %.2f MB; copy %.1f s vs estimate (log2 N + 1) x S / U = %.1f s '
          '(%.2fx; push estimate N x S / U = %.1f s); depth %d; seed %s; crossing %s'
          % (len(HOSTS), size / 1e6, moved.controller_sent / 1e6, moved.controller_sent / size,
             moved.host_to_host / 1e6, moved.on_all_links / 1e6, copy_wall, estimate,
             copy_wall / estimate, len(HOSTS) * size / RATE_BYTES, summary['rounds'], seeds[0],
             _site_crossings(copies, SITES)))

    # a second deploy of the same system: every host holds it, nothing moves
    before = links.traffic()
    again = run_playbook(DEPLOY, cas.inventory, cas.workdir('again'))
    moved = links.traffic().since(before)
    assert again.rc == 0, again
    for host, res in _copies(again).items():
        assert res['changed'] is False and res['paths_sent'] == 0, (host, res)
        assert res['copied_from'] is None and res['cascade']['controller_bytes'] == 0, res
    # what a no-op sends is the phases' programs over ssh (about 77 KB a host
    # on the current stack), no closure: bounded a host, not by the closure
    assert moved.host_to_host < 200000 and moved.controller_sent < 100000 * len(HOSTS), \
        moved.as_dict()
    assert leftovers(lab, since=started) == []
    assert _ssh_dirs(lab) == []


def test_cascade_faults_every_host_still_gets_the_closure(cas):
    lab, links = cas.lab, cas.links
    path = _build(cas, 'cas-faults')
    impostor = lab.host('h6')['address']
    hostvars = dict((h, {'copy_path': path, 'nix_site': SITES[h]}) for h in HOSTS)
    # h7: on the peer network its address answers with h6's host key
    hostvars['h7']['nix_peer_host'] = impostor
    inventory = lab.ansible_inventory()
    for group in inventory['all']['children'].values():
        for name, host_vars in group['hosts'].items():
            host_vars.update(hostvars[name])
    links.isolate('h8')           # the other hosts cannot reach h8
    links.change_host_key('h5')   # h5's real key changed: the controller refuses it
    started = time.time()
    play = [{'hosts': 'all', 'gather_facts': False, 'strategy': 'free',
             'tasks': [{'name': 'copy', MODULE: {'path': '{{ copy_path }}',
                                                 'copy_mode': 'cascade'}}]}]
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(run=run_playbook(
        play, inventory, cas.workdir('faults'))))
    try:
        runner.start()
        # a sender killed mid-cascade: the first time two hops run at once,
        # one of their senders dies (sshd and all, by pid)
        # (not h6: its address stands in for h7's on the peer network)
        in_flight = wait_for(lambda: [h for h, _pid in links.hops_in_flight()
                                      if h not in ('h6', 'h7', 'h8')][1:], timeout=120)
        assert in_flight, 'never saw two hops at once'
        killed = in_flight[0]
        # its hop's temp folder has a random name (mktemp -d): read it from the hop
        died = _hop_folders(links, killed)
        killed_pids = links.kill_host(killed)
        assert killed_pids
        runner.join(300)
    finally:
        links.unisolate('h8')
    run = outcome['run']
    copies = _copies(run)
    print('faults: killed %s; %s' % (killed, json.dumps(dict(
        (h, [r.get('copied_from'), r.get('hop_errors'), r.get('msg')])
        for h, r in copies.items()), indent=1)))
    assert run.rc != 0  # h5 fails

    # h5 alone fails, naming its changed host key; nothing was sent to it
    assert run.result('copy', 'h5')['status'] == 'failed'
    assert copies['h5']['msg'].startswith('h5: ') and 'host key' in copies['h5']['msg']
    assert copies['h5']['phase'] == 'copy' and copies['h5']['connection_lost'] is False
    assert not lab.store_has('h5', path)
    for host in [h for h in HOSTS if h != 'h5']:
        assert run.result('copy', host)['status'] == 'ok', (host, copies[host])
        assert copies[host]['changed'] is True, (host, copies[host])
        assert links.verify_closure(host, path) == '', host

    # the killed sender held the closure already; its receiver got it elsewhere
    lost = [(h, e) for h, r in copies.items() for e in r['hop_errors']
            if e.startswith('%s -> %s: %s' % (killed, h, HOP_LOST))]
    assert len(lost) == 1, copies
    receiver = lost[0][0]
    assert copies[receiver]['copied_from'] not in (killed, None), copies[receiver]
    assert copies[killed]['copied_from'] is not None

    # h7: a hop to it failed on the host key, named; then the controller pushed
    assert any(' -> h7: host key verification failed' in e
               for e in copies['h7']['hop_errors']), copies['h7']
    assert copies['h7']['copied_from'] == 'controller'
    assert run.result('copy', 'h7')['result'].get('warnings'), copies['h7']

    # h8: unreachable from two peers, then a direct push
    unreachable = [e for e in copies['h8']['hop_errors'] if 'could not reach the receiver' in e]
    assert len(unreachable) == 2 and all('No route to host' in e for e in unreachable), copies
    assert copies['h8']['copied_from'] == 'controller' and copies['h8']['sent_to'] == []
    # nothing left behind but what died with the killed sender: its hop's
    # temp folder (a real host's /tmp goes with its reboot) and, from OpenSSH
    # 10.1, its sshd's socket for the forwarded agent in ~/.ssh/agent/ (any
    # killed session leaves one; ssh-agent clears stale ones)
    killed_ssh = _ssh_dirs(lab, hosts=[killed])
    assert [x for x in leftovers(lab, since=started)
            if x not in died and x not in ['%s: %s' % (killed, d) for d in killed_ssh]] == []
    assert _ssh_dirs(lab, hosts=[h for h in HOSTS if h != killed]) == []
    for folder in died + killed_ssh:
        shutil.rmtree(folder, ignore_errors=True)


def _hop_folders(links, host):
    """The temp folders of the hops ``host`` runs now: copy-hop.sh makes each
    with mktemp -d and names it in its nix's NIX_SSHOPTS
    (UserKnownHostsFile=<folder>/known_hosts)."""
    found = []
    for name, pid in links.hops_in_flight():
        if name != host:
            continue
        try:
            with open('/proc/%d/environ' % pid, 'rb') as handle:
                environ = handle.read().split(b'\0')
        except OSError:
            continue
        for item in environ:
            match = re.match(rb'NIX_SSHOPTS=.*UserKnownHostsFile=(\S+)/known_hosts', item)
            if match:
                found.append(match.group(1).decode())
    return found


def _ssh_dirs(lab, hosts=None):
    """Every ~/.ssh on the hosts (the lab makes none: the controller's keys
    and known_hosts live on the controller). On OpenSSH 10.1+ sshd makes
    ~/.ssh/agent/ for a forwarded agent; the hop removes it again."""
    found = []
    for name in hosts or sorted(lab.hosts):
        for home in ('root', 'home/deploy', 'home/app'):
            path = os.path.join(lab.host(name)['dir'], home, '.ssh')
            if os.path.lexists(path):
                found.append(path)
    return found


def _build(cas, seed):
    """A new version of the shared system, built on the controller: its path."""
    cas.flake.set_config('fleet', version=seed, extra_paths=4, extra_bytes=4000000,
                         extra_seed=seed)
    out = subprocess.run(['nix', '--extra-experimental-features', 'nix-command flakes',
                          '--option', 'substituters', '', 'build', '--no-link', '--json',
                          '%s#%s' % (cas.flake.ref, cas.flake.attr('h1'))],
                         check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    return json.loads(out)[0]['outputs']['out']
