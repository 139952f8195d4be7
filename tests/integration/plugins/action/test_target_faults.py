"""The plugin side of the target faults (issue 30), each in a small fleet with
a healthy host beside the faulty one: the copy's GC root (a push-only copy,
then a garbage collection: the system survives; the activation releases the
root; the next copy replaces it), the free-space refusal before sending, and
the messages of a stopped daemon, a read-only store, a sudo that asks and a
full disk at the activation. The full fault suite is tests/faults/.
"""

import os

import pytest

from tests.integration.plugins.action.copy_fixtures import (
    Closures, copy_play, inventory, run)

pytestmark = [pytest.mark.lab]

HOSTS = [
    {'name': 'f1', 'persona': 'nixos', 'store_size': '48M'},  # root; a small /nix
    {'name': 'n2', 'persona': 'nixos'},                       # root, healthy
    {'name': 'd3', 'persona': 'darwin'},                      # deploy + sudo
    {'name': 'm4', 'persona': 'home-manager'},                # app, a daemon's user
    {'name': 'o5', 'persona': 'nix-on-droid'},                # app, a single-user store
]
ACTIVATE = 'nixdeploy.fleet.nix_activate'


@pytest.fixture(scope='module')
def pfx(make_lab):
    lab = make_lab('pfx%d' % (os.getpid() % 100000), HOSTS)
    # home-manager's app may copy unsigned paths (trust is not what is tested here)
    lab.add_nix_conf('m4', 'trusted-users = root app')
    return lab


@pytest.fixture(scope='module')
def pfx_flake(pfx, tmp_path_factory):
    return Closures(pfx, str(tmp_path_factory.mktemp('pfx-flake')))


def root_link(lab, host, user=None):
    """Where the copy's GC root of ``host`` is on it, for its ssh user."""
    user = user or lab.hosts[host]['ssh_user']
    base = '/nix/var/nixdeploy' if user == 'root' else '/home/%s/.local/state/nixdeploy' % user
    return '%s/gcroots/%s' % (base, host)


