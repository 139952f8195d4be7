# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A report with failures, from a real report without any: for the render benchmark.

    python -m benchmarks._report_sample REAL.json OUTDIR [--failures 9]

Replays every host of a real run's report (its phases' times, store paths,
copy figures) through the callback's own ``Recorder`` as the results of the
collection's actions, and turns a few hosts into the failures a large fleet
sees: a build failed, hosts unreachable at copy, activations that failed and
rolled back, a host that did not confirm in time, a connection lost while
confirming. The report and page are written by the callback's own
``_report.write``. The timings are real, the failures are staged: a scale
run with real failures replaces it.
"""

import argparse
import json
import os
import sys

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import (  # noqa: E402
    _report, _report_html, _report_record)

ACTIONS = {'eval': 'nixdeploy.fleet.nix_eval', 'build': 'nixdeploy.fleet.nix_build',
           'copy': 'nixdeploy.fleet.nix_copy_closure', 'activate': 'nixdeploy.fleet.nix_activate'}
TASKS = {'eval': 'Evaluate the system of each host', 'build': 'Build the system of each host',
         'copy': 'Copy the closure to each host', 'activate': 'Activate and confirm the new system'}
# the failures, in the order they are handed out over the hosts picked
KINDS = ('rollback_exit', 'unreachable_copy', 'rollback_confirm', 'build', 'unreachable_copy',
         'confirm_lost', 'rollback_exit', 'unreachable_copy', 'rollback_confirm')
CONFIRM = 'no confirmation within 30s (is the host still reachable under the new system?)'
EXIT = 'the activation failed with exit code 4'
BUILD_ERROR = (u"build of system failed: error: builder for '%s' failed with exit code 1;\n"
               u"       last 10 log lines:\n"
               u"       > building '/nix/store/...-etc.drv'\n"
               u"       > error: The option `services.nginx.virtualHosts.\"www\".root' is used but not defined.\n"
               u"       For full logs, run 'nix log %s'.")
SWITCH_LOG = (u'stopping the following units: nginx.service\n'
              u'activating the configuration...\nsetting up /etc...\n'
              u'starting the following units: nginx.service\n'
              u'Job for nginx.service failed because the control process exited with error code.\n'
              u'warning: the following units failed: nginx.service')


def _phase(rec, name):
    for phase in rec['phases']:
        if phase['name'] == name:
            return phase
    return None


def _results(rec):
    """The results the host's actions returned, rebuilt from its record."""
    gen = rec['generation']
    evaluated = {'changed': False, 'platform': rec['platform'], 'system': rec['system'],
                 'out_path': rec['store_path'], 'drv_path': rec['drv_path'], 'flake': rec['flake']}
    evaluated.update(rec.get('eval') or {})
    activate = {'changed': rec['status'] == 'changed', 'platform': rec['platform'], 'goal': 'switch',
                'previous': gen['before'], 'new': gen['after'], 'rolled_back': False,
                'rollback_reason': None, 'confirmed': True, 'connection_lost': False,
                'phases': [p for p in rec['phases'] if p['name'] not in ('eval', 'build', 'copy')]}
    return {'eval': evaluated, 'build': {'changed': True, 'out_path': rec['store_path']},
            'copy': dict(rec.get('copy') or {}, changed=bool((rec.get('copy') or {}).get('paths_sent'))),
            'activate': activate}


