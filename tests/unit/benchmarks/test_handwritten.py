# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/_handwritten.py (the hand-written playbook's inventory, and what
a host's folder says its system profile points to), the process events
parser of benchmarks/_fork_count.py, and the ratios and rows of table 10
with its third deployer (benchmarks/scale.py)."""

import os
import struct

import yaml

from benchmarks import _fork_count, _handwritten, scale

STORE = '/nix/store/%s-nixos-system-h1-b%d'


def test_the_inventory_keeps_host_key_checking_on_and_the_hosts_in_play_order():
    hosts = [('h%d' % n, '10.0.0.%d' % n, 'root', 'nixosConfigurations.h%d.config.system.build.'
              'toplevel' % n) for n in (1, 2, 10)]
    data = _handwritten.inventory(hosts, 'path:/f', '/k/id', '/k/known_hosts')
    fleet = data['fleet']
    assert list(fleet['hosts']) == ['h1', 'h2', 'h10']
    assert fleet['hosts']['h10'] == {'ansible_host': '10.0.0.10', 'ansible_user': 'root',
                                     'nix_attr': hosts[2][3]}
    args = fleet['vars']['ansible_ssh_common_args']
    assert 'UserKnownHostsFile=/k/known_hosts' in args and 'StrictHostKeyChecking=yes' in args
    assert fleet['vars']['ansible_host_key_checking'] is True
    assert fleet['vars']['nix_flake'] == 'path:/f'


def test_the_written_inventory_is_yaml(tmp_path):
    path = _handwritten.write_inventory(str(tmp_path / 'hosts.yml'), [('h1', 'a', 'root', 'x')],
                                        'path:/f', 'k', 'kh')
    with open(path) as handle:
        assert yaml.safe_load(handle)['fleet']['hosts']['h1']['nix_attr'] == 'x'


def _profile(host, links):
    """A host folder whose system profile is a chain of ``links``."""
    profiles = host / 'nix' / 'var' / 'nix' / 'profiles'
    profiles.mkdir(parents=True)
    for number in (1, 2):
        (host / 'nix' / 'store' / (STORE % (number, number))[len('/nix/store/'):] / 'bin').mkdir(
            parents=True)
    for name, target in links:
        os.symlink(target, str(profiles / name))
    return str(host)


def test_the_profile_is_followed_inside_the_host_folder(tmp_path):
    # as nix-env writes them: system -> system-2-link (relative) -> the store (absolute)
    host = _profile(tmp_path / 'h1', [('system-1-link', STORE % (1, 1)),
                                      ('system-2-link', STORE % (2, 2)),
                                      ('system', 'system-2-link')])
    assert _handwritten.profile_target(host) == STORE % (2, 2)


def test_no_profile_or_a_dangling_one_is_none(tmp_path):
    assert _handwritten.profile_target(str(tmp_path)) is None
    host = _profile(tmp_path / 'h1', [('system', '/nix/store/missing-system')])
    assert _handwritten.profile_target(host) is None
    loop = _profile(tmp_path / 'h2', [('system', 'system'), ])
    assert _handwritten.profile_target(loop) is None


def test_state_mismatches_names_the_host_and_what_differs():
    expected = {'h1': 'a', 'h2': 'b', 'h10': 'c'}
    assert _handwritten.state_mismatches(expected, dict(expected), dict(expected)) == []
    wrong = _handwritten.state_mismatches(expected, {'h1': 'a', 'h2': 'old', 'h10': 'c'},
                                          {'h1': 'a', 'h2': 'b'})
    assert wrong == [('h2', 'active', 'old'), ('h10', 'profile', None)]


def _event(what, data):
    body = struct.pack('=IIQ', what, 0, 0) + data
    cn_msg = struct.pack('=IIIIHH', 1, 1, 0, 0, len(body), 0) + body
    return struct.pack('=IHHII', 16 + len(cn_msg), 3, 0, 0, 0) + cn_msg


def test_process_events_count_processes_not_threads():
    fork = _event(_fork_count.PROC_EVENT_FORK, struct.pack('=IIII', 10, 10, 11, 11))
    thread = _event(_fork_count.PROC_EVENT_FORK, struct.pack('=IIII', 10, 10, 12, 10))
    exited = _event(_fork_count.PROC_EVENT_EXIT, struct.pack('=IIII', 11, 11, 0, 0))
    exec_ = _event(0x2, struct.pack('=II', 11, 11))
    assert _fork_count.parse(fork + thread + exec_ + exited) == [('fork', 10, 11),
                                                                 ('exit', 11, 0)]
    assert _fork_count.parse(fork[:30]) == []


def test_the_listen_message_asks_for_forks_and_exits():
    message = _fork_count.listen_message(7)
    length, kind, _flags, _seq, pid = struct.unpack_from('=IHHII', message)
    assert (length, kind, pid) == (len(message), 3, 7)
    assert struct.unpack_from('=II', message, 36) == (
        1, _fork_count.PROC_EVENT_FORK | _fork_count.PROC_EVENT_EXIT)
    assert len(_fork_count.listen_message(7, filtered=False)) == 40


def test_the_group_is_read_from_the_cgroup_file():
    text = '12:cpuacct:/\n0::/nixdeploy-bench-5/targets\n'
    assert _fork_count.group_of(text, '/nixdeploy-bench-5') == 'targets'
    assert _fork_count.group_of(text, '/nixdeploy-bench-50') is None
    assert _fork_count.group_of('0::/user.slice\n', '/nixdeploy-bench-5') is None


def _run(wall, cpu, targets, started=None):
    return {'wall': wall, 'cpu': cpu, 'targets_cpu': targets, 'idle': 1.0, 'processes': 500,
            'memory': {'pss_mb': 100.0, 'rss_mb': 200.0}, 'started': started}


def test_table_10_shows_the_handwritten_playbook_and_the_ratios_to_it():
    row = {'n': 10,
           'playbook': {'deploy': _run(20.0, 9.0, 6.0, {'controller': 400, 'targets': 1170}),
                        'noop': _run(10.0, 4.0, 2.0)},
           'script': {'deploy': _run(10.0, 6.0, 3.0, {'controller': 110, 'targets': 300}),
                      'noop': _run(10.0, 4.0, 2.0)},
           'handwritten': {'deploy': _run(16.0, 8.0, 3.0, {'controller': 350, 'targets': 290}),
                           'noop': _run(8.0, 5.0, 1.0)}}
    scale.ratios(row)
    scale.ratios(row, base='handwritten', suffix='_hw')
    assert row['deploy_wall_ratio'] == 2.0 and row['deploy_wall_hw_ratio'] == 1.25
    assert row['noop_targets_cpu_hw_ratio'] == 2.0
    text = scale.table({'forks': 50, 'rows': [row], 'warmup': 1.0,
                        'lab': {'hosts': 10, 'up_seconds': 1.0, 'up_steps': {}}})
    lines = text.splitlines()
    assert 'vs hand-written playbook' in lines[0]
    handwritten = [l for l in lines if l.split()[1:2] == ['handwritten']][0]
    assert handwritten.split()[2:8] == ['16.0', '8.0', '3.0', '8.0', '5.0', '1.0']
    assert [l for l in lines if 'ratio/hw' in l][0].split()[1:] == [
        '1.25x', '1.12x', '2.00x', '1.25x', '0.80x', '2.00x']
    assert 'handwritten deploy 35/29' in text and 'playbook deploy 40/117' in text


def test_a_table_without_the_third_deployer_reads_as_before():
    row = {'n': 10, 'playbook': {'deploy': _run(20.0, 9.0, 6.0), 'noop': _run(10.0, 4.0, 2.0)},
           'script': {'deploy': _run(10.0, 6.0, 3.0), 'noop': _run(10.0, 4.0, 2.0)}}
    scale.ratios(row)
    text = scale.table({'forks': 50, 'rows': [row], 'warmup': 1.0,
                        'lab': {'hosts': 10, 'up_seconds': 1.0, 'up_steps': {}}})
    assert 'handwritten' not in text and 'ratio/hw' not in text
    assert 'by control group' not in text
