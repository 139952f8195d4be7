"""The filter nixdeploy.fleet.deploy_stats: a host's registered deploy results
as the custom stats nixdeploy and nixdeploy_job_<id> (what AWX keeps)."""

import json
import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from tests.collection import BIN, ansible_env, collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.filter import deploy_stats as plugin  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _stats  # noqa: E402

deploy_stats = plugin.FilterModule().filters()['deploy_stats']

EVAL = {'changed': False, 'platform': 'nixos', 'out_path': '/nix/store/aaaa-nixos-system-web1'}
SKIPPED = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'}


def record(stats, host):
    assert set(stats['nixdeploy']) == {host}
    return stats['nixdeploy'][host]


def test_a_switched_host():
    results = {
        'eval': EVAL, 'build': {'changed': True}, 'copy': {'changed': True, 'copied_from': 'controller'},
        'keys_pre': SKIPPED,
        'activate': {'changed': True, 'goal': 'switch', 'platform': 'nixos',
                     'previous': {'generation': 41}, 'new': {'generation': 42}},
        'keys_post': SKIPPED,
    }
    stats = deploy_stats(results, 'web1', False, '1234')
    rec = record(stats, 'web1')
    assert (rec['outcome'], rec['before'], rec['after'], rec['platform']) == ('switched', 41, 42, 'nixos')
    assert not rec['failed'] and not rec['rolled_back'] and rec['phase'] == 'activate'
    assert rec['path'] == EVAL['out_path']
    # the same record under the job's own key, for sliced AWX jobs
    assert stats['nixdeploy_job_1234'] == {'web1': rec}


def test_check_mode_says_what_would_happen():
    activate = {'changed': True, 'goal': 'switch', 'previous': {'generation': 3}}
    rec = record(deploy_stats({'eval': EVAL, 'activate': activate}, 'web1', True, '1'), 'web1')
    assert rec['outcome'] == 'would switch' and not rec['failed']


def test_a_host_failed_at_build_names_its_phase():
    build = {'failed': True, 'changed': False, 'phase': 'build',
             'msg': 'web2: error: builder for /nix/store/bbbb-hello.drv failed with exit code 1'}
    # the role gives the tasks never reached as empty dicts
    results = {'eval': EVAL, 'build': build, 'copy': {}, 'keys_pre': {}, 'activate': {}, 'keys_post': {}}
    rec = record(deploy_stats(results, 'web2', False, '1'), 'web2')
    assert rec['failed'] and rec['phase'] == 'build' and not rec['rolled_back']
    assert rec['outcome'] == 'FAILED at build: error: builder for /nix/store/bbbb-hello.drv failed with exit code 1'


def test_a_rolled_back_host_is_a_failed_host():
    activate = {'failed': True, 'changed': False, 'phase': 'confirm', 'rolled_back': True,
                'connection_lost': True, 'rollback_reason': 'no confirmation within 30s',
                'msg': 'web3: rolled back: no confirmation within 30s', 'previous': {'generation': 17}}
    rec = record(deploy_stats({'eval': EVAL, 'copy': {'changed': True}, 'activate': activate},
                              'web3', False, '1'), 'web3')
    assert rec['failed'] and rec['rolled_back'] and rec['connection_lost'] and rec['phase'] == 'confirm'
    assert rec['outcome'] == 'FAILED: rolled back (no confirmation within 30s)'
    assert (rec['before'], rec['after']) == (17, 17)


def test_skipped_and_empty_results_are_passed_over():
    # --skip-tags activate: the activate task was skipped, the keys tasks never ran
    results = {'eval': EVAL, 'build': {'changed': False}, 'copy': {'changed': True},
               'keys_pre': {}, 'activate': SKIPPED}
    rec = record(deploy_stats(results, 'web1', False, '1'), 'web1')
    assert rec['outcome'] == 'copied (not activated)' and rec['phase'] == 'copy' and not rec['failed']


@pytest.mark.parametrize('job_id,key', [
    ('1234', 'nixdeploy_job_1234'),
    ('semaphore-7.1', 'nixdeploy_job_semaphore_7_1'),
])
def test_the_job_key_is_a_valid_variable_name(job_id, key):
    stats = deploy_stats({'eval': EVAL}, 'web1', False, job_id)
    assert set(stats) == {'nixdeploy', key}


@pytest.mark.parametrize('job_id', [None, ''])
def test_without_a_job_id_the_run_gives_the_key(monkeypatch, job_id):
    # the run's private temp dir, as ansible-playbook names it
    monkeypatch.setattr(_stats.C, 'DEFAULT_LOCAL_TMP', '/root/.ansible/tmp/ansible-local-4711ab.c_d/')
    stats = deploy_stats({'eval': EVAL}, 'web1', job_id=job_id)
    assert set(stats) == {'nixdeploy', 'nixdeploy_job_ansible_local_4711ab_c_d'}
    assert all(name.isidentifier() for name in stats)


def test_unknown_result_names_and_other_input_are_refused():
    with pytest.raises(AnsibleFilterError, match='unknown result names activation'):
        deploy_stats({'eval': EVAL, 'activation': {}}, 'web1')
    with pytest.raises(AnsibleFilterError, match='expects a dict'):
        deploy_stats([EVAL], 'web1')


