"""A fake target ``Host`` for the stages' unit tests, held to the real one's contract.

It is the real ``Host`` (plugin_utils/host/_host.py, through local_host.py's
``LocalHost``): ``Host.sh`` itself runs each program, so its time limit
(``NoAnswer``), its refused first login (``LoginRefused``) and its lost
connections are the real code's. Only Ansible's connection under it is
replaced: the REAL target program runs under /bin/sh on this machine with
the environment of a folder that stands for the target (``env``: its HOME,
PATH with the fake tools a test puts there, XDG_STATE_HOME).

What a lab would show only by failing later, the fake refuses at once
(``ContractBroken``, an AssertionError: a broken test names the stage):

- a program must be one ``_script.render`` made: a ``Program`` whose text is
  quoted ``NAME=value`` assignments exactly as ``render`` writes them (no
  value pasted into the text), its own marker among them, then lib.sh and
  the stage's real program files, and whose ``fields`` are those files'
  (from the shared table of _program_fields.py or the stage's own);
- every call has a time limit (a positive number of seconds), a flag for
  become and, as its stdin, text or nothing;
- what a real program reports is only fields its files may report, each of
  its kind (a program that prints another key means _program_fields.py and
  the program went apart); ``strict=False`` for a test whose target files
  are hostile on purpose.

A test makes the target misbehave once, for the next run of a program
(``then``: a ``Reply``): answer with values of its choosing (framed with the
program's own marker, each a field of the program of its kind, unless
``hostile``), print raw text (forged frames), take longer than the limit
(``hang``: the real Host gives up, in scaled time: ``time_scale``), lose the
connection before or after the program ran, or refuse the login.
"""

import collections
import importlib
import math
import os
import shlex
import sys
import threading
import time

from ansible.errors import AnsibleConnectionFailure

from tests.collection import collections_path
from tests.unit.local_host import Connection, LocalHost, run_here

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (  # noqa: E402
    _program_fields, _script)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (  # noqa: E402
    PROGRAM_TIMEOUT)

# what ssh says when the host refuses the key (_diagnosis.login_refused reads it)
KEY_REFUSED = 'Failed to connect to the host via ssh: tester@target: Permission denied (publickey).'
LINK_DOWN = 'Failed to connect to the host via ssh: Connection timed out during banner exchange'


class ContractBroken(AssertionError):
    """A stage used the Host as the real one would not let it (or a target
    program reported what its fields do not allow)."""


class Reply:
    """What the target does, once, instead of (or around) the next run of a
    program. ``values`` ({key: text}) and ``log``: its answer, framed with
    the program's marker; ``raw``: its stdout as given (no frame added);
    ``rc``, ``stderr``; ``hang``: it never answers; ``lost``: the
    connection fails with that text before the program runs;
    ``lost_after``: the program runs, then the answer is lost;
    ``hostile``: ``values`` are not checked (the stage must drop them)."""

    def __init__(self, values=None, log=None, raw=None, rc=0, stderr='', hang=False,
                 lost=None, lost_after=None, hostile=False):
        self.values, self.log, self.raw = values, log, raw
        self.rc, self.stderr = rc, stderr
        self.hang, self.lost, self.lost_after = hang, lost, lost_after
        self.hostile = hostile

    def answers(self):
        """Whether it answers in the program's place."""
        return self.values is not None or self.raw is not None or self.log is not None


class Call:
    """One program the stage ran: its ``files``, ``timeout``, ``sudoable``
    and ``in_data``; ``values`` it reported (after the real Host's run)."""

    def __init__(self, files, timeout, sudoable, in_data):
        self.files, self.timeout, self.sudoable, self.in_data = files, timeout, sudoable, in_data
        self.values = None

    @property
    def name(self):
        """The program's own file: the first that reports fields of its own
        (its library files report none; a poll may follow it), else the last."""
        own = [f for f in self.files[1:] if fields_table().get(f)]
        return own[0] if own else self.files[-1]

    def __repr__(self):
        return 'Call(%s, timeout=%s)' % ('+'.join(self.files[1:]), self.timeout)


class FakeConnection(Connection):
    """Ansible's connection as a Host reads it: where it reaches the host
    (``transport`` ssh: the controller's own ssh may reach it too) and its
    resets (a new login, plugin_utils/host/_host_key_judge.py drop_master)."""

    def __init__(self, address, transport='ssh', user=None):
        super(FakeConnection, self).__init__(address)
        self.transport = transport
        self.user = user
        self.resets = 0

    def get_option(self, name):
        if name == 'remote_user' and self.user:
            return self.user
        return super(FakeConnection, self).get_option(name)

    def reset(self):
        self.resets += 1


