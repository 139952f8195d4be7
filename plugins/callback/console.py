# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
name: console
type: stdout
short_description: Ansible's default screen output, saying each deploy failure once
version_added: 1.1.0
description:
  - >-
    The stdout callback C(ansible.builtin.default) with a few changes for deploys; everything else (play and task
    headers, C(ok:) and C(changed:) lines, diffs, warnings, the PLAY RECAP, the default's options) stays as the
    default has it. Set it with C(stdout_callback = nixdeploy.fleet.console) in C(ansible.cfg); the plain
    C(default) callback works with the collection as well.
  - >-
    A failed task of the collection (M(nixdeploy.fleet.nix_eval), M(nixdeploy.fleet.nix_build) and the other
    modules) is one line per host, C(fatal: [web1] at build: <message>), the message as the module gave it (without
    the host's name in front, which the line already shows), its further lines indented under it. ansible-core
    2.19 and later show a failed task twice, as an C([ERROR]: Task failed) block and again in the C(fatal:) line's
    JSON; this line replaces both. C(-v) shows the failure as the default does.
  - >-
    The same message on several hosts of one task (a cause the whole batch shares, such as a wrong C(nix_bin))
    is said once for the task, naming the hosts, C(fatal: [mac, web1, web2] at eval: ...). Hosts whose same failure
    comes later, after the line was printed, get a short line, C(the same as for web1 above).
    The console waits O(group_wait) seconds without a new failure before it prints one, to gather the hosts.
  - >-
    The deploy role's rescue prints nothing of its own without C(-v) (the task that keeps a failed host's outcome as
    the custom stat C(nixdeploy), and the one that keeps the host failed with C(the eval phase failed: see its error
    above)): the host's cause is printed once, where it happened. The host still counts as failed in the PLAY
    RECAP, the exit code, the C(NIXDEPLOY SUMMARY) and the report.
  - >-
    The failure of a task that is not the collection's keeps ansible-core's C([ERROR]) block (its message, where
    the task is) and its C(fatal:) line, which then leaves out the C(msg) the block already said.
  - >-
    A task's header is printed once per play batch, also on the C(host_pinned) and C(free) strategies (which
    start a task once per host, and the default repeats the header each time); a result that comes after another
    task's header names its task, C(changed: [web2 at build]).
  - >-
    With the callback C(nixdeploy.fleet.summary) enabled, the C(NIXDEPLOY SUMMARY) of a C(serial) batch is printed
    before the next batch's PLAY header (ansible-core tells a stdout callback of the next batch first; the default
    prints that header before any other callback hears the batch is over).
  - >-
    Skipped hosts are not listed unless C(-v) (or O(display_skipped_hosts=true)).
  - >-
    Host names and the modules' messages reach the terminal escaped (control characters, C(ESC), newlines, bidi
    controls shown as C(\xNN) or C(\uNNNN)), as the C(nixdeploy.fleet.summary) callback shows them.
  - >-
    AWX, ansible-runner and ansible-navigator's jobs use a stdout callback of their own; this one changes nothing of
    their event stream, nor of the custom stat C(nixdeploy).
author:
  - nixdeploy.fleet contributors (@nixdeploy)
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - Set as the stdout callback (C(stdout_callback = nixdeploy.fleet.console) in C(ansible.cfg), or
    C(ANSIBLE_STDOUT_CALLBACK=nixdeploy.fleet.console)).
options:
  display_skipped_hosts:
    description:
      - Toggle to list skipped hosts under a task.
      - Off here (the default callback has it on); C(-v) lists them too.
    type: bool
    default: false
  group_wait:
    description:
      - Seconds without a new failure of the same task and message before the console prints the failure, with
        every host it hit so far; at most five times as long after the first one. V(0) prints each failure at
        once, one line a host.
    type: float
    default: 1
    env:
      - name: NIXDEPLOY_CONSOLE_GROUP_WAIT
    ini:
      - section: callback_nixdeploy_console
        key: group_wait
