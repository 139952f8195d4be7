"""What must hold after every round, read on the hosts themselves (through
their namespaces: ``lab.run_in``, never the deploy's ssh) and on the
controller. Each check returns the violations it found, as sentences naming
the host or the run.

Hosts: each runs the system it ran before the round or the one the round
gave it; its profile, active system and boot default agree; no activation
lock, runner or watchdog process, transient unit, temp folder or GC root of
another system is left; the closure of what it runs verifies.

Runs: what the results (the JSON report and the play recap) say of a host
is what the host runs. A run killed (the controller SIGKILLed whole) or
cancelled (ansible-playbook dies of the SIGTERM) wrote no report and no
recap: for it only the hosts' own state and the controller's leftovers are
checked.

Controller: once a run is over and its ssh masters are gone, or ssh's
promise for them has passed (round.wait_masters), no process of the run is left (by the marker in its environment)
and no socket in its ssh control folder (a killed run's masters could not
remove theirs: none of those may still listen); a run that ended by itself
left nothing in its Ansible temp folder (the batch folder lives there); a
killed run's temp folder is Ansible's own per-run folder, which only
ansible-playbook's exit removes, and is not checked.
"""

import os
import re
import socket

from tests.chaos.fleet import CONFIRM_TIMEOUT, MARKER
from tests.faults.fleet import assert_consistent, locks, verify_store
from tests.lab.lab import netns_pids

# the runner and watchdog of an activation, a hop, a health check: every
# script of the collection runs from its state folder or names it
OWN_PROCESS = re.compile(r'nixdeploy(?!-lab)')
STATE_DIRS = ('/nix/var/nixdeploy', '/home/deploy/.local/state/nixdeploy',
              '/home/app/.local/state/nixdeploy')
RECAP = re.compile(r'^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)',
                   re.M)
# The docs' promise: a detached activation ends within nix_activation_timeout,
# then its watchdog decides within the confirmation window grown by the
# health check's time (docs/health-checks.md); a minute more for a busy machine.
SETTLE_SECONDS = 240 + CONFIRM_TIMEOUT + (3 + 10) + 60
# phases before anything is activated: a host failed there runs what it ran
BEFORE_ACTIVATION = ('eval', 'build', 'copy', 'keys')


def host_processes(lab, host, own=True):
    """{pid: cmdline} of the collection's processes left inside the host
    (``own`` False: of every process of the host's namespace)."""
    found = {}
    for pid in netns_pids(lab.host(host)['netns']):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                cmdline = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
        except OSError:
            continue
        if not own or OWN_PROCESS.search(cmdline):
            found[pid] = cmdline
    return found


def process_state(pid):
    """What a left process is doing, for the one who reads a violation:
    its state letter, parent and where in the kernel it waits."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
        with open('/proc/%d/wchan' % pid) as handle:
            wchan = handle.read().strip() or '-'
    except OSError:
        return 'gone'
    return 'state %s, parent %s, waits in %s' % (fields[0], fields[1], wchan)


def _others(lab, host, left):
    """Every other process of the host's namespace, one line each."""
    return ['%d (%s) %s' % (pid, process_state(pid), cmdline[:160])
            for pid, cmdline in sorted(host_processes(lab, host, own=False).items())
            if pid not in left]


def _ends(cmdline):
    """A long command line's start and end: a target program begins with
    the same prelude whichever it is, and ends with its own text."""
    if len(cmdline) <= 600:
        return cmdline
    return '%s ... %s' % (cmdline[:200], cmdline[-400:])


# The collection's transient units that still hold processes. A unit whose
# main process ended and whose cgroup is empty is not one: on a machine with
# the cgroup v1 layout, systemd in a container is not told that the cgroup
# emptied and shows such a unit "deactivating (stop-sigterm)" until its stop
# timeout (90 s), then forgets it (--collect).
UNITS = ('for u in $(systemctl list-units --all --plain --no-legend "nixdeploy-*" | cut -d" " -f1); do '
         'cg=$(systemctl show -p ControlGroup --value "$u"); '
         'for f in /sys/fs/cgroup/systemd"$cg"/cgroup.procs /sys/fs/cgroup"$cg"/cgroup.procs; do '
         'p=$(cat "$f" 2>/dev/null) && [ -n "$p" ] && echo "$u:" $p && break; done; done; true')


def busy_units(lab, host):
    if not lab.host(host).get('systemd'):
        return []
    return lab.run_in(host, ['sh', '-c', UNITS], check=False).stdout.splitlines()


def unsettled(lab):
    """Hosts where something of the collection still runs (a process, a
    transient unit with processes in it): what it leaves is not decided yet.
    A lock left where nothing of the collection runs stays as it is, however
    long the campaign waits (the check reports it): waiting for it would only
    make a failed round take the whole settle time."""
    return [h for h in sorted(lab.hosts) if host_processes(lab, h) or busy_units(lab, h)]