# ------------------------------------------------------------------ the contract
_TABLE = {}


def fields_table():
    """{program file: {key: kind}} over every stage: lib.sh's and the shared
    table (_program_fields.FIELDS), and each stage's own table (a module
    ``FIELDS`` beside the stage's code whose keys are its program files)."""
    if _TABLE:
        return _TABLE
    programs = _script.programs()
    table = dict(_program_fields.FIELDS)
    stages = sorted(set(os.path.basename(os.path.dirname(os.path.dirname(path)))
                        for path in programs.values()))
    package = _program_fields.__name__.rsplit('.', 2)[0]
    for stage in stages:
        for name in sorted(os.listdir(os.path.join(_script.PLUGIN_UTILS, stage))):
            if not (name.startswith('_') and name.endswith('.py')) or name == '__init__.py':
                continue
            found = getattr(importlib.import_module('%s.%s.%s' % (package, stage, name[:-3])),
                            'FIELDS', None)
            if isinstance(found, dict) and found and all(key in programs for key in found):
                for key, fields in found.items():
                    table.setdefault(key, fields)
    _TABLE.update(table)
    return _TABLE


def fields_of(files):
    """The keys and kinds a program made of ``files`` reports."""
    fields = {}
    for name in files:
        fields.update(fields_table().get(name) or {})
    return fields


def _split_assignments(head):
    """{NAME: value} of the assignments ``render`` wrote, or ContractBroken
    when ``head`` is anything else (a value pasted into the text)."""
    lexer = shlex.shlex(head, posix=True)
    lexer.whitespace_split = True
    values = {}
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise ContractBroken('the program text before lib.sh is not sh words: %s' % exc)
    for token in tokens:
        name, sep, value = token.partition('=')
        if not sep or not name or name in values:
            raise ContractBroken('the program text before lib.sh holds %r, not one '
                                 'assignment NAME=value per variable' % token[:80])
        values[name] = value
    try:
        again = _script.assignments(values)
    except ValueError as exc:
        raise ContractBroken('the program assigns %s' % exc)
    if again != head:
        raise ContractBroken('the values are not quoted as _script.render quotes them: %r'
                             % head[:200])
    return values


def _split_files(body):
    """The program files ``body`` is made of, in order (ContractBroken for
    any text that is not a real program file)."""
    sources = sorted(((name, _script.source(name)) for name in _script.programs()),
                     key=lambda item: -len(item[1]))
    files, at = [], 0
    while at < len(body):
        for name, text in sources:
            if text and body.startswith(text, at):
                files.append(name)
                at += len(text)
                break
        else:
            raise ContractBroken('the program holds text that is no target program file: %r'
                                 % body[at:at + 200])
    return files


def program_files(script):
    """The files of ``script`` (lib.sh first), checked to be what
    ``_script.render`` makes of them."""
    if not isinstance(script, _script.Program):
        raise ContractBroken('Host.sh runs a program _script.render made, not %s %r'
                             % (type(script).__name__, str(script)[:80]))
    text = str(script)
    head, lib, body = text.partition(_script.source(_script.LIBRARY))
    if not lib:
        raise ContractBroken('the program does not start with lib.sh')
    values = _split_assignments(head)
    if values.get(_script.MARK_NAME) != script.mark:
        raise ContractBroken('the program does not carry its own marker')
    files = [_script.LIBRARY] + _split_files(body)
    if script.fields != fields_of(files):
        raise ContractBroken('the program reports fields other than its files\' %s' % files)
    return files


