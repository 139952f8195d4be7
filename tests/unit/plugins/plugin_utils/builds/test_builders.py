"""Builders checked before use (plugin_utils/builds/_builders.py): build_on with one
or several builders, the probe (run under sh here, against this machine's real
Nix) and what it prints, the decisions (healthy, suits a closure) on real probe
and derivation output, and the spreading. The lab test
tests/integration/plugins/action/test_builders.py runs the same over ssh."""

import json
import os
import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _builders  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _host  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import (  # noqa: E402
    _nix, _nix_output)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _outcome  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'nix',
                       'nix_samples')

# target/builder-probe.sh as it ran (sh -s) with Debian 12's Nix 2.8.0 and
# with Nix 2.34.8 (the current-stack tree), November 2026
PROBE_2_8 = """\
@@nixdeploy nix_dir=/usr/bin
@@nixdeploy daemon_on_path=1
@@nixdeploy system=x86_64-linux
@@nixdeploy extra_platforms=i686-linux x86_64-v1-linux x86_64-v2-linux x86_64-v3-linux
@@nixdeploy system_features=benchmark big-parallel kvm nixos-test
@@nixdeploy store_df=/dev/vda         264212084 33027660  73363252      32% /
@@nixdeploy complete=1
"""
PROBE_2_34 = """\
@@nixdeploy nix_dir=/usr/bin
@@nixdeploy daemon_on_path=1
@@nixdeploy system=x86_64-linux
@@nixdeploy extra_platforms=i686-linux x86_64-v1-linux x86_64-v2-linux x86_64-v3-linux
@@nixdeploy system_features=benchmark big-parallel kvm nixos-test uid-range
@@nixdeploy store_df=/dev/vda         264212084 33015680  73375232      32% /
@@nixdeploy complete=1
"""
# a lab host of the darwin persona: nix outside the ssh PATH, no /dev/kvm for its user
PROBE_HIDDEN_NIX = """\
@@nixdeploy nix_dir=/nix/var/nix/profiles/default/bin
@@nixdeploy daemon_on_path=0
@@nixdeploy system=x86_64-linux
@@nixdeploy extra_platforms=i686-linux x86_64-v1-linux x86_64-v2-linux x86_64-v3-linux
@@nixdeploy system_features=benchmark big-parallel nixos-test
@@nixdeploy store_df=/dev/vda         264212084 31721004  74669908      30% /
@@nixdeploy complete=1
"""


def probe_facts(text):
    """The facts of a sample above: its lines carry the marker of the
    program that printed them (plugin_utils/host/_script.py), this one's here."""
    program = _builders.probe_script()
    return _builders.parse_probe(text.replace('@@nixdeploy ', '@@%s ' % program.mark), program)


# `show-derivation` (2.8) and `derivation show` (2.34) of two derivations:
# nd-sa with __structuredAttrs for aarch64-linux needing kvm and big-parallel,
# nd-plain for x86_64-linux needing kvm
SHOW_2_8 = [{
    "/nix/store/f35a7sv5yk5d5q99v82v4wniriiy38bp-nd-sa.drv": {
        "outputs": {"out": {"path": "/nix/store/xfwmnjzhz0m29na267bw5ajhd6v6zkvl-nd-sa"}},
        "inputSrcs": [], "inputDrvs": {}, "system": "aarch64-linux", "builder": "/bin/sh",
        "args": ["-c", "echo > $out"],
        "env": {"__json": "{\"builder\":\"/bin/sh\",\"name\":\"nd-sa\",\"requiredSystemFeatures\":"
                          "[\"kvm\",\"big-parallel\"],\"system\":\"aarch64-linux\"}",
                "out": "/nix/store/xfwmnjzhz0m29na267bw5ajhd6v6zkvl-nd-sa"}}}, {
    "/nix/store/x37cnlgz0wsdqb9zzdpwi1ng6r411bfx-nd-plain.drv": {
        "outputs": {"out": {"path": "/nix/store/hjgm9v2v63nw83wnnksavz6q6098bk45-nd-plain"}},
        "inputSrcs": [], "inputDrvs": {}, "system": "x86_64-linux", "builder": "/bin/sh",
        "args": ["-c", "echo > $out"],
        "env": {"builder": "/bin/sh", "name": "nd-plain",
                "out": "/nix/store/hjgm9v2v63nw83wnnksavz6q6098bk45-nd-plain",
                "requiredSystemFeatures": "kvm", "system": "x86_64-linux"}}}]