'''


import re
import threading
import time

from ansible import constants as C
from ansible.plugins.callback.default import CallbackModule as DefaultCallback

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    forget_task_banner, task_uuid)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _batch_end
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._outcome import (
    action_phase, task_action)

COLLECTION = 'nixdeploy.fleet.'
# the deploy role's rescue keeps the host failed with this message (roles/deploy/tasks/main.yml)
RERAISE = re.compile(r'^the \S+ phase failed: see its error above$')
# the most host names a failure line lists; the rest are counted
SHOWN_HOSTS = 20
# a held failure is printed at the latest this many times group_wait after it first came
LONGEST_WAIT = 5


def own_action(task):
    """Whether the task runs a module of the collection."""
    return str(task_action(task) or '').startswith(COLLECTION)


def _short_action(task):
    return str(task_action(task) or '').rpartition('.')[2]


def own_role(task):
    """Whether the task is one of the collection's roles' (its name then reads
    ``nixdeploy.fleet.deploy : ...``, ansible-core's public ``get_name``)."""
    role, colon, _name = task.get_name().partition(' : ')
    return bool(colon) and role.startswith(COLLECTION)


def is_bookkeeping(task):
    """A task of the collection's roles that only keeps a record (the rescue's
    ``set_stats`` of the custom stat ``nixdeploy``): nothing for a person."""
    return own_role(task) and _short_action(task) == 'set_stats'


def is_reraise(task, data):
    """The deploy role's rescue task that keeps a host failed whose phase said
    why just before (``the eval phase failed: see its error above``)."""
    return own_role(task) and _short_action(task) == 'fail' and \
        bool(RERAISE.match(u'%s' % (data.get('msg') or '',)))


def task_label(task, data):
    """What a line calls the task: the phase of the collection's (the result's
    ``phase``, else its action's: eval, build, copy, keys, activate,
    rollback), else the task's name without its role."""
    if own_action(task):
        phase = data.get('phase') if isinstance(data.get('phase'), str) else None
        short = _short_action(task)
        label = phase or action_phase(short) or (short[4:] if short.startswith('nix_') else short)
    else:
        name = task.get_name()
        label = name.partition(' : ')[2] or name
    return printable(label)


def message_lines(host, msg):
    """The module's message as lines to print: without the host's name in
    front (the line names the host), every line printable, no empty last ones."""
    text = u'%s' % (msg,)
    if text.startswith(host + ': '):
        text = text[len(host) + 2:]
    lines = [printable(line.rstrip()) for line in text.strip('\n').split('\n')]
    return lines or [u'']


def hosts_text(hosts):
    """The hosts of a line in name order, printable, comma-separated; past
    SHOWN_HOSTS, counted."""
    shown = [printable(host) for host in sorted(hosts)[:SHOWN_HOSTS]]
    if len(hosts) > SHOWN_HOSTS:
        shown[-1] += ' and %d more' % (len(hosts) - SHOWN_HOSTS)
    return ', '.join(shown)


class Failure(object):
    """One cause on one task, held back a moment for the other hosts it hits."""

    def __init__(self, key, lines, label, unreachable, ignored, earlier):
        self.key, self.lines, self.label = key, lines, label
        self.unreachable, self.ignored = unreachable, ignored
        # the first host of an earlier line with this cause, or None
        self.earlier = earlier
        self.hosts = []
        self.first = self.last = time.time()

    def text(self):
        """The lines that say it: the cause once, the hosts it hit."""
        head = 'fatal: [%s]%s at %s: ' % (hosts_text(self.hosts),
                                          ' unreachable' if self.unreachable else '', self.label)
        if self.earlier is not None:
            return [head + 'the same as for %s above' % printable(self.earlier)]
        return [head + self.lines[0]] + ['    ' + line for line in self.lines[1:]]


class _FlushFirst(object):
    """The callback's display, which first prints the failures the console
    holds back: a failure always comes out before what follows it."""

    def __init__(self, display, flush):
        self._inner, self._flush = display, flush

    def display(self, *args, **kwargs):
        self._flush()
        return self._inner.display(*args, **kwargs)

    def banner(self, *args, **kwargs):
        self._flush()
        return self._inner.banner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'nixdeploy.fleet.console'
    # ansible-core 2.22.0b1 asked result-reading callbacks to say so; from
    # 2.22.0b2 results always come masked and this is ignored
    ANSIBLE_SUPPORTS_MASKING = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._screen = self._display
        self._display = _FlushFirst(self._screen, self._flush)
        self._lock = threading.RLock()
        self._held = {}          # key -> Failure not printed yet
        self._said = {}          # key -> the first host of its printed line, this batch
        self._failed = set()     # hosts whose failure was said (or is held), this batch
        self._bannered = set()   # tasks whose header was printed, this batch
        self._ticker = None
        self._done = threading.Event()

    def get_option(self, k, hostvars=None):
        # -v lists skipped hosts whatever display_skipped_hosts says
        if k == 'display_skipped_hosts' and self._screen.verbosity >= 1:
            return True
        return super(CallbackModule, self).get_option(k, hostvars)

    def _quiet(self):
        return self._screen.verbosity < 1

    # ------------------------------------------------------------ headers
    def v2_playbook_on_play_start(self, play):
        # a play starts once per serial batch: the batch before says its
        # last failures, then its summary, before the new batch's header
        self._flush()
        _batch_end.batch_over(self._display.warning)
        self._bannered, self._said, self._failed = set(), {}, set()
        # the next batch runs the same tasks: each gets its header again
        forget_task_banner(self)
        super(CallbackModule, self).v2_playbook_on_play_start(play)

    def _print_task_banner(self, task):
        uuid = task_uuid(task)
        if uuid in self._bannered:
            # printed further up: the result's line names its task instead
            return
        self._bannered.add(uuid)
        super(CallbackModule, self)._print_task_banner(task)

    def host_label(self, result):  # pylint: disable=arguments-differ
        label = printable(DefaultCallback.host_label(result))
        uuid = task_uuid(result.task)
        if uuid in self._bannered and uuid != self._last_task_banner:
            label += ' at %s' % task_label(result.task, result.result)
        return label

    # ------------------------------------------------------------ results
    def v2_runner_on_ok(self, result):
        if self._quiet() and is_bookkeeping(result.task) and not result.result.get('changed'):
            return
        super(CallbackModule, self).v2_runner_on_ok(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not self._failure(result, False, ignore_errors):
            super(CallbackModule, self).v2_runner_on_failed(result, ignore_errors)

    def v2_runner_on_unreachable(self, result):
        if not self._failure(result, True, bool(result.task.ignore_unreachable)):
            super(CallbackModule, self).v2_runner_on_unreachable(result)

    def _failure(self, result, unreachable, ignored):
        """Say the failure in the console's way; False: the default says it."""
        task, data = result.task, result.result
        host = result.host.get_name()
        if not self._quiet() or (task.loop and 'results' in data):
            self._failed.add(host)
            return False
        if is_reraise(task, data) and host in self._failed:
            # the rescue keeping the host failed: its cause is printed above
            self._handle_warnings(data)
            return True
        msg = data.get('msg')
        if not own_action(task) or not msg:
            self._failed.add(host)
            if msg and result.exception:
                # ansible-core's [ERROR] block says the message, with where the
                # task is: the fatal line's result leaves it out
                data.pop('msg', None)
            return False
        if self._last_task_banner != task_uuid(task):
            self._print_task_banner(task)
        self._handle_warnings(data)
        data.pop('exception', None)
        lines = message_lines(host, msg)
        label = task_label(task, data)
        key = (task_uuid(task), unreachable, bool(ignored), label, tuple(lines))
        with self._lock:
            self._failed.add(host)
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = Failure(key, lines, label, unreachable, ignored,
                                                 self._said.get(key))
            held.hosts.append(host)
            held.last = time.time()
        if self._wait() <= 0:
            self._flush()
        else:
            self._start_ticker()
        return True

    # ------------------------------------------------------------ held failures
    def _wait(self):
        try:
            return float(self.get_option('group_wait'))
        except (KeyError, TypeError, ValueError):
            return 0.0

    def _flush(self, ready=None):
        """Print the held failures (only those ``ready`` picks, when given)."""
        with self._lock:
            now = time.time()
            for key, held in list(self._held.items()):
                if ready is not None and not ready(held, now):
                    continue
                del self._held[key]
                self._said.setdefault(key, min(held.hosts))
                color = C.COLOR_UNREACHABLE if held.unreachable else C.COLOR_ERROR
                stderr = bool(self.get_option('display_failed_stderr'))
                for line in held.text():
                    self._screen.display(line, color=color, stderr=stderr)
                if held.ignored:
                    self._screen.display('...ignoring', color=C.COLOR_SKIP)

    def _start_ticker(self):
        if self._ticker is not None:
            return
        wait = self._wait()

        def ready(held, now):
            return now - held.last >= wait or now - held.first >= wait * LONGEST_WAIT

        def tick():
            while not self._done.wait(min(wait / 4.0, 0.25)):
                self._flush(ready)

        self._ticker = threading.Thread(target=tick, name='nixdeploy-console')
        self._ticker.daemon = True
        self._ticker.start()

    def v2_playbook_on_stats(self, stats):
        self._done.set()
        self._flush()
        super(CallbackModule, self).v2_playbook_on_stats(stats)
