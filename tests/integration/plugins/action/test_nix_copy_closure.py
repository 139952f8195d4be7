"""nixdeploy.fleet.nix_copy_closure against the lab: real nix, real ssh.

Lab ``cpy`` (see copy_fixtures.cpy_lab): h1/h5 nixos as root, h2/h6 darwin as
deploy with become and no nix on PATH, h3/h7 nix-on-droid as app owning a
single-user store with no nix on PATH, h4/h8 home-manager as a non-trusted app.
Every test builds closures of its own (its own extra_seed) so tests do not
depend on each other's leftovers.
"""

import subprocess
import threading
import time

import pytest

from tests.integration.plugins.action import copy_fixtures
from tests.integration.plugins.action.activate_fixtures import copy_to
from tests.integration.plugins.action.copy_fixtures import (
    Closures, HttpCache, copy_play, inventory, limit_rate, run, traffic, traffic_since)
from tests.lab.links import Links, leftovers

# the module-scoped fixtures of copy_fixtures, visible to pytest here
cpy_lab = copy_fixtures.cpy_lab
cpy_keys = copy_fixtures.cpy_keys
cpy_flake = copy_fixtures.cpy_flake

pytestmark = pytest.mark.lab

# One ssh session's handshake, the probe script and the validity answer;
# what "nothing but the validity query crossed the link" may cost.
QUERY_BYTES = 40000
HOSTS = ['h%d' % i for i in range(1, 9)]


def covered(intervals):
    """Seconds during which at least one of ``intervals`` ([start, end]) ran."""
    total, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def test_parallel_copy_to_8_hosts_then_nothing_to_send(cpy_lab, cpy_flake, cpy_keys, tmp_path):
    lab = cpy_lab
    paths = {h: cpy_flake.build(h, extra_paths=3, extra_bytes=600000, extra_seed='par-' + h)
             for h in HOSTS}
    # home-manager hosts: a non-trusted user and no become: they get signed paths.
    for host in ('h4', 'h8'):
        lab.add_nix_conf(host, 'extra-trusted-public-keys = %s' % cpy_keys['sign']['public_key'])
    per_host = {h: {'copy_path': paths[h]} for h in HOSTS}
    for host in ('h4', 'h8'):
        per_host[host]['copy_key'] = cpy_keys['sign']['secret']
    inv = inventory(lab, **per_host)
    play = copy_play({'path': '{{ copy_path }}', 'signing_key': '{{ copy_key | default(omit) }}'})

    logins = {h: lab.accepted_connections(h) for h in HOSTS}
    # fresh ssh masters (ControlPersist), so every login of this run counts;
    # the ssh_args of the repository's ansible.cfg (no -C: compress is false)
    first = run(lab, tmp_path / 'first', play, inv, args=['--forks', '8'],
                env={'ANSIBLE_SSH_CONTROL_PATH_DIR': str(tmp_path / 'cp'),
                     'ANSIBLE_SSH_ARGS': '-o ControlMaster=auto -o ControlPersist=120s'})
    assert first.rc == 0, first
    # nix copy rode Ansible's ssh master: one login per host, not two
    assert {h: lab.accepted_connections(h) - logins[h] for h in HOSTS} == dict.fromkeys(HOSTS, 1)
    expected_trust = {'nixos': 'trusted', 'darwin': 'sudo', 'nix-on-droid': 'trusted',
                      'home-manager': 'signed'}
    seconds, intervals = [], []
    for host in HOSTS:
        rec = first.result('copy', host)
        res = rec['result']
        persona = lab.hosts[host]['persona']
        closure = Closures.closure(paths[host])
        assert res['changed'] is True, (host, res)
        assert res['trust'] == expected_trust[persona], (host, res)
        assert res['paths_sent'] == len(closure) and res['bytes_sent'] == sum(closure.values())
        assert res['mode'] == 'push' and res['path'] == paths[host]
        assert res['store_uri'].startswith('ssh-ng://%s@%s' % (lab.hosts[host]['ssh_user'],
                                                               lab.hosts[host]['address']))
        if not lab.hosts[host]['nix_on_path']:
            assert res['remote_nix_dir'] == lab.hosts[host]['nix_dir']
        assert cpy_flake.missing_on(host, paths[host]) == [], host
        seconds.append(res['seconds'])
        # the host's copy: its own seconds, ending when the run's record got
        # its result, within its task (from when the strategy handed the
        # task to a worker)
        copied = (rec['ended'] - res['seconds'], rec['ended'])
        assert rec['started'] is not None and rec['started'] <= copied[0] + 0.01, (host, rec)
        intervals.append(copied)
    # the copies overlapped: the time during which at least one host was
    # being copied to is less than half of what the copies one after another
    # would take. Measured on the copies themselves, not on the play's wall
    # time (Ansible's start and the inventory, which a busy machine slows):
    # copies one at a time would not overlap at all.
    busy = covered(intervals)
    assert busy < sum(seconds) / 2, (busy, seconds, intervals)
    print('parallel copy: copying %.1fs, per host %s' % (busy, seconds))

    before = traffic(lab, HOSTS)
    second = run(lab, tmp_path / 'second', play, inv, args=['--forks', '8'])
    assert second.rc == 0, second
    crossed = traffic_since(lab, before)
    for host in HOSTS:
        res = second.result('copy', host)['result']
        assert res['changed'] is False and res['paths_sent'] == 0 and res['bytes_sent'] == 0, res
        assert res['paths_missing'] == 0
        assert crossed[host] < QUERY_BYTES, (host, crossed[host])
    print('second copy: link bytes per host %s' % crossed)