SHOW_2_34 = [
    '{"derivations":{"f35a7sv5yk5d5q99v82v4wniriiy38bp-nd-sa.drv":{"args":["-c","echo > $out"],'
    '"builder":"/bin/sh","env":{"out":"/nix/store/xfwmnjzhz0m29na267bw5ajhd6v6zkvl-nd-sa"},'
    '"inputs":{"drvs":{},"srcs":[]},"name":"nd-sa","outputs":{"out":{"path":'
    '"xfwmnjzhz0m29na267bw5ajhd6v6zkvl-nd-sa"}},"structuredAttrs":{"builder":"/bin/sh",'
    '"name":"nd-sa","requiredSystemFeatures":["kvm","big-parallel"],"system":"aarch64-linux"},'
    '"system":"aarch64-linux","version":4}},"version":4}',
    '{"derivations":{"x37cnlgz0wsdqb9zzdpwi1ng6r411bfx-nd-plain.drv":{"args":["-c","echo > $out"],'
    '"builder":"/bin/sh","env":{"builder":"/bin/sh","name":"nd-plain","out":'
    '"/nix/store/hjgm9v2v63nw83wnnksavz6q6098bk45-nd-plain","requiredSystemFeatures":"kvm",'
    '"system":"x86_64-linux"},"inputs":{"drvs":{},"srcs":[]},"name":"nd-plain","outputs":'
    '{"out":{"path":"hjgm9v2v63nw83wnnksavz6q6098bk45-nd-plain"}},"system":"x86_64-linux",'
    '"version":4}},"version":4}']
SA = '/nix/store/f35a7sv5yk5d5q99v82v4wniriiy38bp-nd-sa.drv'
PLAIN = '/nix/store/x37cnlgz0wsdqb9zzdpwi1ng6r411bfx-nd-plain.drv'


# ------------------------------------------------------------------ build_on
@pytest.mark.parametrize('value,place', [
    (None, None), ('', None), ([], None), (' , ', None),
    ('controller', 'controller'), (['target'], 'target'), ('b1', 'b1'), (['b1'], 'b1'),
    ('b1,b2', ['b1', 'b2']), (' b1 , b2 ,', ['b1', 'b2']), (['b2', 'b1', 'b2'], ['b2', 'b1']),
    # a list item is one name: a URI holding a comma stays whole
    (['ssh-ng://a@x?remote-program=a,b', 'b2'], ['ssh-ng://a@x?remote-program=a,b', 'b2']),
])
def test_build_on_names_one_place_or_several_builders(value, place):
    assert _builders.parse_build_on(value) == place


@pytest.mark.parametrize('value', ['controller,b1', ['b1', 'target'], 'target, controller'])
def test_controller_and_target_stand_alone(value):
    with pytest.raises(_builders.BuildOnError, match='stands alone'):
        _builders.parse_build_on(value)


def test_label_and_names():
    assert _builders.label(['b1', 'b2']) == 'b1,b2' and _builders.label('b1') == 'b1'
    assert _builders.names_of('b1') == ['b1'] and _builders.names_of(['b1', 'b2']) == ['b1', 'b2']


# ------------------------------------------------------------------ where a builder is
HOSTVARS = {
    'b1': {'ansible_host': '10.0.0.11', 'ansible_user': 'root', 'ansible_port': 2222,
           'ansible_ssh_private_key_file': '/keys/id', 'ansible_ssh_common_args':
           '-o UserKnownHostsFile=/lab/known_hosts -o StrictHostKeyChecking=yes'},
    'careless': {'ansible_host': '10.0.0.12',
                 'ansible_ssh_common_args': '-o StrictHostKeyChecking=no'},
}


def test_an_inventory_builder_uses_its_own_connection_vars():
    spec = _builders.resolve('b1', HOSTVARS)
    assert spec.uri == 'ssh-ng://root@10.0.0.11' and spec.inventory
    assert spec.env['NIX_SSHOPTS'].split()[:4] == ['-p', '2222', '-i', '/keys/id']
    argv = spec.login_argv()
    # host key checking as the inventory says, our defaults after it (ssh keeps the first)
    assert argv[0] == 'ssh' and argv[-2:] == ['root@10.0.0.11', 'sh -s']
    assert argv.index('StrictHostKeyChecking=yes') < argv.index('BatchMode=yes')