def check_host(lab, host, before, new):
    """The host's own state after a round."""
    out = []
    try:
        active = assert_consistent(lab, host)
    except AssertionError as exc:
        out.append(str(exc))
        active = lab.active(host)
    allowed = {before, new} - {None}
    if active not in allowed:
        out.append('%s runs %s: neither its system before the round (%s) nor the round\'s (%s)'
                   % (host, active, before, new))
    for lock in locks(lab, host):
        out.append('%s: activation lock left: %s (%s)' % (host, lock, _lock_story(lab, host, lock)))
    left = host_processes(lab, host)
    for pid, cmdline in sorted(left.items()):
        out.append('%s: process of the collection left: %d (%s) %s' % (
            host, pid, process_state(pid), _ends(cmdline)))
    if left:
        # what they wait on may be a child that names nothing of the
        # collection (a sleep, a flock, a program it ran): the host's others
        out += ['%s: beside them: %s' % (host, line) for line in _others(lab, host, left)]
    if lab.host(host).get('systemd'):
        for unit in busy_units(lab, host):
            out.append('%s: transient unit left with processes in it: %s' % (host, unit))
        temp = lab.run_in(host, ['sh', '-c', 'ls -d /tmp/nixdeploy-* 2>/dev/null; true'],
                          check=False).stdout.split()
        if temp:
            out.append('%s: temp folders left: %s' % (host, ' '.join(temp)))
    out += _gc_roots(lab, host, allowed | {active})
    if active:
        try:
            verify_store(lab, host, active)
        except AssertionError as exc:
            out.append('%s: the store does not verify: %s' % (host, str(exc)[:600]))
    return out


# what a left lock says of its owner, and what that run's files say of it:
# which step of the run the host went down in
LOCK_STORY = ('L=$1; D=${L%/lock}; r=$(cat "$L/run" 2>/dev/null); '
              'printf "lock pid %s run %s boot %s; this boot %s; " "$(cat "$L/pid" 2>/dev/null)" '
              '"$r" "$(cat "$L/boot" 2>/dev/null)" "$(cat /proc/sys/kernel/random/boot_id)"; '
              '[ -d "$D/lock.break" ] && printf "lock.break left; "; '
              '[ -n "$r" ] && [ -d "$D/runs/$r" ] || { echo "no run folder"; exit 0; }; '
              'printf "run pid %s boot %s; status: %s; log: %s" "$(cat "$D/runs/$r/pid" 2>/dev/null)" '
              '"$(cat "$D/runs/$r/boot" 2>/dev/null)" '
              '"$(tr "\\n" " " <"$D/runs/$r/status" 2>/dev/null || echo none)" '
              '"$(tail -n 5 "$D/runs/$r/log" 2>/dev/null | tr "\\n" " ")"')


def _lock_story(lab, host, lock):
    proc = lab.run_in(host, ['sh', '-c', LOCK_STORY, 'story', lock], check=False)
    return (proc.stdout.strip() or proc.stderr.strip())[:1200]


def _gc_roots(lab, host, allowed, anchored=True):
    """The copy's GC roots on the host: each points at /dev/null or at a
    system of the round (the next copy supersedes it); nothing half-made
    (an anchor folder or a temp link) is left beside them. ``anchored``:
    what a first copy stopped while it registered its root with Nix leaves
    may be there, its anchor folder and a root still at the anchor path
    (copy-probe.sh: the next copy's probe removes the one and re-points the
    other; after the clean run none may be left)."""
    script = ('for d in %s; do [ -d "$d/gcroots" ] || continue; '
              'for f in "$d"/gcroots/* "$d"/gcroots/.[!.]*; do [ -e "$f" ] || [ -L "$f" ] || continue; '
              'printf "%%s %%s\\n" "$f" "$(readlink "$f")"; done; done' % ' '.join(STATE_DIRS))
    out = []
    for line in lab.run_in(host, ['sh', '-c', script], check=False).stdout.splitlines():
        path, _sep, target = line.partition(' ')
        if anchored and os.path.basename(path).startswith('.anchor.'):
            continue
        if os.path.basename(path).startswith('.'):
            out.append('%s: half-made GC root left: %s' % (host, path))
        elif anchored and target.endswith('-nixdeploy-gc-anchor'):
            continue
        elif target != '/dev/null' and target not in allowed:
            out.append('%s: GC root %s points at %s, no system of the round' % (host, path, target))
    return out


def gc_roots_converged(lab, host, active):
    """After the clean run: every root points at /dev/null or what the host runs."""
    return _gc_roots(lab, host, {active}, anchored=False)


def recap(run):
    """{host: (changed, failed + unreachable)} from the play recap."""
    text = run.output()
    if 'PLAY RECAP' not in text:
        return None
    tail = text[text.rindex('PLAY RECAP'):]
    return dict((m.group(1), (int(m.group(3)), int(m.group(4)) + int(m.group(5))))
                for m in RECAP.finditer(tail))