def test_copy_rides_the_master_only_when_it_compresses_as_asked(cpy_lab, cpy_flake, tmp_path):
    """Ansible's default ssh_args have -C: its master compresses. A copy with
    compress: false must not ride it (zlib on every byte); compress: true may.
    One run: h5 copies with compress false beside h1 with compress true."""
    lab, compress = cpy_lab, {'h5': False, 'h1': True}
    paths = dict((host, cpy_flake.build(host, extra_paths=1, extra_bytes=1000,
                                        extra_seed='master-%s-%s' % (on, tmp_path.name)))
                 for host, on in compress.items())
    logins = dict((host, lab.accepted_connections(host)) for host in compress)
    res = run(lab, tmp_path / 'run', copy_play({'path': '{{ copy_path }}',
                                                'compress': '{{ copy_compress }}'}),
              inventory(lab, list(compress), **dict(
                  (h, {'copy_path': paths[h], 'copy_compress': on}) for h, on in compress.items())),
              env={'ANSIBLE_SSH_CONTROL_PATH_DIR': str(tmp_path / 'cp'),
                   'ANSIBLE_SSH_ARGS': '-C -o ControlMaster=auto -o ControlPersist=60s'})
    assert res.rc == 0, res
    # scenario: test_copy_rides_the_master_only_when_it_compresses_as_asked[False] (h5)
    # scenario: test_copy_rides_the_master_only_when_it_compresses_as_asked[True] (h1)
    for host, on in compress.items():
        assert res.result('copy', host)['result']['paths_sent'] >= 1, host
        # the probe's master, and nix copy's own login unless it rode the master
        assert lab.accepted_connections(host) - logins[host] == (1 if on else 2), host