def test_a_store_uri_builder_logs_in_as_its_uri_says(monkeypatch):
    monkeypatch.setenv('NIX_SSHOPTS', '-o UserKnownHostsFile=/k')
    spec = _builders.resolve('ssh-ng://nix@b2.example.org?ssh-key=/my%20keys/id', {})
    assert spec.uri == 'ssh-ng://nix@b2.example.org?ssh-key=/my%20keys/id'
    argv = spec.login_argv()
    assert argv[-2:] == ['nix@b2.example.org', 'sh -s']
    assert ['-i', '/my keys/id'] == argv[1:3] and 'UserKnownHostsFile=/k' in argv
    # a local or daemon store: nothing to log in to
    assert _builders.resolve('unix:///run/nix/socket', {}).target is None


def test_unknown_or_unsafe_builders_are_skipped_with_the_reason():
    with pytest.raises(_host.AddressError, match='neither an inventory host nor a store URI'):
        _builders.resolve('nope', HOSTVARS)
    # no ssh, no nix runs: both fail before
    found = _builders.probe_all(['nope', 'careless'], HOSTVARS, _nix.NixOptions(), 1024)
    assert 'neither an inventory host' in found['nope'].reason
    assert 'StrictHostKeyChecking=no' in found['careless'].reason
    assert not found['careless'].healthy


# ------------------------------------------------------------------ probe
def run_probe(env):
    """(the probe run under sh -s, its facts)."""
    program = _builders.probe_script()
    proc = subprocess.run(['/bin/sh', '-s'], input=program,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, check=False)
    return proc, _builders.parse_probe(proc.stdout, program)