def check_runs(runs, final, before, new):
    """What the complete runs say of each host against what it runs."""
    out = []
    complete = [r for r in runs if r.complete]
    said, quiet = {}, []
    for run in complete:
        report = run.report()
        if report is None:
            out.append('run %s ended by itself (rc %s) but wrote no report'
                       % (run.label, run.proc.returncode))
            continue
        counts = recap(run)
        if counts is None:
            out.append('run %s ended by itself but printed no recap' % run.label)
            counts = {}
        for host, rec in sorted(report['hosts'].items()):
            said.setdefault(host, []).append((run.label, rec))
            changed, failed = counts.get(host, (None, None))
            if failed is not None and bool(failed) != bool(rec['failed']):
                out.append('run %s: %s is %s in the report, failed=%d in the recap'
                           % (run.label, host, rec['status'], failed))
            if rec['status'] == 'changed' and not changed:
                out.append('run %s: %s changed in the report, changed=0 in the recap'
                           % (run.label, host))
            if rec['status'] == 'unchanged' and changed:
                quiet.append((run.label, host, changed))
    # `unchanged` in the report is "this run activated nothing new" (docs/report.md),
    # while the recap also counts the build and the copy: the two agree unless
    # another run of the round activated the host's system between this run's
    # copy and its activation (a second deploy beside the first)
    for label, host, changed in quiet:
        if not any(other != label and rec['status'] == 'changed'
                   for other, rec in said.get(host, [])):
            out.append('run %s: %s unchanged in the report, changed=%d in the recap'
                       % (label, host, changed))
    for host, records in sorted(said.items()):
        out += _said_vs_host(host, records, final.get(host), before.get(host), new.get(host),
                             alone=len(complete) == 1 and len(runs) == 1)
    return out


def _said_vs_host(host, records, final, before, new, alone):
    out = []
    statuses = [rec['status'] for _label, rec in records]
    if 'changed' in statuses and final != new:
        out.append('%s: called switched (%s) but runs %s, not %s'
                   % (host, ', '.join(l for l, r in records if r['status'] == 'changed'), final, new))
    for label, rec in records:
        if rec['status'] == 'rolled_back' or \
                (rec['failed'] and rec.get('failed_phase') in BEFORE_ACTIVATION):
            if alone and final != before:
                out.append('%s: called %s by run %s (%s) but runs %s, not its previous %s'
                           % (host, rec['status'], label, rec.get('failed_phase'), final, before))
        if alone and rec['status'] in ('changed', 'unchanged', 'rolled_back'):
            after = ((rec.get('generation') or {}).get('after') or {}).get('path')
            if after != final:
                out.append('%s: run %s reports it runs %s after the run, it runs %s'
                           % (host, label, after, final))
    return out


def controller_processes(run):
    """Pids of the run's processes: those that carry the run's marker in
    their environment, and its ssh masters, which name the run's control
    folder in their title. A master has no environment left to read: the
    title OpenSSH sets ("ssh: <socket> [mux]") is written over the memory
    that held it."""
    needle = ('%s=%s' % (MARKER, run.marker)).encode()
    master = os.fsencode('ssh: %s%s' % (run.control_dir, os.sep))
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/environ' % entry, 'rb') as handle:
                ours = needle in handle.read().split(b'\0')
            if not ours:
                with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                    ours = handle.read().startswith(master)
        except OSError:
            continue
        if ours:
            found.append(int(entry))
    return found


def live_socket(path):
    """Whether something listens on the unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def sockets_left(run):
    """The names of the ssh control sockets the run leaves that count: a
    master SIGKILLed with its controller cannot remove its socket; the next
    ssh to find it stale (connection refused) unlinks it (OpenSSH's mux
    client). A run that was not killed leaves none, a killed one no live one."""
    if not os.path.isdir(run.control_dir):
        return []
    return [n for n in sorted(os.listdir(run.control_dir))
            if not run.killed or live_socket(os.path.join(run.control_dir, n))]


def check_controller(run, gc_root_dir):
    out = []
    for pid in controller_processes(run):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                cmd = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')[:300]
        except OSError:
            continue
        out.append('run %s: controller process left: %d %s' % (run.label, pid, cmd))
    if os.path.isdir(run.control_dir):
        left = sockets_left(run)
        if left:
            out.append('run %s: ssh control sockets left%s: %s' % (
                run.label, ' (live)' if run.killed else '', ' '.join(left)))
    if run.complete and os.path.isdir(run.local_temp):
        left = os.listdir(run.local_temp)
        if left:
            out.append('run %s: left in its Ansible temp folder: %s' % (run.label, ' '.join(left)))
    if os.path.isdir(gc_root_dir):
        for name in os.listdir(gc_root_dir):
            path = os.path.join(gc_root_dir, name)
            # a fleet's folder of roots (<dir>/<fleet>/<host>), or an old
            # flat root (<dir>/<host>)
            inside = [os.path.join(path, n) for n in os.listdir(path)] \
                if os.path.isdir(path) and not os.path.islink(path) else [path]
            for root in inside:
                if not os.path.islink(root) or not os.path.exists(root):
                    out.append('controller: half-made GC root %s' % root)
    return out