def test_partial_closure_receives_only_the_rest(cpy_lab, cpy_flake, tmp_path):
    lab, host = cpy_lab, 'h5'
    path = cpy_flake.build(host, extra_paths=4, extra_bytes=2000000, extra_seed='part')
    closure = Closures.closure(path)
    extras = sorted(p for p in closure if '-lab-extra-part-' in p)
    # pre-copy one 500 kB path (and what it needs) straight with nix
    copy_to(lab, host, [extras[0]])
    assert lab.store_has(host, extras[0]) and not lab.store_has(host, path)
    missing = cpy_flake.missing_on(host, path)
    assert extras[0] not in missing

    # a key in a folder with a space (as under macOS "Application Support"):
    # NIX_SSHOPTS cannot carry it, the store URI does
    keydir = tmp_path / 'Application Support'
    keydir.mkdir()
    key = keydir / 'deploy key'
    key.write_bytes(open(lab.key, 'rb').read())
    key.chmod(0o600)
    before = traffic(lab, [host])
    res = run(lab, tmp_path / 'copy', copy_play({'path': path, 'compress': True}),
              inventory(lab, [host], h5={'ansible_ssh_private_key_file': str(key)}))
    assert res.rc == 0, res
    out = res.result('copy', host)['result']
    crossed = traffic_since(lab, before)[host]
    assert out['paths_sent'] == len(missing) == out['paths_missing']
    assert out['bytes_sent'] == sum(closure[p] for p in missing)
    assert 'compress=true' in out['store_uri'] and 'Application%20Support' in out['store_uri']
    # the link carried the missing archives (random padding: incompressible),
    # not the pre-copied 500 kB one
    padding = sum(closure[p] for p in missing if '-lab-extra-' in p)
    assert padding <= crossed < out['bytes_sent'] + 300000, (crossed, out)
    assert cpy_flake.missing_on(host, path) == []
    print('partial: sent %d paths, %d NAR bytes, link bytes %d' % (
        out['paths_sent'], out['bytes_sent'], crossed))


def test_cascade_through_every_persona(cpy_lab, cpy_flake, cpy_keys, tmp_path):
    """One closure to all 8 hosts in cascade mode: the controller sends it
    once, the hosts carry it on, whatever their persona: nixos (root), darwin
    (deploy, nix off PATH), nix-on-droid (app owning a single-user store) and
    home-manager (app). Darwin and home-manager users are not trusted: they
    check the controller's signature, which every hop carries along (with a
    signing key the plan prefers it to sudo, as a push does). The sites are
    the persona groups (the default: a host's first group), so each persona's
    second host is served by its first."""
    lab = cpy_lab
    path = cpy_flake.build('h1', extra_paths=3, extra_bytes=1500000, extra_seed='cascade')
    closure = Closures.closure(path)
    for host in ('h2', 'h4', 'h6', 'h8'):
        lab.add_nix_conf(host, 'extra-trusted-public-keys = %s' % cpy_keys['sign']['public_key'])
    links = Links(lab)
    started = time.time()
    before = links.traffic()
    res = run(lab, tmp_path / 'cascade', copy_play(
        {'path': '{{ copy_path }}', 'copy_mode': 'cascade', 'signing_key': cpy_keys['sign']['secret']}),
        inventory(lab, **dict((h, {'copy_path': path}) for h in HOSTS)), args=['--forks', '8'])
    moved = links.traffic().since(before)
    assert res.rc == 0, res
    expected_trust = {'nixos': 'trusted', 'darwin': 'signed', 'nix-on-droid': 'trusted',
                      'home-manager': 'signed'}
    copies = dict((h, res.result('copy', h)['result']) for h in HOSTS)
    for host, out in copies.items():
        assert out['mode'] == 'cascade' and out['changed'] is True, (host, out)
        assert out['trust'] == expected_trust[lab.hosts[host]['persona']], (host, out)
        assert out['hop_errors'] == [] and out['copied_from'] in HOSTS + ['controller'], out
        assert cpy_flake.missing_on(host, path) == [], host
        assert cpy_flake.verify_on(host, sorted(closure)) == [], host
    assert [h for h, o in copies.items() if o['copied_from'] == 'controller'] == ['h2'], copies
    # earlier tests may have left parts of the closure on some hosts: only
    # the seed's missing part crossed the controller's uplink
    seed_missing = copies['h2']['bytes_missing']
    senders = set(o['copied_from'] for o in copies.values()) - {'controller'}
    assert set(lab.hosts[h]['persona'] for h in senders) == set(expected_trust), copies
    for first, second in (('h1', 'h5'), ('h3', 'h7'), ('h4', 'h8')):
        assert copies[second]['copied_from'] == first, copies
    summary = copies['h1']['cascade']
    assert summary['controller_bytes'] == seed_missing and summary['hops'] == 8
    assert moved.controller_sent < 1.3 * seed_missing + QUERY_BYTES * len(HOSTS), moved.as_dict()
    assert leftovers(lab, since=started) == []
    print('cascade to every persona: %s' % dict((h, o['copied_from']) for h, o in copies.items()))


