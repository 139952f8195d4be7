# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
name: summary
type: aggregate
short_description: One summary line per host after each deploy batch, and progress while a phase runs long
version_added: 1.0.0
description:
  - Follows the results of the collection's deploy tasks (found by their action, M(nixdeploy.fleet.nix_eval),
    M(nixdeploy.fleet.nix_build), M(nixdeploy.fleet.nix_copy_closure), M(nixdeploy.fleet.nix_keys),
    M(nixdeploy.fleet.nix_activate), never by task name) on any strategy.
  - At the end of each play batch (each C(serial) batch) prints a C(NIXDEPLOY SUMMARY) with one line per host
    of the batch (before the next batch's PLAY header with the stdout callback C(nixdeploy.fleet.console), after
    it with any other, which cannot tell when a batch ends), platform, generation before and after, and the
    outcome (switched, unchanged, rolled back and why, failed at which phase); C((host key unchecked)) after it when a phase went on although ssh did not
    check the host's key (the host's C(nix_host_key_unchecked)). The deploy role keeps the same records as the custom stat C(nixdeploy) (a
    successful host's in its phase tasks' own results, a failed host's by M(ansible.builtin.set_stats) in its
    C(rescue)), so AWX and ansible-runner see them without this callback.
  - While a task of the collection runs longer than O(progress_interval) seconds on some hosts, prints every
    O(progress_interval) seconds a progress line for the play batch (see O(progress_interval)).
  - When a batch does not start because the one before failed too many hosts (the role's
    C(nix_max_fail_percentage)), or every host of a batch failed, says that no further batch starts, and at
    the end how many hosts were not deployed, naming those of the batch that did not start (at most 10; the
    rest, and the hosts of later batches, which never ran, are counted).
  - Host names and what targets said reach the terminal escaped (control characters, C(ESC), newlines, bidi
    controls shown as C(\xNN) or C(\uNNNN)), so no flake or target text can move the cursor, erase lines,
    write the clipboard or print a line of its own.
  - "A run of the publish role ends saying what it did with the channel refs (C(channel refs: 2 moved, 1 new))."
  - At the end, names the hosts the login probe could not reach (M(nixdeploy.fleet.nix_eval)'s
    O(nixdeploy.fleet.nix_eval#module:unreachable)), each with why, and keeps their names in O(unreachable_file).
  - On SIGINT (Ctrl-C) or SIGTERM, prints C(NIXDEPLOY SUMMARY (interrupted by SIGINT)) with each host's outcome, an
    activation under way (it goes on and, unconfirmed, rolls back by itself within its own bound) or the phase
    it stopped at, and a line that counts the hosts; ansible-core then exits as it does (99 for SIGINT).
  - A host whose activation waits for another run's lock says in its progress line what that run is at (its
    activation, its unconfirmed activation, its rollback, another switch) and the seconds it waits at most.
  - At the end of the job, waits until the evaluators of M(nixdeploy.fleet.nix_eval) have kept their records
    for reuse across commits (at most 60 s; past 2 s it says so), so that a job whose last task evaluates keeps
    them where nothing outlives ansible-playbook (an execution environment's container).
  - C(-e nix_summary=false) silences the summary lines (an extra var; the callback reads no inventory, play
    or role variable).
author:
  - nixdeploy.fleet contributors (@nixdeploy)
requirements:
  - Enabled in C(callbacks_enabled) (C(ANSIBLE_CALLBACKS_ENABLED=nixdeploy.fleet.summary)).
options:
  progress_interval:
    description:
      - Seconds between progress lines, and how long a task runs before a line is shown; V(0) turns them off.
      - 'A line starts with C(nixdeploy: progress:) and says, for each phase a host of the play batch started,
        how many hosts of the batch are done with it and how many of those failed, how many still run it and
        which, the longest running first, each with the seconds it has run; at most 5 names a phase, the rest
        counted. docs/concepts.md shows one.'
      - A host whose M(nixdeploy.fleet.nix_activate) runs its health checks or awaits its confirmation (the
        magic rollback window) says C(health checks) or C(awaiting confirmation) after its seconds, with how
        long it has been at that step.
    type: float
    default: 10
    env:
      - name: NIXDEPLOY_PROGRESS_INTERVAL
    ini:
      - section: callback_nixdeploy_summary
        key: progress_interval
  unreachable_file:
    description:
      - The file, relative to the current folder, that lists the hosts the login probe of
        M(nixdeploy.fleet.nix_eval) could not reach, one name a line, for C(-l @nixdeploy-unreachable.txt)
        (as Ansible's retry files). Each run adds the hosts it could not reach and takes out the ones it
        reached; the file is removed when none is left. An empty value writes no file.
      - A path that holds anything but a regular file of the user's own (a symbolic link, a folder, a fifo,
        another user's file, a file with a second name) is neither read nor written, with a warning.
    type: str
    default: nixdeploy-unreachable.txt
    env:
      - name: NIXDEPLOY_UNREACHABLE_FILE
    ini:
      - section: callback_nixdeploy_summary
        key: unreachable_file
'''

import threading
import time

from ansible import constants as C
from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    result_host, result_task)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import _interrupted, _retry
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import _status_eval
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status._status_view import StatusRun
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report_record import (
    mark_rollback, outcome_record, rolls_back)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _batch_end, _interrupt, _job_end
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._closing_lines import (
    EvaluationTally, count_channel, dry_lines, hosts_word, named, totals_line, wrapped_summary)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._outcome import (
    HostOutcome, action_phase, result_data, task_action)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._progress import (
    SHOWN_STEPS, BatchProgress, read_step_record)


def _truthy(value):
    return str(value).strip().lower() not in ('false', 'no', '0', 'off', 'n', 'f')


def progress_line(progress, now, interval, base_dir=None):
    """The progress line of the batch (``progress``: a ``BatchProgress``),
    or None while no task has run ``interval`` seconds; a host whose
    activation is at a step a person waits on (its health checks, its
    confirmation) says which, read from the run's step files under
    ``base_dir`` (none: no steps)."""
    if not progress.long_running(now, interval):
        return None
    steps = {}
    for host, started in progress.running.get('activate', {}).items() if base_dir else ():
        found = read_step_record(base_dir, host, started)
        if found and found['step'] in SHOWN_STEPS:
            steps[host] = (found['step'], found['since'], found['until'])
    return progress.line(now, interval, steps)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'nixdeploy.fleet.summary'
    CALLBACK_NEEDS_ENABLED = True
    # ansible-core 2.22.0b1 asked result-reading callbacks to say so; from
    # 2.22.0b2 results always come masked and this is ignored
    ANSIBLE_SUPPORTS_MASKING = True

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display=display)
        self._lock = threading.RLock()  # the interrupt handler may come while this thread holds it
        self._outcomes = {}      # host -> HostOutcome, this batch
        self._progress = BatchProgress()  # who started and ended each phase, this batch
        self._dry = {}           # host -> what its dry activation would do, this batch
        self._check_mode = False
        self._shown = True
        self._stops = []         # why batches did not start (said once each)
        self._seen = set()       # hosts that reached a deploy task, every batch
        self._stopped = set()    # hosts of batches that did not start
        self._play_hosts = 0     # hosts of the play, all batches (from nix_eval)
        self._last_batch = None  # (hosts, failed) of the last batch summarised
        self._counts = {}        # status -> hosts, every batch (the closing totals line)
        self._evaluations = EvaluationTally()  # how each host's evaluation was answered
        self._unreached = {}     # host -> why the probe could not reach it
        self._reached = set()    # hosts the probe reached
        self._status = StatusRun()  # what nixdeploy.fleet.status read, every batch
        self._ticker = None
        self._done = threading.Event()
        _batch_end.listen(self)
        _interrupt.listen(self)

    # ------------------------------------------------------------ run
    def batch_over(self):
        """The console, before it prints the next batch's PLAY header."""
        self._summarise()

    def v2_playbook_on_play_start(self, play):
        # a play starts once per serial batch: the batch before is over
        # (already summarised when the console told us so)
        self._summarise()
        try:
            extra = play.get_variable_manager().extra_vars
        except Exception:  # pylint: disable=broad-except
            extra = {}
        self._shown = _truthy(extra.get('nix_summary', True))
        self._check_mode = bool(getattr(play, 'check_mode', False)) or \
            bool(context.CLIARGS.get('check'))
        self._start_ticker()

    def v2_playbook_on_stats(self, stats):
        self._done.set()
        _batch_end.forget(self)
        _interrupt.forget(self)
        self._summarise()
        evaluated = self._evaluations.line()
        if evaluated and self._shown:
            self._display.display(evaluated)
        line = self._status.totals_line() or totals_line(self._counts, self._check_mode)
        if line and self._shown:
            failed = any(self._counts.get(s) for s in ('failed', 'rolled_back', 'unreachable'))
            self._display.display(line, color='red' if failed else None)
        self._retry_file()
        left = self._play_hosts - len(self._seen)
        if self._stops and left > 0:
            # the hosts of the batches that did not start run what they ran
            self._display.display('nixdeploy: %s not deployed: no batch started for them%s'
                                  % (hosts_word(left), named(self._stopped - self._seen, left)),
                                  color='red')
        elif self._last_batch:
            hosts, failed = self._last_batch
            if hosts and failed == hosts and left > 0:
                self._display.display('nixdeploy: every host of the last batch failed: no further '
                                      'batch starts (%s not deployed)' % hosts_word(left), color='red')
        # in an execution environment nothing outlives ansible-playbook
        _job_end.wait_at_job_end(self._display.display, self._display.warning)

    def interrupted(self, signal_name):
        """Stopped by ``signal_name`` (_interrupt.py): what each host had reached,
        what comes next for an activation under way, the hosts not reached."""
        self._done.set()
        _batch_end.forget(self)
        with self._lock:
            outcomes, self._outcomes = self._outcomes, {}
            progress, self._progress = self._progress.copy(), BatchProgress()
        records, reached, started = _interrupted.batch_records(
            outcomes, progress.running, C.DEFAULT_LOCAL_TMP, self._check_mode, self._counts)
        if not (records or reached or self._play_hosts):
            return   # no task of the collection ran (another playbook): nothing to say
        if self._shown:
            self._display.banner('NIXDEPLOY SUMMARY (interrupted by %s)' % signal_name)
            for rec in records:
                for line in wrapped_summary(rec):
                    self._display.display(line, color='red' if rec['failed'] else None)
        self._display.display(_interrupted.closing_line(
            signal_name, reached, max(self._play_hosts - len(self._seen | started), 0)), color='red')
        self._retry_file()

    def _retry_file(self):
        """Name the hosts the probe could not reach, and keep them in the
        unreachable file for ``-l @file`` (_retry.py)."""
        path = self.get_option('unreachable_file')
        try:
            listed = _retry.update(path, self._unreached, self._reached) if path else None
        except (IOError, OSError) as exc:
            # the next run's -l @file would read an old list: said whether
            # or not a host is unreachable now
            listed = None
            self._display.warning('nixdeploy: the file of unreachable hosts %s was left as it '
                                  'is: %s' % (printable(path), printable(str(exc))))
        line = _retry.line(self._unreached, path if listed else None)
        if line and self._shown:
            self._display.display(line, color='red')

    # ------------------------------------------------------------ tasks
    def v2_runner_on_start(self, host, task):
        phase = action_phase(task_action(task))
        if phase:
            with self._lock:
                self._progress.start(host.get_name(), phase, time.time())
                if phase == 'activate' and rolls_back(task):
                    self._progress.call(host.get_name(), phase, 'rollback')

    def _result(self, result, status):
        task = result_task(result)
        # a status read that evaluated its host holds that evaluation's result too
        for action, own, data in _status_eval.results_of(task_action(task), status,
                                                         result_data(result)):
            self._one_result(result_host(result).get_name(), task, action, own, data)

    def _one_result(self, host, task, action, status, data):
        with self._lock:
            if self._status.take(action, host, status, data):
                return
        phase = action_phase(action)
        if not phase:
            with self._lock:
                count_channel(self._counts, action, status, data)
            return
        data = mark_rollback(task, dict(data))
        with self._lock:
            if data.get('stopped'):
                self._progress.forget(host)
                self._stopped.add(host)
                # this batch does not start: nothing of it is summarised;
                # the reason names hosts, shown printable
                if data.get('msg') and data['msg'] not in self._stops:
                    self._stops.append(data['msg'])
                    self._display.display(printable(data['msg']), color='red')
                return
            self._progress.end(host, phase, status)
            self._seen.add(host)
            if phase == 'eval' and data.get('unreachable_at'):
                self._unreached[host] = data.get('msg') or ''
            elif phase == 'eval' and (data.get('probe') or {}).get('address'):
                self._reached.add(host)
            if phase == 'eval' and data.get('play_hosts'):
                self._play_hosts = int(data['play_hosts'])
            if phase == 'eval':
                self._evaluations.take(data)
            self._outcomes.setdefault(host, HostOutcome(host)).add(
                phase, data, status)
            if phase == 'activate' and isinstance(data.get('dry_activate'), list):
                self._dry[host] = data['dry_activate']

    def v2_runner_on_ok(self, result):
        self._result(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, 'failed')

    def v2_runner_on_unreachable(self, result):
        self._result(result, 'unreachable')

    def v2_runner_on_skipped(self, result):
        self._result(result, 'skipped')

    # ------------------------------------------------------------ output
    def _summarise(self):
        with self._lock:
            outcomes, self._outcomes = self._outcomes, {}
            self._progress = BatchProgress()
            dry, self._dry = self._dry, {}
            status = self._status.batch_lines(
                [host for host in outcomes if host in self._unreached])
        if status:
            # a status run: its hosts' classes, not their evaluation's outcome
            if self._shown:
                self._display.banner('NIXDEPLOY STATUS')
                for line in status:
                    self._display.display(printable(line))
            return
        if not outcomes:
            return
        records = [outcome_record(outcomes[name], self._check_mode) for name in sorted(outcomes)]
        self._last_batch = (len(records), len([r for r in records if r['failed']]))
        for rec in records:
            status = rec['status']
            if status == 'unchanged' and \
                    (outcomes[rec['host']].results.get('activate') or {}).get('would_change'):
                status = 'would_change'
            self._counts[status] = self._counts.get(status, 0) + 1
            if status == 'unchanged' and outcomes[rec['host']].changed_before():
                self._counts['changed_before'] = self._counts.get('changed_before', 0) + 1
            if rec['status'] == 'failed' and rec.get('connection_lost'):
                self._counts['connection_lost'] = self._counts.get('connection_lost', 0) + 1
        if not self._shown:
            return
        self._display.banner('NIXDEPLOY SUMMARY')
        # {cause: the first host it is printed under}
        first = {}
        for rec in records:
            # the same words where the same phase failed the same way
            cause = (rec['summary_head'].split(': ', 1)[0], rec.get('msg')) \
                if rec.get('summary_head') and rec.get('msg') else None
            same_as = first.get(cause) if cause else None
            if cause and same_as is None:
                first[cause] = rec['host']
            # one display call a line: a message holds no newline of its own
            for line in wrapped_summary(rec, same_as) + dry_lines(dry.get(rec['host'])):
                self._display.display(line, color='red' if rec['failed'] else None)

    def _start_ticker(self):
        interval = float(self.get_option('progress_interval') or 0)
        if interval <= 0 or self._ticker is not None:
            return

        def tick():
            last = time.time()
            # wakes once a second; speaks at most once per interval
            while not self._done.wait(1.0):
                now = time.time()
                if now - last < interval:
                    continue
                with self._lock:
                    progress = self._progress.copy()
                # the step files are read outside the lock: results go on
                line = progress_line(progress, now, interval, C.DEFAULT_LOCAL_TMP)
                if line:
                    last = now
                    self._display.display(line)

        self._ticker = threading.Thread(target=tick, name='nixdeploy-progress')
        self._ticker.daemon = True
        self._ticker.start()