def test_ansible_doc_reads_the_filter():
    proc = subprocess.run([os.path.join(BIN, 'ansible-doc'), '-t', 'filter', '--json',
                           'nixdeploy.fleet.deploy_stats'], env=ansible_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)['nixdeploy.fleet.deploy_stats']['doc']
    assert set(doc['options']) == {'_input', 'host', 'check_mode', 'job_id'}


# --- the same records from the phase actions' own results (record_stats)

ACTIVATE = {'changed': True, 'goal': 'switch', 'platform': 'nixos',
            'previous': {'generation': 41}, 'new': {'generation': 42}}


def test_each_phase_keeps_the_record_the_filter_makes_so_far():
    build = {'changed': True}
    copy = {'changed': True, 'copied_from': 'controller'}
    by_phase = {
        'build': ({'eval': EVAL}, build, {'eval': EVAL, 'build': build}),
        'copy': ({'eval': EVAL, 'build': build}, copy, {'eval': EVAL, 'build': build, 'copy': copy}),
        'activate': ({'eval': EVAL, 'build': build, 'copy': copy}, ACTIVATE,
                     {'eval': EVAL, 'build': build, 'copy': copy, 'activate': ACTIVATE}),
    }
    outcomes = {}
    for phase, (earlier, own, registered) in by_phase.items():
        kept = _stats.phase_stats(earlier, phase, own, 'web1', False, '7')
        assert kept['per_host'] is False and kept['aggregate'] is True
        assert kept['data'] == deploy_stats(registered, 'web1', False, '7'), phase
        outcomes[phase] = record(kept['data'], 'web1')['outcome']
    assert outcomes == {'build': 'built (not activated)', 'copy': 'copied (not activated)',
                        'activate': 'switched'}


def test_the_activate_record_reads_its_keys_from_its_own_result():
    own = dict(ACTIVATE, keys_pre={'changed': True, 'key_files': {}, 'removed': []})
    kept = _stats.phase_stats({'eval': EVAL}, 'activate', own, 'web1')
    assert kept['data']['nixdeploy'] == deploy_stats(
        {'eval': EVAL, 'keys_pre': own['keys_pre'], 'activate': own}, 'web1')['nixdeploy']


def test_a_phase_refuses_results_of_phases_after_it():
    with pytest.raises(ValueError, match='unknown result names activate'):
        _stats.phase_stats({'eval': EVAL, 'activate': ACTIVATE}, 'copy', {}, 'web1')


def test_results_given_by_name_are_the_hosts_variables():
    """The deploy role names its registered results (record_stats:
    {registered: {eval: deploy_eval}}); the action reads them, and
    awx_job_id for a missing job id."""
    variables = {'deploy_eval': EVAL, 'deploy_build': SKIPPED, 'awx_job_id': 7}
    registered = {'eval': 'deploy_eval', 'build': 'deploy_build', 'copy': 'deploy_copy'}
    results, job_id = _stats.recorded_results(
        {'registered': registered, 'results': None, 'job_id': None}, variables)
    assert results == {'eval': EVAL, 'build': SKIPPED, 'copy': {}} and job_id == 7
    kept = _stats.phase_stats(results, 'activate', ACTIVATE, 'web1', False, job_id)
    assert kept['data'] == deploy_stats({'eval': EVAL, 'build': SKIPPED, 'activate': ACTIVATE},
                                        'web1', False, 7)
    # results given as they are, and an explicit job id (even empty) stand
    assert _stats.recorded_results({'results': {'eval': EVAL, 'build': None}, 'job_id': ''},
                                   variables) == ({'eval': EVAL}, '')
    assert _stats.recorded_results({}, {}) == ({}, None)


def test_a_record_is_checked_before_the_phase_runs():
    """Each key names its phase and what is wrong; nothing is wrong with a
    variable that is not defined (the phase did not run)."""
    variables = {'deploy_eval': EVAL, 'note': 'text'}
    assert _stats.record_problems({'registered': {'eval': 'deploy_eval', 'build': None}},
                                  'build', variables) == []
    assert _stats.record_problems({'registered': {'eval': 'undefined_one'}}, 'copy', {}) == []
    assert _stats.record_problems({'results': {'eval': EVAL, 'build': {}}}, 'copy', {}) == []
    assert _stats.record_problems({'registered': {'copy': 'deploy_copy'}}, 'build', variables) == [
        'record_stats.registered.copy: copy is no phase before build (before it: eval)']
    assert _stats.record_problems({'results': {'build': {}}}, 'build', variables) == [
        'record_stats.results.build: build is no phase before build (before it: eval)']
    assert _stats.record_problems({'registered': {'eval': 'deploy eval'}}, 'copy', variables) == [
        "record_stats.registered.eval: 'deploy eval' is not a variable name"]
    assert _stats.record_problems({'registered': {'eval': 'note'}}, 'copy', variables) == [
        'record_stats.registered.eval: the variable note holds no registered result (str)']