# the copy in check and diff mode: test_deploy_role's and test_hostile_fleet's --check --diff runs
@pytest.mark.here_only
def test_check_mode_copies_nothing_and_reports(cpy_lab, cpy_flake, tmp_path):
    lab, hosts = cpy_lab, ['h1', 'h3', 'h4']
    paths = {h: cpy_flake.build(h, extra_paths=2, extra_bytes=400000, extra_seed='chk-' + h)
             for h in hosts}
    inv = inventory(lab, hosts, **{h: {'copy_path': paths[h]} for h in hosts})
    before = traffic(lab, hosts)
    res = run(lab, tmp_path / 'check', copy_play({'path': '{{ copy_path }}'}), inv,
              args=['--check', '--diff'])
    assert res.rc == 0, res
    crossed = traffic_since(lab, before)
    for host in hosts:
        out = res.result('copy', host)['result']
        missing = cpy_flake.missing_on(host, paths[host])
        closure = Closures.closure(paths[host])
        assert out['changed'] is True
        assert out['paths_sent'] == len(missing) and out['bytes_sent'] == sum(
            closure[p] for p in missing)
        assert paths[host] in out['diff']['after']
        assert crossed[host] < QUERY_BYTES, (host, crossed[host])
        # nothing was copied
        assert cpy_flake.missing_on(host, paths[host]) == missing
    # h4's app user is not trusted and no key was given: check mode warns
    assert res.result('copy', 'h4')['result']['trust'] == 'unsigned'
    assert 'h4: app is not a trusted user there' in res.stdout + res.stderr


def test_cache_and_substitute_modes_send_no_closure_bytes(cpy_lab, cpy_flake, cpy_keys, tmp_path):
    """h2 (darwin, deploy through the daemon) and h3 (nix-on-droid, app) fetch
    from the cache in cache mode; h1 (nixos) substitutes from it while the
    controller pushes (substitute mode)."""
    lab, hosts = cpy_lab, ['h1', 'h2', 'h3']
    paths = {h: cpy_flake.build(h, extra_paths=3, extra_bytes=900000, extra_seed='cache-' + h)
             for h in hosts}
    cache = HttpCache(lab, str(tmp_path), cpy_keys['cache']['secret'])
    for path in paths.values():
        cache.add(path)
    cache.start()
    try:
        for host in hosts:
            lab.add_nix_conf(host, 'extra-trusted-public-keys = %s'
                             % cpy_keys['cache']['public_key'])
        lab.add_nix_conf('h1', 'substituters = %s' % cache.url)
        per_host = {h: {'copy_path': paths[h], 'copy_mode': 'cache'} for h in hosts}
        per_host['h1']['copy_mode'] = 'substitute'
        before = traffic(lab, hosts)
        res = run(lab, tmp_path / 'cache', copy_play(
            {'path': '{{ copy_path }}', 'copy_mode': '{{ copy_mode }}', 'caches': [cache.url]}),
            inventory(lab, hosts, **per_host))
        crossed = traffic_since(lab, before)
        served = cache.served_bytes()
    finally:
        cache.stop()
    assert res.rc == 0, res
    nar_total = 0
    for host in hosts:
        out = res.result('copy', host)['result']
        closure = Closures.closure(paths[host])
        assert cpy_flake.missing_on(host, paths[host]) == [], host
        assert out['changed'] is True and out['paths_missing'] > 0
        # the target fetched all of it: the controller sent nothing
        assert out['paths_sent'] == 0 and out['bytes_sent'] == 0, (host, out)
        if host == 'h1':
            assert out['mode'] == 'substitute'
        else:
            assert out['mode'] == 'cache' and out['paths_fetched'] == out['paths_missing']
        nar_total += sum(size for p, size in closure.items() if '-lab-extra-cache-' in p)
    # The archives came from the cache (the random padding does not compress) ...
    assert served >= nar_total * 0.95, (served, nar_total)
    # ... and besides them (and their TCP/IP framing, up to ~6% with 1500-byte
    # frames and the ACKs back) only the probe's and ssh's small talk crossed
    # the links. A push on top would have doubled the bytes.
    framing = served * 0.06
    assert sum(crossed.values()) - served < QUERY_BYTES * len(hosts) + framing, (crossed, served)
    print('cache: served %d bytes, link bytes %s' % (served, crossed))