def readlink(lab, host, path):
    proc = lab.run_in(host, ['readlink', path], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def activate_play(hosts='all'):
    return [{'hosts': hosts, 'gather_facts': False,
             'tasks': [{'name': 'activate', ACTIVATE: {'path': '{{ copy_path }}'}}]}]


def copied(res, hosts, task='copy'):
    """Whether ``task`` of the run copied without failing on every host of
    ``hosts`` (a copy play of a run that goes on to other plays)."""
    return dict((h, res.result(task, h)['status']) for h in hosts) == dict.fromkeys(hosts, 'ok')


def test_copied_system_survives_gc_until_activation_releases_it(pfx, pfx_flake, tmp_path):
    lab = pfx
    hosts = ['n2', 'd3', 'm4', 'o5']
    paths = {h: pfx_flake.build(h, version='gc1', extra_paths=2, extra_bytes=200000,
                                extra_seed='gc1-' + h) for h in hosts}
    inv = inventory(lab, hosts, **{h: {'copy_path': paths[h]} for h in hosts})
    pushed = run(lab, tmp_path / 'push', copy_play({'path': '{{ copy_path }}'}), inv)
    assert pushed.rc == 0, pushed
    for host in hosts:
        res = pushed.result('copy', host)['result']
        assert res['gc_root'] == root_link(lab, host), res
        assert readlink(lab, host, res['gc_root']) == paths[host]
    # a push-only run, then the host's own garbage collection: nothing of it goes
    for host in hosts:
        deleted = lab.gc(host)
        assert not set(deleted) & set(Closures.closure(paths[host])), (host, deleted)
        assert pfx_flake.missing_on(host, paths[host]) == [], host

    done = run(lab, tmp_path / 'activate', activate_play(), inv)
    assert done.rc == 0, done
    for host in hosts:
        # the profile holds the system: the root points at nothing, still registered
        if lab.hosts[host]['become']:
            # deploy's root, released by root's activation: removed
            assert readlink(lab, host, root_link(lab, host)) is None
        else:
            assert readlink(lab, host, root_link(lab, host)) == '/dev/null'
        assert lab.active(host) == paths[host]

    # the next copy replaces the root (one per host), the old system stays in the profile
    new = {h: pfx_flake.build(h, version='gc2', extra_paths=1, extra_bytes=100000,
                              extra_seed='gc2-' + h) for h in hosts}
    inv = inventory(lab, hosts, **{h: {'copy_path': new[h]} for h in hosts})
    again = run(lab, tmp_path / 'push2', copy_play({'path': '{{ copy_path }}'}), inv)
    assert again.rc == 0, again
    for host in hosts:
        assert readlink(lab, host, root_link(lab, host)) == new[host]
        lab.gc(host)
        assert pfx_flake.missing_on(host, new[host]) == [], host
        assert pfx_flake.missing_on(host, paths[host]) == [], host


def test_no_room_fails_before_sending_beside_a_healthy_host(pfx, pfx_flake, tmp_path):
    lab = pfx
    hosts = ['f1', 'n2']
    # 64 MB of padding on a 48 MB /nix
    paths = {h: pfx_flake.build(h, version='big', extra_paths=4, extra_bytes=64000000,
                                extra_seed='big') for h in hosts}
    inv = inventory(lab, hosts, **{h: {'copy_path': paths[h]} for h in hosts})
    res = run(lab, tmp_path / 'big', copy_play({'path': '{{ copy_path }}'}), inv)
    assert res.rc != 0
    assert res.result('copy', 'f1')['status'] == 'failed'
    failed = res.result('copy', 'f1')['result']
    print('f1, no room: %s' % failed['msg'])
    assert failed['phase'] == 'copy', failed
    assert failed['msg'].startswith('f1: no space left on /nix on f1: '), failed['msg']
    assert ' free, the closure needs ' in failed['msg'], failed['msg']
    # nothing was sent
    assert len(pfx_flake.missing_on('f1', paths['f1'])) == len(Closures.closure(paths['f1']))
    assert res.result('copy', 'n2')['status'] != 'failed'
    assert res.result('copy', 'n2')['result']['changed']
    # the check is off with a margin of 0 (then Nix itself runs out of room)
    off = run(lab, tmp_path / 'off', copy_play({'path': '{{ copy_path }}',
                                                'free_space_margin': 0}),
              inventory(lab, ['f1'], f1={'copy_path': paths['f1']}))
    assert off.rc != 0
    msg = off.result('copy', 'f1')['result']['msg']
    print('f1, check off: %s' % msg)
    assert 'no space left on /nix on f1 during the copy' in msg, msg
    lab.gc('f1')


def test_full_disk_at_activation_fails_clean(pfx, pfx_flake, tmp_path):
    lab = pfx
    hosts = ['f1', 'n2']
    knobs = {'extra_paths': 0, 'extra_bytes': 0}
    first = {h: pfx_flake.build(h, version='fa1', **knobs) for h in hosts}
    second = {h: pfx_flake.build(h, version='fa2', **knobs) for h in hosts}
    # one run: the first system copied and activated, the second copied
    inv = inventory(lab, hosts, **{h: {'copy_path': first[h], 'next_path': second[h]}
                                   for h in hosts})
    ready = run(lab, tmp_path / 'c1', copy_play({'path': '{{ copy_path }}'}) + activate_play()
                + copy_play({'path': '{{ next_path }}'}, name='copy next'), inv)
    assert ready.rc == 0, ready
    assert copied(ready, hosts) and copied(ready, hosts, 'copy next'), ready
    assert dict((h, lab.active(h)) for h in hosts) == first
    inv = inventory(lab, hosts, **{h: {'copy_path': second[h]} for h in hosts})
    profile = readlink(lab, 'f1', '/nix/var/nix/profiles/system')
    try:
        lab.fill_store('f1', 0)
        res = run(lab, tmp_path / 'a2', activate_play(), inv)
    finally:
        lab.unfill_store('f1')
    assert res.rc != 0
    assert res.result('activate', 'f1')['status'] == 'failed'
    failed = res.result('activate', 'f1')['result']
    print('f1, full at the activation: %s' % failed['msg'])
    assert not failed.get('rolled_back'), failed
    assert failed['msg'].startswith('f1: no space left on /nix on f1 during the activation'), \
        failed['msg']
    # previous generation active, profile unchanged, no lock
    assert lab.active('f1') == first['f1']
    assert readlink(lab, 'f1', '/nix/var/nix/profiles/system') == profile
    assert lab.run_in('f1', ['test', '-e', '/nix/var/nixdeploy/_nix_var_nix_profiles_system/lock'],
                      check=False).returncode != 0
    assert lab.active('n2') == second['n2']
    # with room again the same run converges
    again = run(lab, tmp_path / 'a3', activate_play(), inv)
    assert again.rc == 0, again
    assert lab.active('f1') == second['f1']

    # the new system's activation fills the disk and fails: the run gives its
    # reserve back, rolls back and says why
    third = {'f1': pfx_flake.build('f1', version='fa3', on_activate=lab.fill_store_sh(256 << 10)
                                   + '; echo "cannot write: No space left on device" >&2; false',
                                   **knobs)}
    inv = inventory(lab, ['f1'], f1={'copy_path': third['f1']})
    # the copy leaves the profile as it is: read before the run that copies
    # and activates
    profile = readlink(lab, 'f1', '/nix/var/nix/profiles/system')
    try:
        res = run(lab, tmp_path / 'a4', copy_play({'path': '{{ copy_path }}'}) + activate_play(),
                  inv)
    finally:
        lab.unfill_store('f1')
        pfx_flake.build('f1', version='fa3', on_activate='', **knobs)
    assert copied(res, ['f1']), res
    result = res.result('activate', 'f1')['result']
    print('f1, full in the middle: %s' % result['msg'])
    assert res.result('activate', 'f1')['status'] == 'failed' and result['rolled_back'], result
    assert result['msg'].startswith('f1: no space left on /nix on f1 during the activation ('), \
        result['msg']
    assert lab.active('f1') == second['f1']
    assert readlink(lab, 'f1', '/nix/var/nix/profiles/system') == profile
    assert lab.run_in('f1', ['test', '-e', '/nix/var/nixdeploy/_nix_var_nix_profiles_system/lock'],
                      check=False).returncode != 0


def test_daemon_read_only_and_sudo_messages(pfx, pfx_flake, tmp_path):
    lab = pfx
    hosts = ['n2', 'd3', 'm4']
    paths = {h: pfx_flake.build(h, version='msg', extra_paths=1, extra_bytes=50000,
                                extra_seed='msg-' + h) for h in hosts}
    inv = inventory(lab, hosts, **{h: {'copy_path': paths[h]} for h in hosts})
    lab.stop_daemon('m4')
    lab.set_store_read_only('n2', True)
    lab.set_sudo_password('d3', True)
    # one run: the copy on the three (its failures ignored, so that d3 goes
    # on), then d3's activation, whose sudo asks too
    copy = copy_play({'path': '{{ copy_path }}'})
    copy[0]['tasks'][0]['ignore_errors'] = True
    try:
        res = act = run(lab, tmp_path / 'faults', copy + activate_play('d3'), inv, timeout=300)
    finally:
        lab.start_daemon('m4')
        lab.set_store_read_only('n2', False)
        lab.set_sudo_password('d3', False)
    msgs = dict((h, res.result('copy', h)['result'].get('msg', '')) for h in hosts)
    print('copy faults: %s' % msgs)
    assert 'the nix-daemon on m4 is not running' in msgs['m4'], msgs
    assert 'the Nix store on n2 is read-only' in msgs['n2'], msgs
    assert msgs['d3'].startswith('d3: sudo on the target asks for a password'), msgs
    amsg = act.result('activate', 'd3')['result'].get('msg', '')
    print('d3, sudo asks: %s' % amsg)
    assert amsg.startswith('d3: ') and 'password' in amsg, amsg
    # the fault gone, the same copy goes through
    fixed = run(lab, tmp_path / 'fixed', copy_play({'path': '{{ copy_path }}'}), inv)
    assert fixed.rc == 0, fixed
    # one run of two activations: m4's daemon stops between the copy and the
    # activation (a user's nix-env says so), d3's become_user does not exist
    before = readlink(lab, 'm4', '/home/app/.local/state/nix/profiles/home-manager')
    lab.stop_daemon('m4')
    try:
        stopped = nosuch = run(lab, tmp_path / 'stopped', activate_play(), inventory(
            lab, ['m4', 'd3'], m4={'copy_path': paths['m4']},
            d3={'copy_path': paths['d3'], 'ansible_become_user': 'nosuch'}), timeout=120)
    finally:
        lab.start_daemon('m4')
    amsg = stopped.result('activate', 'm4')['result'].get('msg', '')
    print('m4, daemon stopped at the activation: %s' % amsg)
    assert amsg.startswith('m4: the nix-daemon on m4 is not running during the activation'), amsg
    assert readlink(lab, 'm4', '/home/app/.local/state/nix/profiles/home-manager') == before
    # a become_user that does not exist: said, not a hang
    amsg = nosuch.result('activate', 'd3')['result'].get('msg', '')
    print('d3, no such become_user: %s' % amsg)
    assert amsg.startswith('d3: the become_user nosuch does not exist on the target'), amsg
