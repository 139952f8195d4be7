"""Health checks on the `hck` lab fleet, run as users run them: the deploy
playbook with ``nix_health_checks`` in group and host vars. Each run puts the
hard cases beside healthy hosts and asserts on every host.

Four NixOS hosts serve their system's own busybox httpd (the fixture's
``http_status`` knob) and run their system's service ``lab-<host>.service``,
failed per ``failed_units``; a nix-darwin host (deploy + sudo) has a command
check only. h2 and h3 boot a real systemd as PID 1 (tests/lab/nspawn.py): their
activation runs under systemd-run, their units are real ones (a failed unit is
one systemd lists) and the `unit` check asks the real systemctl; h1 and h4
are plain lab hosts, whose systemctl is the lab's. Where systemd hosts cannot
run (``nspawn.unsupported()``: the current stack's tree) h2 and h3 are plain
hosts too: every test runs the same on the five hosts and skips, with that
reason, only its systemd part (what it asserts of h2 and h3 as systemd
hosts), which comes last. The tests share one fleet, deployed once at version
1 (``first_deploy``, made by the first test that needs it); each reads the
state it starts from on the hosts, so each runs alone with ``-k`` too.
"""

import json
import os
import urllib.error
import urllib.request

import pytest

from tests.deploy_fleet import DeployFleet, deployed_once, prepare, write_inventory
from tests.lab import nspawn

pytestmark = pytest.mark.lab

ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'
NIXOS = ['h1', 'h2', 'h3', 'h4']
SYSTEMD_UNSUPPORTED = nspawn.unsupported()
# the NixOS hosts that boot systemd, where they can
SYSTEMD = ('h2', 'h3') if SYSTEMD_UNSUPPORTED is None else ()
HOSTS = [{'name': h, 'persona': 'nixos', 'systemd': h in SYSTEMD} for h in NIXOS] + \
    [{'name': 'h5', 'persona': 'darwin'}]
# the app's configuration, written by every NixOS activation (on_activate)
GOOD_CONFIG = "printf 'port=8080\\n' >/run/app.conf"
BAD_CONFIG = "printf '# port missing\\n' >/run/app.conf"


def systemd_part():
    """What follows in a test asserts of h2 and h3 as systemd hosts: skipped
    (with the reason) where they are plain hosts."""
    if SYSTEMD_UNSUPPORTED is not None:
        pytest.skip('%s (skipped: what this test asserts of its systemd hosts; its assertions '
                    'on the same hosts as plain hosts passed)' % SYSTEMD_UNSUPPORTED)


def service(host):
    """A NixOS host's own service, which its system runs."""
    return 'lab-%s.service' % host


def unit(lab, host, name, *props):
    """Properties of a unit, as the host's real systemd has them."""
    out = lab.ssh(host, 'systemctl show --property=%s %s' % (','.join(props), name)).stdout
    return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)


def nixos_checks():
    """What a NixOS host must pass, from the controller and on the host."""
    return [
        {'name': 'web', 'retries': 2, 'interval': 0.5, 'timeout': 5,
         'http': {'url': 'http://{{ ansible_host }}/cgi-bin/health', 'body': 'answers 200'}},
        {'name': 'app-config', 'retries': 1, 'interval': 0.5,
         'command': "cat /run/app.conf; grep -q '^port=' /run/app.conf"},
        {'name': 'app', 'unit': 'lab-{{ inventory_hostname }}.service', 'retries': 1,
         'interval': 0.5},
    ]