# its refusal: test_new_user's test_untrusted_user_...; signed copies: test_parallel_copy_... (h4)
@pytest.mark.here_only
def test_signing_for_non_trusted_user(cpy_lab, cpy_flake, cpy_keys, tmp_path):
    """Two darwin hosts without become: deploy is not trusted there. h6's
    copy is unsigned and refused; beside it h2's, signed with a key h2
    trusts, is accepted."""
    lab = cpy_lab
    path = cpy_flake.build('h6', extra_paths=2, extra_bytes=200000, extra_seed='sig')
    key = tmp_path / 'other.sec'
    subprocess.run(['nix-store', '--generate-binary-cache-key', 'cpy-other-1', str(key),
                    str(tmp_path / 'other.pub')], check=True)
    lab.add_nix_conf('h2', 'extra-trusted-public-keys = %s' % (tmp_path / 'other.pub').read_text())
    inv = inventory(lab, ['h2', 'h6'], h2={'ansible_become': False, 'copy_key': str(key)},
                    h6={'ansible_become': False})
    res = run(lab, tmp_path / 'run', copy_play(
        {'path': path, 'signing_key': '{{ copy_key | default(omit) }}'}), inv)
    assert res.rc != 0
    # h6: unsigned, refused
    out = res.result('copy', 'h6')
    assert out['status'] == 'failed'
    msg = out['result']['msg']
    assert msg.startswith('h6: ') and 'refuses unsigned paths' in msg, msg
    # the target's Nix says why in its own words (2.8: "lacks a valid signature",
    # 2.12+: "lacks a signature by a trusted key")
    assert 'signing_key' in msg and 'trusted-users' in msg
    assert 'lacks a valid signature' in msg or 'lacks a signature by a trusted key' in msg
    assert not lab.store_has('h6', path)
    # h2: signed with a key it trusts, accepted
    out = res.result('copy', 'h2')
    assert out['status'] == 'ok', out
    assert out['result']['trust'] == 'signed' and out['result']['changed'] is True
    assert cpy_flake.missing_on('h2', path) == []


# its probe and push on nix-on-droid: test_parallel_copy_...; a wrong folder is the probe's sh
@pytest.mark.here_only
def test_wrong_remote_nix_dir_fails_clearly(cpy_lab, cpy_flake, tmp_path):
    """One run on two nix-on-droid hosts: h7 is given a folder without nix
    and fails naming it; h3, given its own, copies."""
    lab = cpy_lab
    path = cpy_flake.build('h7', extra_paths=1, extra_bytes=1000, extra_seed='dir')
    inv = inventory(lab, ['h3', 'h7'], h7={'copy_dir': '/opt/nix/bin'},
                    h3={'copy_dir': lab.hosts['h3']['nix_dir']})
    res = run(lab, tmp_path / 'run', copy_play(
        {'path': path, 'remote_nix_dir': '{{ copy_dir }}'}), inv)
    msg = res.result('copy', 'h7')['result']['msg']
    assert res.rc != 0 and msg.startswith('h7: ') and '/opt/nix/bin' in msg, msg
    good = res.result('copy', 'h3')
    assert good['status'] == 'ok', good
    assert good['result']['remote_nix_dir'] == lab.hosts['h3']['nix_dir']


