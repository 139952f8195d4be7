# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
name: report
type: aggregate
short_description: Writes a JSON and an HTML report of each deploy
version_added: 1.0.0
description:
  - Keeps what every host did in the collection's deploy tasks (found by their action,
    M(nixdeploy.fleet.nix_eval), M(nixdeploy.fleet.nix_build), M(nixdeploy.fleet.nix_copy_closure),
    M(nixdeploy.fleet.nix_activate), never by task name) and at the end of the run writes
    C(nixdeploy-report-<run id>.json) and C(.html) into O(report_dir), and the same files again
    under the stable latest names C(nixdeploy-report.json) and C(nixdeploy-report.html) (copies,
    not symbolic links, so they read the same on every platform, artifact store and mail).
  - The run id is C(awx-<job id>), C(semaphore-<task id>), or the UTC start time and a random
    part (C(20261125T210512Z-1a2b3c4d)), so each run keeps its own report (O(unique_names)).
  - When a play of the collection starts, the latest names are replaced by a report that says
    the run started and has no result yet; a run that ends before any host was deployed (no host
    selected, a failure before the first phase) leaves one that says so, never an older run's
    result looking current. (A run Ansible ends before the playbook starts, such as an inventory
    that does not parse with C(unparsed_is_failed), loads no callback and writes nothing.) Each report's run says what it was (C(mode) V(deploy), V(check),
    V(rollback), V(rollback-check)).
  - A run stopped by SIGINT (Ctrl-C) or SIGTERM writes its report as an interrupted run (C(state) V(interrupted),
    C(interrupted_by)) under the latest names and its own, each host it started with what it had reached then
    (C(interrupted)); see docs/report.md.
  - The JSON has, per host, the platform, the phases (eval, build, copy, activate, confirm and
    the later sub-phases of the activate task) with start, end and outcome, the paths and bytes
    copied, generation and store path before and after, the closure difference, the outcome and
    the rollback reason; per run the selection (C(--limit)), the flake revision, the collection
    version and totals. Its schema is documented with a version field (C(schema_version)); see
    C(docs/report.md) in the collection.
  - The HTML page is self-contained (inline CSS, no script, nothing fetched). It shows a timeline
    bar per host coloured by outcome, the failed and rolled-back hosts first with their reason,
    the closure difference per host and the totals.
  - Reports of several runs (the slices of an AWX job) merge with
    C(python3 plugins/plugin_utils/report/_report.py merge -o DIR a.json b.json ...).
  - A failure to write the report is a warning; it never fails the run.
author:
  - nixdeploy.fleet contributors (@nixdeploy)
requirements:
  - Enabled in C(callbacks_enabled) (C(ANSIBLE_CALLBACKS_ENABLED=nixdeploy.fleet.report)).