def check_call(in_data, sudoable, timeout):
    """The arguments of one ``Host.sh`` call, as the real one takes them."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not 0 < timeout < math.inf:
        raise ContractBroken('every program runs with a time limit in seconds, not %r'
                             % (timeout,))
    if not isinstance(sudoable, bool):
        raise ContractBroken('sudoable is True or False, not %r' % (sudoable,))
    if in_data is not None and not isinstance(in_data, (str, bytes)):
        raise ContractBroken('a program\'s stdin is text, not %s' % type(in_data).__name__)


def framed(script, values, log=None):
    """``values`` and ``log`` as ``script`` prints them (lib.sh's emit and
    log_section, with its marker)."""
    lines = ['@@%s %s=%s' % (script.mark, key, value) for key, value in values.items()]
    if log is not None:
        lines.append('@@%s-log' % script.mark)
        lines.extend(log.split('\n') if log else [])
    return '\n'.join(lines) + '\n'


def check_values(script, values, files, what):
    """ContractBroken unless every value is a field of ``script`` of its kind."""
    read = _program_fields.read(dict(values), script.fields)
    if read.dropped:
        raise ContractBroken('%s reported values %s may not report: %s'
                             % (what, '+'.join(files[1:]) or 'lib.sh', '; '.join(read.dropped)))
    return read


# ------------------------------------------------------------------ the host
class FakeHost(LocalHost):
    """A target whose programs run here (``env``: the target's environment).
    ``calls``: every program the stage ran; ``then(name, reply)``: the next
    run of program ``name`` does as ``reply`` says."""

    strict = True
    # a hang is given up in this share of the time limit the stage asked for
    time_scale = 0.01

    def _setup(self, env, strict):
        self.env, self.strict = env, strict
        self.calls = []
        self.timeouts = []
        self._replies = collections.defaultdict(collections.deque)
        self._release = threading.Event()
        self._run_here = run_here(['/bin/sh'], env=env)

    def then(self, name, reply=None, **fields):
        """The next run of program file ``name`` does as ``reply`` (or a
        ``Reply(**fields)``) says (its values are checked when it is used:
        which fields a program has depends on all its files)."""
        if name not in _script.programs():
            raise ContractBroken('no target program %s' % name)
        self._replies[name].append(reply or Reply(**fields))
        return self

    def close(self):
        """Let the programs that hang end (their threads are the real Host's)."""
        self._release.set()

    def ran(self, name=None):
        """The calls of program file ``name`` (all calls when None)."""
        return [c for c in self.calls if name is None or c.name == name]

    def sh(self, script, in_data=None, sudoable=False, timeout=PROGRAM_TIMEOUT):
        files = program_files(script)
        check_call(in_data, sudoable, timeout)
        call = Call(files, timeout, sudoable, in_data)
        self.calls.append(call)
        queued = self._replies.get(call.name)
        reply = queued.popleft() if queued else None
        answer = None
        if reply is not None and reply.raw is not None:
            answer = reply.raw
        elif reply is not None and reply.answers():
            if not reply.hostile:
                check_values(script, reply.values or {}, files, 'the reply for')
            answer = framed(script, reply.values or {}, reply.log)
        self._execute = lambda cmd, sudoable=False, in_data=None: self._target(
            reply, answer, cmd, sudoable, in_data)
        bound = timeout * self.time_scale if reply is not None and reply.hang else timeout
        try:
            rc, stdout, stderr = super(FakeHost, self).sh(script, in_data=in_data,
                                                          sudoable=sudoable, timeout=bound)
        finally:
            # the limit the stage asked for, whatever the fake waited
            self.timeouts[-1] = timeout
        if self.strict and answer is None:
            call.values = check_values(script, script.parse_raw(stdout)[0], files,
                                       'the real program')
        return rc, stdout, stderr

    def _target(self, reply, answer, cmd, sudoable, in_data):
        """Ansible's connection running ``cmd`` on the target, as ``reply`` says."""
        if reply is not None and reply.lost:
            raise AnsibleConnectionFailure(reply.lost)
        if reply is not None and reply.hang:
            self._release.wait(60)
            return {'rc': None, 'stdout': '', 'stderr': ''}
        if answer is not None:
            return {'rc': reply.rc, 'stdout': answer, 'stderr': reply.stderr}
        out = self._run_here(cmd, sudoable=sudoable, in_data=in_data)
        if reply is not None and reply.lost_after:
            raise AnsibleConnectionFailure(reply.lost_after)
        return out


def fake_host(env, address='127.0.0.1', name='target', transport='ssh', user=None,
              strict=True):
    """A ``FakeHost`` named ``name`` whose programs run here with ``env``;
    its connection reaches ``address`` by ``transport``."""
    connection = FakeConnection(address, transport=transport, user=user)
    host = FakeHost.of_task(connection, {'inventory_hostname': name}, None)
    host._setup(env, strict)
    return host


def wait_for(predicate, seconds=5.0):
    """Whether ``predicate()`` comes true within ``seconds``."""
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True