# a changed host key refused at the copy: test_cascade's faults (h5) and test_hostile_fleet's h5
@pytest.mark.here_only
def test_changed_host_key_fails_closed(cpy_lab, cpy_flake, tmp_path):
    """The host key changes after Ansible's connection was opened. Riding
    that open connection (ControlPersist) is safe: it was checked when it was
    made, and Nix's copy rides it too. Every NEW login is checked: once the
    master is gone, the copy refuses the host and copies nothing."""
    lab, host = cpy_lab, 'h1'
    path = cpy_flake.build(host, extra_paths=1, extra_bytes=1000, extra_seed='hostkey')
    known = tmp_path / 'known_hosts'
    known.write_text(open(lab.known_hosts).read())
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(tmp_path / 'impostor')],
                   check=True)
    impostor = ' '.join((tmp_path / 'impostor.pub').read_text().split()[:2])
    forged = ''.join('%s %s\n' % (lab.hosts[host]['address'], impostor)
                     if line.startswith(lab.hosts[host]['address'] + ' ') else line
                     for line in known.read_text().splitlines(True))
    inv = inventory(lab, [host], h1={'ansible_ssh_common_args': (
        '-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes' % known)})
    play = copy_play({'path': path}, pre_tasks=[
        {'name': 'connect', 'ansible.builtin.raw': 'true'},
        {'name': 'the host key changes', 'delegate_to': 'localhost',
         'ansible.builtin.copy': {'dest': str(known), 'content': forged}},
        {'name': 'the master goes', 'ansible.builtin.meta': 'reset_connection'}])
    res = run(lab, tmp_path / 'run', play, inv,
              env={'ANSIBLE_SSH_CONTROL_PATH_DIR': str(tmp_path / 'cp')})
    assert res.rc != 0
    out = res.result('copy', host)
    assert out['status'] in ('failed', 'unreachable'), out
    text = out['result'].get('msg', '') + out['result'].get('stderr', '')
    assert 'Host key verification failed' in text, text
    assert text.startswith('h1: the host key changed'), text
    assert out['result']['connection_lost'] is False
    assert not lab.store_has(host, path)


@pytest.mark.faults
def test_link_cut_mid_copy_then_retry(cpy_lab, cpy_flake, tmp_path):
    lab, host = cpy_lab, 'h3'
    path = cpy_flake.build(host, extra_paths=4, extra_bytes=8000000, extra_seed='cut')
    closure = Closures.closure(path)
    # a short ServerAlive (the inventory's ssh args win over the defaults) so
    # the dead link is noticed in seconds
    inv = inventory(lab, [host], h3={'ansible_ssh_common_args': (
        '-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes '
        '-o ServerAliveInterval=1 -o ServerAliveCountMax=2' % lab.known_hosts)})
    limit_rate(lab, host, '4mbit')
    box = {}
    worker = threading.Thread(target=lambda: box.update(
        run=run(lab, tmp_path / 'cut', copy_play({'path': path}), inv)))
    try:
        start = lab.link_bytes(host)[0]
        worker.start()
        # bounds the wait only (it ends once 1.5 MB crossed): generous, for
        # a busy machine
        deadline = time.monotonic() + 300
        while (lab.link_bytes(host)[0] - start < 1500000 and time.monotonic() < deadline
               and worker.is_alive()):
            time.sleep(0.1)
        lab.cut(host)
        worker.join(300)
    finally:
        lab.restore(host)
        limit_rate(lab, host, None)
    cut = box['run']
    assert cut.rc != 0
    msg = cut.result('copy', host)['result']['msg']
    assert msg.startswith('h3: copying %s' % path) and 'failed' in msg, msg
    assert not lab.store_has(host, path)
    print('cut copy said: %s' % msg[-300:])

    retry = run(lab, tmp_path / 'retry', copy_play({'path': path}), inv)
    assert retry.rc == 0, retry
    out = retry.result('copy', host)['result']
    assert 0 < out['paths_sent'] <= len(closure)
    assert cpy_flake.missing_on(host, path) == []
    assert cpy_flake.verify_on(host, sorted(closure)) == []