class Fleet(DeployFleet):

    def version(self, version, **per_host):
        """Every configuration at ``version`` (healthy), then per-host knobs."""
        for host in NIXOS:
            self.flake.set_config(host, version=version, http_status=200, http_port=80,
                                  failed_units=[], on_activate=GOOD_CONFIG)
            self.flake.set_config(host, **per_host.get(host, {}))
        self.flake.set_config('h5', version=version)


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('hck', HOSTS)
    base = str(tmp_path_factory.mktemp('hck'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    group_vars = os.path.join(inventory, 'group_vars')
    with open(os.path.join(group_vars, 'nixos.yml'), 'w') as handle:
        json.dump({'nix_health_checks': nixos_checks(), 'nix_confirm_timeout': 15}, handle)
    with open(os.path.join(group_vars, 'darwin.yml'), 'w') as handle:
        json.dump({'ansible_become': True, 'nix_health_checks': [
            {'name': 'root-can-write-nix', 'command': 'test -w /nix/var && id -u'}]}, handle)
    found = Fleet(lab, flake, inventory, base)
    found.version('1')
    return found


first_deploy, deployed = deployed_once('fleet')


def activate_results(run):
    return {r['host']: r for r in run.results(ACTIVATE)}


def http(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_healthy_fleet_passes_its_checks_before_confirming(fleet, first_deploy):
    run = first_deploy
    assert run.rc == 0, run
    results = activate_results(run)
    for host in NIXOS:
        res = results[host]['result']
        assert results[host]['status'] == 'ok' and res['changed'], (host, run)
        checks = res['health_checks']
        names = [c['name'] for c in checks['checks']]
        assert checks['ok'] and names == ['web', 'app-config', 'app'], res
        assert [p['name'] for p in res['phases']] == ['activate', 'checks', 'confirm'], res
        assert res['confirmed'] and fleet.lab.active(host) == res['new']['path']
    darwin = results['h5']['result']
    assert darwin['health_checks']['checks'][0]['output'] == '0', darwin
    systemd_part()
    for host in SYSTEMD:
        res = results[host]['result']
        assert res['detached_with'] == 'systemd-run', res
        # the app check passed on the new system's own service, a real unit
        assert unit(fleet.lab, host, service(host), 'ActiveState', 'Description') == {
            'ActiveState': 'active', 'Description': 'lab %s 1: %s' % (host, service(host))}


# its check and rollback calls: test_healthy_fleet_passes_... and test_a_tcp_port_that_accepts_...
@pytest.mark.here_only
def test_each_kind_of_failed_check_rolls_its_host_back_beside_healthy_ones(deployed):
    """One run, every kind of check failing on a host of its own beside
    healthy h4 and h5: h2's web check gets HTTP 500, h1's command check
    finds its app's configuration broken, h3's unit check finds its service
    failed. Each failed host rolls back, the healthy ones switch."""
    fleet = deployed
    lab = fleet.lab
    before = {h: lab.active(h) for h in NIXOS}
    fleet.version('2', h1={'on_activate': BAD_CONFIG}, h2={'http_status': 500},
                  h3={'failed_units': [service('h3')]})
    run = fleet.deploy()
    assert run.rc != 0, run
    results = activate_results(run)
    for host in ('h1', 'h2', 'h3'):
        res = results[host]['result']
        assert results[host]['status'] == 'failed', (host, run)
        assert res['phase'] == 'checks' and res['rolled_back'] and not res['connection_lost'], res
        assert [p['name'] for p in res['phases']] == ['activate', 'checks', 'rollback'], res
        assert lab.active(host) == before[host], host
    outcomes = run.outcomes()
    for host in ('h4', 'h5'):
        assert results[host]['status'] == 'ok' and results[host]['result']['changed'], run
        assert outcomes[host] == 'switched', outcomes
    assert lab.active('h4') == results['h4']['result']['new']['path'] != before['h4']

    # scenario: test_http_500_on_one_of_four_rolls_that_host_back
    res = results['h2']['result']
    assert res['msg'].startswith("h2: rolled back: health check 'web' failed after 3 tries: "
                                 "HTTP 500 (wanted 200) (last output: lab h2 2 answers 500)"), res
    # rejected at once: the watchdog rolled back for the check, not at its deadline
    assert res['rollback_reason'].startswith("health check 'web'"), res
    assert res['health_checks']['not_run'] == ['app-config', 'app']
    # h2 runs its previous system again, with that system's httpd
    assert lab.active('h2') == lab.current_system('h2') == before['h2']
    assert http(lab.http_url('h2')) == 200
    assert outcomes['h2'].startswith("FAILED: rolled back (health check 'web'"), outcomes

    # scenario: test_command_and_unit_checks_fail_hosts_the_same_way
    one, three = results['h1']['result'], results['h3']['result']
    assert one['msg'] == ("h1: rolled back: health check 'app-config' failed after 2 tries: "
                          "exit code 1 (last output: # port missing)"), one
    assert three['msg'] == ("h3: rolled back: health check 'app' failed after 2 tries: "
                            "exit code 3 (last output: failed)"), three
    # back on its previous system, h3's service runs again (the lab's
    # systemctl: that system fails no unit)
    assert lab.ssh('h3', 'systemctl is-active %s' % service('h3')).stdout.strip() == 'active'

    systemd_part()
    # h2's rollback restarted its previous system's services: its httpd and
    # its own service (a switched host's new service: the healthy fleet test)
    httpd = unit(lab, 'h2', 'lab-httpd.service', 'ActiveState', 'ExecStart')
    assert httpd['ActiveState'] == 'active' and before['h2'] + '/www' in httpd['ExecStart']
    assert unit(lab, 'h2', service('h2'), 'Description')['Description'].startswith('lab h2 1:')
    # h3's service really failed under version 2 (systemd logged it), and the
    # rollback's switch cleared the failure and started the previous one's
    journal = lab.ssh('h3', 'journalctl --no-pager -q -u %s' % service('h3')).stdout
    assert "Failed with result 'exit-code'" in journal, journal
    assert unit(lab, 'h3', service('h3'), 'ActiveState', 'Description') == {
        'ActiveState': 'active', 'Description': 'lab h3 1: %s' % service('h3')}
    assert service('h3') not in lab.ssh('h3', 'systemctl --failed --plain --no-legend').stdout


def test_check_mode_skips_the_checks_and_says_so(deployed):
    fleet = deployed
    lab = fleet.lab
    before = {h: lab.active(h) for h in NIXOS}
    fleet.version('4')
    # --diff: check mode builds the new systems (on the controller only) then
    run = fleet.deploy('--check', '--diff')
    assert run.rc == 0, run
    for host, rec in activate_results(run).items():
        checks = rec['result']['health_checks']
        assert checks['skipped'] and checks['checks'] == [], rec
        assert 'not run: check mode' in rec['result']['msg'], rec
    assert {h: lab.active(h) for h in NIXOS} == before


# its undo's nix-env calls: test_nix_activate's rollback tests; -l: test_a_tcp_port_that_accepts_...
@pytest.mark.here_only
def test_without_magic_rollback_a_failed_check_still_fails_and_rolls_back(deployed):
    fleet = deployed
    lab = fleet.lab
    unhealthy = ('h3', 'h4')
    fleet.version('5', h3={'http_status': 503}, h4={'http_status': 503})
    before = {h: lab.active(h) for h in ('h2', 'h3', 'h4')}
    run = fleet.deploy('-l', 'h2,h3,h4', '-e', 'nix_magic_rollback=false')
    assert run.rc != 0, run
    results = activate_results(run)
    for host in unhealthy:
        res = results[host]['result']
        assert results[host]['status'] == 'failed' and not res['magic_rollback'], res
        assert res['phase'] == 'checks' and res['rolled_back'], res
        assert res['msg'].startswith("%s: rolled back: health check 'web' failed after 3 tries: "
                                     "HTTP 503 (wanted 200)" % host), res
        assert [p['name'] for p in res['phases']] == ['activate', 'checks', 'rollback'], res
        assert lab.active(host) == before[host] and http(lab.http_url(host)) == 200
        # the failed generation is gone: the profile is back where it was
        assert lab.run_in(host, ['readlink', '-f', '/nix/var/nix/profiles/system']) \
            .stdout.strip() == before[host]
    assert results['h2']['status'] == 'ok' and lab.active('h2') != before['h2']
    systemd_part()
    # h3's rollback ran under systemd-run too and restarted v2's httpd
    assert results['h3']['result']['detached_with'] == 'systemd-run'
    httpd = unit(lab, 'h3', 'lab-httpd.service', 'ActiveState', 'ExecStart')
    assert httpd['ActiveState'] == 'active' and before['h3'] + '/www' in httpd['ExecStart']


# the port the tcp checks ask for, which only h1's version 7 serves
APP_PORT = 8081


def test_a_tcp_port_that_accepts_passes_and_a_closed_one_rolls_its_host_back(deployed):
    """``tcp`` checks, tried from the controller at each host's address
    (``ansible_host``, as Ansible's connection reaches it): h1's new system
    serves its httpd on the checked port, h4's keeps it on port 80, so
    nothing accepts there. In one run h1 switches, h4 is rolled back."""
    fleet = deployed
    lab = fleet.lab
    host_vars = os.path.join(fleet.inventory, 'host_vars')
    os.makedirs(host_vars, exist_ok=True)
    written = []
    for host in ('h1', 'h4'):
        path = os.path.join(host_vars, '%s.yml' % host)
        with open(path, 'w') as handle:
            json.dump({'nix_health_checks': [{'name': 'app-port', 'retries': 2, 'interval': 0.5,
                                              'timeout': 3, 'tcp': {'port': APP_PORT}}]},
                      handle)
        written.append(path)
    try:
        fleet.version('7', h1={'http_port': APP_PORT})
        before = {h: lab.active(h) for h in ('h1', 'h4')}
        run = fleet.deploy('-l', 'h1,h4')
    finally:
        for path in written:
            os.remove(path)
    assert run.rc != 0, run
    results = activate_results(run)
    one, four = results['h1']['result'], results['h4']['result']
    assert results['h1']['status'] == 'ok' and one['confirmed'], (one, run)
    check = one['health_checks']['checks'][0]
    assert check['kind'] == 'tcp' and check['ok'] and check['tries'] >= 1, check
    assert lab.active('h1') == one['new']['path'] != before['h1']
    address = lab.host('h4')['address']
    assert results['h4']['status'] == 'failed', run
    assert four['phase'] == 'checks' and four['rolled_back'] and not four['connection_lost'], four
    assert four['msg'] == ("h4: rolled back: health check 'app-port' failed after 3 tries: "
                           "no connection to %s:%d: [Errno 111] Connection refused"
                           % (address, APP_PORT)), four['msg']
    assert [p['name'] for p in four['phases']] == ['activate', 'checks', 'rollback'], four
    assert lab.active('h4') == lab.current_system('h4') == before['h4']
    outcomes = run.outcomes()
    assert outcomes['h1'] == 'switched', outcomes
    assert outcomes['h4'].startswith("FAILED: rolled back (health check 'app-port'"), outcomes