def _fail(kind, rec, results):
    """Turn the host's results into failure ``kind``; the phases it reached."""
    host, activate = rec['host'], results['activate']
    if kind == 'build':
        results['build'] = {'failed': True, 'phase': 'build', 'connection_lost': False,
                            'msg': u'%s: ' % host + BUILD_ERROR % (rec['drv_path'], rec['drv_path'])}
        return ('eval', 'build')
    if kind == 'unreachable_copy':
        address = '10.%d.%d.%d' % (200, len(host) % 250, sum(map(ord, host)) % 250)
        results['copy'] = {'unreachable': True, 'connection_lost': True,
                           'msg': u'%s: connection lost: ssh: connect to host %s port 22: No route to host'
                                  % (host, address)}
        return ('eval', 'build', 'copy')
    attempted = dict(activate['new'], generation=(activate['previous']['generation'] or 0) + 1)
    activate.update(new=attempted, changed=True, failed=True)
    steps = [dict(p) for p in activate['phases']]
    end = steps[-1]['end']
    if kind == 'confirm_lost':
        activate.update(changed=False, confirmed=False, connection_lost=True, phase='confirm',
                        msg=u'%s: could not confirm: host unreachable (ssh: connect to host: Connection '
                            u'timed out); its watchdog rolls it back' % host)
        steps[-1]['outcome'] = 'unreachable'
    else:
        why = EXIT if kind == 'rollback_exit' else CONFIRM
        if kind == 'rollback_exit':
            steps = [dict(steps[0], outcome='failed')]
            end = steps[0]['end']
        else:
            steps[-1].update(outcome='failed', end=steps[-1]['start'] + 30.0)
            end = steps[-1]['end']
        steps.append({'name': 'rollback', 'start': end, 'end': end + 1.1, 'outcome': 'rolled_back'})
        activate.update(rolled_back=True, confirmed=False, rollback_reason=why, phase='activate'
                        if kind == 'rollback_exit' else 'confirm',
                        msg=u'%s: rolled back: %s\n%s' % (host, why, SWITCH_LOG) if kind == 'rollback_exit'
                        else u'%s: rolled back: %s' % (host, why))
    activate['phases'] = steps
    return ('eval', 'build', 'copy', 'activate')


def replay(real, failures=9):
    """The report of ``real``'s run with ``failures`` hosts failed (spread over the fleet)."""
    names = sorted(real['hosts'])
    step = max(len(names) // max(failures, 1), 1)
    picked = dict((names[(idx * step + step // 2) % len(names)], KINDS[idx % len(KINDS)])
                  for idx in range(failures))
    run = dict(real['runs'][0])
    rec_clock = [run['started']]
    recorder = _report_record.Recorder(clock=lambda: rec_clock[0])
    for name in names:
        rec = real['hosts'][name]
        results = _results(rec)
        phases = _fail(picked[name], rec, results) if name in picked else ('eval', 'build', 'copy',
                                                                           'activate')
        for phase in phases:
            span = _phase(rec, phase) or _phase(rec, 'confirm')
            if phase == 'activate':
                steps = results['activate']['phases']
                start, end = steps[0]['start'], steps[-1]['end']
            else:
                start, end = span['start'], span['end']
            uuid = '%s-%s' % (phase, name)
            result = results[phase]
            status = 'unreachable' if result.get('unreachable') else (
                'failed' if result.get('failed') else 'ok')
            recorder.task_start(name, uuid, ACTIONS[phase], when=start)
            recorder.task_result(name, uuid, ACTIONS[phase], status, result,
                                 task_name='nixdeploy.fleet.deploy : %s' % TASKS[phase], when=end)
    rec_clock[0] = run['ended']
    keep = dict((key, run[key]) for key in ('id', 'started', 'ended', 'limit', 'tags', 'skip_tags',
                                            'diff_mode', 'playbooks', 'inventory', 'forks', 'controller',
                                            'ansible_core', 'collection_version', 'flakes', 'awx',
                                            'semaphore', 'runner_ident') if key in run)
    report = recorder.build(keep, check_mode=run.get('check_mode'))
    report['collection_version'] = real.get('collection_version')
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks._report_sample', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('real', help="a real run's nixdeploy-report.json")
    parser.add_argument('outdir')
    parser.add_argument('--failures', type=int, default=len(KINDS))
    args = parser.parse_args(argv)
    with open(args.real) as handle:
        report = replay(json.load(handle), args.failures)
    os.makedirs(args.outdir, exist_ok=True)
    print('\n'.join(_report.write(report, args.outdir, html=_report_html.render)))


if __name__ == '__main__':
    main()