def test_the_probe_reads_what_this_machines_nix_builds():
    proc, facts = run_probe(dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    config = _nix.run(['nix', '--extra-experimental-features', 'nix-command', 'show-config'])[1]
    system = [ln.split(' = ', 1)[1] for ln in config.splitlines() if ln.startswith('system = ')]
    assert [facts['system']] == system
    assert facts['complete'] and facts['free_kb'] > 0
    assert _builders.health_reason(facts, 1) is None
    assert _builders.unsuited_reason(facts, {'systems': {facts['system'], 'builtin'},
                                             'features': set()}) is None


def test_the_probe_without_nix_says_so(tmp_path):
    if any(os.access(os.path.join(d, 'nix'), os.X_OK) for d in _platforms.KNOWN_NIX_DIRS
           if d.startswith('/')):
        pytest.skip('this machine has nix in one of the known places')
    empty = tmp_path / 'bin'
    empty.mkdir()
    for tool in ('id', 'sed', 'tr', 'df', 'printf'):
        found = subprocess.run(['sh', '-c', 'command -v %s' % tool], stdout=subprocess.PIPE,
                               universal_newlines=True, check=False).stdout.strip()
        if found.startswith('/'):
            os.symlink(found, str(empty / tool))
    proc, facts = run_probe({'PATH': str(empty), 'HOME': str(tmp_path)})
    assert proc.returncode == 3
    assert _builders.health_reason(facts, 1024) == 'no nix found (ssh PATH and the usual places)'


@pytest.mark.parametrize('text', [PROBE_2_8, PROBE_2_34])
def test_probe_output_of_each_nix(text):
    facts = probe_facts(text)
    assert facts['system'] == 'x86_64-linux' and facts['daemon_on_path']
    assert _builders.platforms(facts)[:2] == ['x86_64-linux', 'i686-linux']
    assert 'kvm' in facts['system_features']
    assert facts['free_kb'] > 70000000
    assert _builders.health_reason(facts, 1024) is None


@pytest.mark.parametrize('line,free', [
    ('/dev/vda         264212084 33027660  73363252      32% /', 73363252),
    # macOS: df -Pk has the same columns
    ('/dev/disk3s7   494384768 171339916 304095268    37%    /nix', 304095268),
    ('my disk (2)  100 90 10 90% /nix', 10),
    ('', None), ('df: /nix/store: No such file or directory', None), ('a b c d', None),
])
def test_free_space_from_df(line, free):
    assert _builders.free_kb(line) == free


def test_full_broken_or_unfinished_builders_are_unhealthy():
    facts = probe_facts(PROBE_2_8)
    assert _builders.health_reason(facts, 10 ** 6) == \
        'only 71643 MB free in /nix/store (builder_min_free_mb: 1000000)'
    # 0: free space not checked
    assert _builders.health_reason(dict(facts, free_kb=None), 0) is None
    assert 'cannot read the free space' in _builders.health_reason(dict(facts, free_kb=None), 1)
    unfinished = probe_facts(PROBE_2_8.replace('@@nixdeploy complete=1\n', ''))
    assert 'did not finish' in _builders.health_reason(unfinished, 1)
    failed = probe_facts(
        '@@nixdeploy nix_dir=/usr/bin\n'
        '@@nixdeploy error=neither nix config show nor nix show-config answered\n')
    assert _builders.health_reason(failed, 1) == \
        'neither nix config show nor nix show-config answered'


def test_store_query_by_version():
    assert _builders.store_subcommand(_nix.NixFeatures('nix', (2, 8, 0))) == ['store', 'ping']
    assert _builders.store_subcommand(_nix.NixFeatures('nix', (2, 19, 0))) == ['store', 'info']
    assert _builders.store_subcommand(_nix.NixFeatures('lix', (2, 93, 0))) == ['store', 'ping']


# ------------------------------------------------------------------ derivations
@pytest.mark.parametrize('outputs', [SHOW_2_8, [json.loads(t) for t in SHOW_2_34]])
def test_what_each_derivation_needs(outputs):
    needs = {}
    for data in outputs:
        needs.update(_nix_output.derivation_needs(data))
        # the graph of the same output reads too (one derivation show for both)
        assert _nix_output.derivations(data)
    assert needs == {SA: {'system': 'aarch64-linux', 'features': ['big-parallel', 'kvm']},
                     PLAIN: {'system': 'x86_64-linux', 'features': ['kvm']}}


def test_derivation_needs_in_bare_names():
    with open(os.path.join(SAMPLES, 'derivation-show-2.32.json')) as handle:
        needs = _nix_output.derivation_needs(json.load(handle))
    assert needs['/nix/store/yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy-advanced-attributes.drv'] == {
        'system': 'my-system', 'features': ['rainbow', 'uid-range']}


def test_which_builder_suits_a_closure():
    linux = probe_facts(PROBE_2_34)
    hidden = probe_facts(PROBE_HIDDEN_NIX)
    needs = _nix_output.derivation_needs(SHOW_2_8[0])
    needs.update(_nix_output.derivation_needs(SHOW_2_8[1]))
    plain = _builders.closure_needs(needs, {PLAIN})
    assert _builders.unsuited_reason(linux, plain) is None
    assert _builders.unsuited_reason(hidden, plain) == \
        'lacks the system features kvm (it has benchmark, big-parallel, nixos-test)'
    both = _builders.closure_needs(needs, {PLAIN, SA})
    assert both == {'systems': {'x86_64-linux', 'aarch64-linux'}, 'features': {'kvm', 'big-parallel'}}
    assert _builders.unsuited_reason(linux, both) == (
        'cannot build aarch64-linux (it builds x86_64-linux, i686-linux, x86_64-v1-linux, '
        'x86_64-v2-linux, x86_64-v3-linux)')
    # extra-platforms count; builtin derivations build anywhere
    assert _builders.unsuited_reason(linux, {'systems': {'i686-linux', 'builtin'},
                                             'features': set()}) is None


def test_choose_keeps_the_order_and_names_every_skipped_builder():
    linux = probe_facts(PROBE_2_34)
    hidden = probe_facts(PROBE_HIDDEN_NIX)
    probed = {'b1': _builders.Probed('b1', 'login failed: ssh: connect to host b1 port 22: '
                                           'Connection refused'),
              'b2': _builders.Probed('b2', None, facts=hidden),
              'b3': _builders.Probed('b3', None, facts=linux),
              'b4': _builders.Probed('b4', None, facts=linux),
              # a store without login: what it builds is unknown, its build says
              'unix:///s': _builders.Probed('unix:///s', None, facts={'unknown': True})}
    needs = {'systems': {'x86_64-linux'}, 'features': {'kvm'}}
    usable, skipped = _builders.choose(['b4', 'b1', 'b2', 'b3', 'unix:///s'], probed, needs)
    assert usable == ['b4', 'b3', 'unix:///s']
    assert skipped == [{'name': 'b1', 'reason': probed['b1'].reason},
                       {'name': 'b2', 'reason': 'lacks the system features kvm (it has '
                                                'benchmark, big-parallel, nixos-test)'}]
    assert _builders.no_builder_message(skipped) == (
        'no builder can build it: b1: login failed: ssh: connect to host b1 port 22: '
        'Connection refused; b2: lacks the system features kvm (it has benchmark, '
        'big-parallel, nixos-test)')


# ------------------------------------------------------------------ spreading
def test_systems_spread_over_the_builders_with_shared_dependencies_counted_once():
    base = set('base%d' % i for i in range(50))
    closures = dict(('sys%d' % i, base | {'sys%d' % i}) for i in range(1, 5))
    usable = dict((d, ['b1', 'b2']) for d in closures)
    placed = _builders.spread(usable, closures)
    assert sorted(placed.values()) == ['b1', 'b1', 'b2', 'b2'], placed
    # a system only one builder suits goes there, and the others balance around it
    usable['sys1'] = ['b2']
    placed = _builders.spread(usable, closures)
    assert placed['sys1'] == 'b2' and sorted(placed.values()) == ['b1', 'b1', 'b2', 'b2']
    # one healthy builder: everything on it, ONE build
    placed = _builders.spread(dict((d, ['b2']) for d in closures), closures)
    assert set(placed.values()) == {'b2'}
    # a system goes where its dependencies already are rather than build them again
    xs, zs = set('x%d' % i for i in range(10)), set('z%d' % i for i in range(10))
    closures = {'a': {'a'} | xs, 'd': {'d'} | zs, 'c': {'c'} | set(sorted(xs)[:9])}
    placed = _builders.spread(dict((d, ['b1', 'b2']) for d in closures), closures)
    assert placed == {'a': 'b1', 'd': 'b2', 'c': 'b1'}


def test_ties_go_to_the_earlier_builder():
    closures = {'a': {'a'}}
    assert _builders.spread({'a': ['b2', 'b1']}, closures) == {'a': 'b2'}
    assert _builders.spread({'a': []}, closures) == {}


# ------------------------------------------------------------------ summary
def test_the_summary_names_the_builder_and_the_skipped_ones():
    host = _outcome.HostOutcome('web1')
    host.add('build', {'changed': True, 'builder': 'b2', 'builders_skipped': [
        {'name': 'b1', 'reason': 'login failed: ssh: connect to host 10.0.0.11 port 22: '
                                 'Connection refused'}]}, 'changed')
    host.add('activate', {'changed': True, 'goal': 'switch', 'platform': 'nixos',
                          'previous': {'generation': 3}, 'new': {'generation': 4}}, 'changed')
    rec = host.record()
    assert rec['built_on'] == 'b2' and [s['name'] for s in rec['builders_skipped']] == ['b1']
    assert rec['outcome'] == ('switched (built on b2; b1 skipped: login failed: ssh: connect to '
                              'host 10.0.0.11 port 22: Connection refused)')
    assert _outcome.summary_line(rec).endswith(rec['outcome'])
    # nothing skipped: no note
    plain = _outcome.HostOutcome('web2')
    plain.add('build', {'changed': True, 'builder': 'b2', 'builders_skipped': []}, 'changed')
    assert plain.record()['outcome'] == 'built (not activated)'


def test_a_host_no_builder_could_build_names_them_once():
    host = _outcome.HostOutcome('web1')
    msg = 'web1: no builder can build it: b1: login failed: x; b2: only 3 MB free in /nix/store'
    host.add('build', {'failed': True, 'phase': 'build', 'msg': msg, 'builders_skipped': [
        {'name': 'b1', 'reason': 'login failed: x'},
        {'name': 'b2', 'reason': 'only 3 MB free in /nix/store'}]}, 'failed')
    rec = host.record()
    assert rec['outcome'] == 'FAILED at build: ' + msg[len('web1: '):]
    assert rec['built_on'] is None and len(rec['builders_skipped']) == 2