options:
  report_dir:
    description:
      - The folder the report files are written to (made when missing).
      - Default, when ansible-runner runs the playbook (AWX, AAP, ansible-runner directly), the
        job's artifact folder (E(AWX_ISOLATED_DATA_DIR)); otherwise the current folder.
    type: path
    env:
      - name: NIXDEPLOY_REPORT_DIR
    ini:
      - section: callback_nixdeploy_report
        key: report_dir
  html:
    description: Also write the HTML page.
    type: bool
    default: true
    env:
      - name: NIXDEPLOY_REPORT_HTML
    ini:
      - section: callback_nixdeploy_report
        key: html
  unique_names:
    description:
      - Write C(nixdeploy-report-<run id>.json) and C(.html) beside the latest names, so that runs
        sharing one O(report_dir) keep their own reports (a project folder, a Semaphore project,
        a cron job). The run id is C(awx-<job id>), C(semaphore-<task id>), or the UTC start time
        and a random part.
      - V(false) writes the latest names only (each run replaces the one before).
    type: bool
    default: true
    env:
      - name: NIXDEPLOY_REPORT_UNIQUE_NAMES
    ini:
      - section: callback_nixdeploy_report
        key: unique_names
  flake_metadata:
    description:
      - Each flake deployed is named by what its evaluation pinned and evaluated (the
        C(source) of the hosts' C(nixdeploy.fleet.nix_eval) results), never by a second look.
      - For a flake no result names so (no host evaluated it), ask Nix for its revision
        (C(nix flake metadata --json --offline), which reads what the run already fetched).
    type: bool
    default: true
    env:
      - name: NIXDEPLOY_REPORT_FLAKE_METADATA
    ini:
      - section: callback_nixdeploy_report
        key: flake_metadata
  nix_bin:
    description: The C(nix) command used for O(flake_metadata).
    type: str
    default: nix
    env:
      - name: NIXDEPLOY_REPORT_NIX_BIN
    ini:
      - section: callback_nixdeploy_report
        key: nix_bin
'''

import json
import os
import socket
import time
import uuid

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible import constants as C
from ansible.release import __version__ as ansible_version

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    playbook_file, result_host, result_task, role_path, task_uuid)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixOptions, nix_json)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_output import flake_metadata
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import (
    _report, _report_record, _report_status)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report_html import render
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import _status_eval
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _interrupt
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._outcome import (
    action_phase, result_data, task_action)

# extra vars AWX (and Semaphore) give every job; kept in the report to find the job again
AWX_VARS = ('awx_job_id', 'awx_job_template_name', 'awx_workflow_job_id',
            'awx_workflow_job_name', 'awx_project_revision', 'awx_job_launch_type')


# this collection's folder (roles/ is in it)
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def collection_version():
    """This collection's version: MANIFEST.json when installed, galaxy.yml in a checkout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        with open(os.path.join(root, 'MANIFEST.json')) as handle:
            return json.load(handle)['collection_info']['version']
    except (OSError, IOError, ValueError, KeyError):
        pass
    try:
        with open(os.path.join(root, 'galaxy.yml')) as handle:
            for line in handle:
                if line.startswith('version:'):
                    return line.split(':', 1)[1].strip().strip('\'"')
    except (OSError, IOError):
        pass
    return None


def _actions(blocks):
    """Every task action of ``blocks`` (and the blocks inside them)."""
    for block in blocks or ():
        for name in ('block', 'rescue', 'always'):
            for item in getattr(block, name, None) or ():
                if hasattr(item, 'block'):
                    yield from _actions([item])
                else:
                    yield task_action(item)


def uses_collection(play):
    """Whether ``play`` runs something of this collection: one of its roles,
    or a task whose action is one of its modules (a callback enabled for every
    playbook of a project writes nothing for the others)."""
    try:
        for role in play.get_roles():
            path = role_path(role)
            if 'nixdeploy.fleet.' in role.get_name() or \
                    os.path.join('nixdeploy', 'fleet', 'roles') in path or \
                    os.path.dirname(os.path.dirname(path)) == COLLECTION_ROOT:
                return True
        for action in _actions(list(play.pre_tasks) + list(play.tasks) + list(play.post_tasks)):
            if action and (action_phase(action) or str(action).startswith('nixdeploy.fleet.')):
                return True
    except Exception:  # pylint: disable=broad-except
        # a play this reading does not know: no early report, never a failed run
        return False
    return False


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'nixdeploy.fleet.report'
    CALLBACK_NEEDS_ENABLED = True
    # ansible-core 2.22.0b1 asked result-reading callbacks to say so; from
    # 2.22.0b2 results always come masked and this is ignored
    ANSIBLE_SUPPORTS_MASKING = True

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display=display)
        self._recorder = _report_record.Recorder()
        self._status = _report_status.StatusSection()
        self._playbooks = []
        self._extra_vars = {}
        self._play_check_mode = False
        self._run_name = None     # the run id, fixed when first asked
        self._announced = False   # the latest names say this run started
        _interrupt.listen(self)

    # ------------------------------------------------------------ run
    def v2_playbook_on_start(self, playbook):
        name = playbook_file(playbook)
        if name:
            self._playbooks.append(os.path.basename(name))
        try:
            plays = list(playbook.get_plays())
        except Exception:  # pylint: disable=broad-except
            plays = []
        if plays:
            # the job's variables (awx_job_id ...) name the run: read before
            # the run id is made for the early report
            self._read_extra_vars(plays[0])
        if not self._announced and any(uses_collection(play) for play in plays):
            # before its first play: should the run end with no host
            # deployed, the latest names never show an older run's result
            self._announced = True
            self._write_empty('running')

    def _read_extra_vars(self, play):
        try:
            self._extra_vars = dict(play.get_variable_manager().extra_vars)
        except Exception:  # pylint: disable=broad-except
            self._extra_vars = {}

    def v2_playbook_on_play_start(self, play):
        self._play_check_mode = self._play_check_mode or bool(getattr(play, 'check_mode', False))
        self._read_extra_vars(play)
        if not self._announced and uses_collection(play):
            # a play the playbook's own reading missed (imported later)
            self._announced = True
            self._write_empty('running')

    # ------------------------------------------------------------ tasks
    def v2_runner_on_start(self, host, task):
        self._recorder.task_start(host.get_name(), task_uuid(task), task_action(task))

    def _result(self, status, result):
        task = result_task(result)
        host = result_host(result).get_name()
        # a status read that evaluated its host holds that evaluation's result too
        for action, own, data in _status_eval.results_of(task_action(task), status,
                                                         result_data(result)):
            self._status.take(host, action, own, data)
            self._recorder.task_result(host, task_uuid(task), action, own,
                                       _report_record.mark_rollback(task, dict(data)),
                                       task_name=task.get_name())

    def v2_runner_on_ok(self, result):
        self._result('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result('failed', result)

    def v2_runner_on_unreachable(self, result):
        self._result('unreachable', result)

    def v2_runner_on_skipped(self, result):
        self._result('skipped', result)

    # ------------------------------------------------------------ the report
    def v2_playbook_on_stats(self, stats):
        _interrupt.forget(self)
        if not self._recorder.deployed():
            if self._announced:
                # a play of the collection ran and deployed no host: the
                # latest names say so (written as the run started)
                paths = self._write_empty('no_hosts')
                if paths:
                    self._display.display('nixdeploy report: no host deployed: %s'
                                          % ', '.join(paths))
            return
        try:
            paths = self._write()
        except Exception as exc:  # pylint: disable=broad-except
            # a report is never a reason to fail a deploy
            self._display.warning('nixdeploy.fleet.report: could not write the report: %s' % exc)
            return
        self._display.display('nixdeploy report: %s' % ', '.join(_report.latest_first(paths)))

    def interrupted(self, signal_name):
        """The run is stopped by ``signal_name`` (called by _interrupt.py
        before ansible-playbook ends it, which skips v2_playbook_on_stats):
        the report of an interrupted run, every host with what it had
        reached, under the latest names and the run's own."""
        _interrupt.forget(self)
        if not self._announced and not self._recorder.deployed():
            return
        stopped = {'signal': signal_name, 'at': time.time(), 'base_dir': C.DEFAULT_LOCAL_TMP}
        try:
            paths = self._write(stopped)
        except Exception as exc:  # pylint: disable=broad-except
            self._display.warning('nixdeploy.fleet.report: could not write the report: %s' % exc)
            return
        self._display.display('nixdeploy report (interrupted run): %s' % ', '.join(
            _report.latest_first(paths)))

    def _check_mode(self):
        return bool(context.CLIARGS.get('check')) or self._play_check_mode

    def _write(self, interrupted=None):
        run = self._run(ask_flakes=interrupted is None)
        report = self._status.add_to(self._recorder.build(
            run, check_mode=self._check_mode(), interrupted=interrupted))
        html = _report_status.page(render) if self.get_option('html') else None
        return _report.write(report, self._report_dir(),
                             names=_report.report_names(run['id'], self.get_option('unique_names')),
                             html=html)

    def inventory_failed(self):
        """Called by the Nix inventory plugin when its inventory does not
        parse in an ansible-playbook run (which then stops before any
        callback runs): the latest names say so, not an older run's result."""
        self._write_empty('inventory_failed')

    def _write_empty(self, state):
        """The latest names replaced by a report with no host (``state``:
        running, no_hosts); a warning when it cannot be written."""
        try:
            report = self._recorder.empty(self._run(), state, check_mode=self._check_mode())
            html = render if self.get_option('html') else None
            return _report.write(report, self._report_dir(), names=(_report.BASENAME,), html=html)
        except Exception as exc:  # pylint: disable=broad-except
            self._display.warning('nixdeploy.fleet.report: could not write the report: %s' % exc)
            return []

    def _report_dir(self):
        configured = self.get_option('report_dir')
        if configured:
            return configured
        # ansible-runner (and so AWX/AAP) names the job's artifact folder here
        return os.environ.get('AWX_ISOLATED_DATA_DIR') or os.getcwd()

    def _run(self, ask_flakes=True):
        """The run's metadata; ``ask_flakes``: Nix may be asked about a
        flake no result describes (not while a signal stops the run)."""
        cli = context.CLIARGS
        extra = self._extra_vars
        awx = dict((key, extra[key]) for key in AWX_VARS if key in extra)
        semaphore = ((extra.get('semaphore_vars') or {}).get('task_details') or {}) \
            if isinstance(extra.get('semaphore_vars'), dict) else {}
        semaphore = dict((key, semaphore[key]) for key in ('id', 'url', 'username')
                         if key in semaphore)
        if self._run_name is None:
            self._run_name = self._run_id(awx, semaphore)
        return {
            'id': self._run_name,
            'started': round(self._recorder.started, 3),
            'limit': cli.get('subset') or None,
            'tags': sorted(t for t in (cli.get('tags') or ()) if t != 'all'),
            'skip_tags': sorted(cli.get('skip_tags') or ()),
            'diff_mode': bool(cli.get('diff')),
            'playbooks': list(self._playbooks),
            'inventory': [os.path.basename(str(i).rstrip('/')) for i in (cli.get('inventory') or ())],
            'forks': cli.get('forks'),
            'controller': socket.gethostname(),
            'ansible_core': ansible_version,
            'collection_version': collection_version(),
            'flakes': self._flakes(ask_flakes),
            'awx': awx or None,
            'semaphore': semaphore or None,
            'runner_ident': os.path.basename(os.environ['AWX_ISOLATED_DATA_DIR'].rstrip('/'))
            if os.environ.get('AWX_ISOLATED_DATA_DIR') else None,
        }

    def _run_id(self, awx, semaphore):
        if awx.get('awx_job_id') is not None:
            return 'awx-%s' % awx['awx_job_id']
        if semaphore.get('id') is not None:
            return 'semaphore-%s' % semaphore['id']
        # the run's start, UTC, and a random part: runs sort by name
        return '%s-%s' % (time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(self._recorder.started)),
                          uuid.uuid4().hex[:8])

    def _flakes(self, ask=True):
        """Each flake deployed, as the run evaluated it: the provenance the
        evaluation's own pin gave its hosts' results (``source``); only a
        flake no result names so is asked about (``flake_metadata``)."""
        evaluated = {}
        for log in self._recorder.hosts.values():
            ref = log.get('eval').get('flake')
            if ref and not evaluated.get(ref):
                evaluated[ref] = log.get('eval').get('source') or None
        refs = sorted(evaluated)
        flakes = []
        opts = NixOptions(nix_bin=self.get_option('nix_bin'))
        for ref in refs:
            if evaluated[ref] or not ask or not self.get_option('flake_metadata'):
                flakes.append(_report_record.flake_record(ref, evaluated[ref]))
                continue
            try:
                metadata = flake_metadata(nix_json(opts, 'flake metadata',
                                                   ['--json', '--offline', ref],
                                                   'flake metadata of %s' % ref, timeout=60))
            except NixError as exc:
                self._display.vvv('nixdeploy.fleet.report: %s' % exc)
                metadata = None
            flakes.append(_report_record.flake_record(ref, metadata))
        return flakes
