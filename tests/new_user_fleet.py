"""A new user's project, as the quickstart has one make it, and what its runs print.

Used by tests/integration/test_new_user.py (issue 61's error catalogue). A
project is a git checkout holding the fleet's flake at its top, ansible.cfg
as a user copies it from the docs (only the nix inventory plugin enabled, an
unparsed inventory an error, the summary and report callbacks, host key
checking on), ``inventory/fleet.nix.yml`` (``flake: ..``) with group_vars,
and the fleet's known_hosts. Every run is ``ansible-playbook`` in the
project folder, as a user runs it; its reports land in ``reports/`` there.

What a run printed is read the way a person reads it: the PLAY RECAP's
counts per host, the lines of the NIXDEPLOY SUMMARY, how often a cause is
printed, and the report the run wrote.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import time

from tests.collection import BIN, PlaybookRun, ansible_env
from tests.deploy_fleet import commit_project, git, prepare

# The ansible.cfg a new user has: what docs/quickstart.md and the shipped
# example tell them to write (issue 61: `enable_plugins` naming the plugin, so
# Nix's message comes in one warning, not three plugins' worth; an inventory
# that does not parse is an error, not an empty fleet; issue 79: the
# collection's stdout callback, which says each failure once).
USER_ANSIBLE_CFG = """\
[defaults]
inventory = inventory/
callbacks_enabled = nixdeploy.fleet.summary, nixdeploy.fleet.report
stdout_callback = nixdeploy.fleet.console
forks = 25
gathering = explicit
interpreter_python = auto_silent
internal_poll_interval = 0.05
host_key_checking = True
retry_files_enabled = False
timeout = 30

[callback_nixdeploy_report]
report_dir = reports

[inventory]
enable_plugins = nixdeploy.fleet.nix
unparsed_is_failed = True

[ssh_connection]
ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15
pipelining = True
"""

INVENTORY_CONFIG = """\
plugin: nixdeploy.fleet.nix
# the flake at the top of this repository
flake: ..
nix_options: {substituters: ''}
"""

# the test-only callback that records each task's result beside the user's
# two (tests/callback_plugins/record.py): the role's custom stats
CALLBACKS = 'record,nixdeploy.fleet.summary,nixdeploy.fleet.report'

# the hosts a fatal: line names: [web1], or [web1, web2] (the console's)
FATAL_LINE = re.compile(r'^fatal: \[([^\]]*)\]')
RECAP_LINE = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+'
                        r'failed=(\d+)\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)')


def write_user_project(path, lab, tags=None, configurations=None, signing_groups=('darwin',)):
    """The project of a new user at ``path`` (a committed git checkout).

    The signing key is set only for the groups in ``signing_groups`` (as a
    user who read the quickstart's note for the Mac has it). Returns
    (FleetFlake, secret key path)."""
    flake, secret = prepare(lab, path, tags=tags, configurations=configurations)
    with open(os.path.join(path, 'ansible.cfg'), 'w') as handle:
        handle.write(USER_ANSIBLE_CFG)
    shutil.copy(lab.known_hosts, os.path.join(path, 'known_hosts'))
    inventory = os.path.join(path, 'inventory')
    os.makedirs(os.path.join(inventory, 'group_vars'), exist_ok=True)
    os.makedirs(os.path.join(inventory, 'host_vars'), exist_ok=True)
    with open(os.path.join(inventory, 'fleet.nix.yml'), 'w') as handle:
        handle.write(INVENTORY_CONFIG)
    write_vars(path, 'group_vars', 'all', {
        'ansible_ssh_private_key_file': lab.key,
        # relative: ssh opens it in the folder ansible-playbook runs in
        'ansible_ssh_common_args': '-o UserKnownHostsFile=known_hosts'
                                   ' -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes',
        'nix_options': {'substituters': ''},
    })
    for group in signing_groups:
        if group != 'darwin':
            write_vars(path, 'group_vars', group, {'nix_signing_key': secret})
    darwin = {'ansible_become': True}
    if 'darwin' in signing_groups:
        darwin['nix_signing_key'] = secret
    write_vars(path, 'group_vars', 'darwin', darwin)
    with open(os.path.join(path, '.gitignore'), 'w') as handle:
        handle.write('reports/\nruns/\n')
    git(path, 'init', '-q', '-b', 'main')
    commit_project(path, 'the fleet')
    return flake, secret


def write_vars(project, kind, name, data):
    """inventory/<kind>/<name>.yml (JSON is YAML); data None removes it."""
    path = os.path.join(project, 'inventory', kind, '%s.yml' % name)
    if data is None:
        if os.path.exists(path):
            os.unlink(path)
        return
    with open(path, 'w') as handle:
        json.dump(data, handle, indent=2)


def path_without_nix(folder):
    """A PATH with every program of this machine but Nix's: a controller on
    which Nix is not installed (or not on the PATH the job gets). Links in
    ``folder`` to /usr/bin's and /usr/sbin's programs except nix*."""
    os.makedirs(folder, exist_ok=True)
    for source in ('/usr/bin', '/usr/sbin'):
        for name in os.listdir(source):
            if name.startswith('nix'):
                continue
            link = os.path.join(folder, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join(source, name), link)
    # the venv's programs (ansible-playbook, python) first, as ansible_env has them
    return os.pathsep.join([BIN, folder])


class UserRun(PlaybookRun):
    """A PlaybookRun plus what a person reads of it."""

    def __init__(self, rc, stdout, stderr, records, project, started):
        super().__init__(rc, stdout, stderr, records)
        self.project, self.started = project, started
        # the report files this run wrote, seen when it ended (later runs
        # write theirs into the same folder)
        folder = os.path.join(project, 'reports')
        # (a file's time may lag the clock by a tick: 50 ms; the run before
        # this one ended longer ago than that, and the run's own start time
        # in the JSON tells its report apart)
        self.written = sorted(p for p in glob.glob(os.path.join(folder, '*'))
                              if os.path.isfile(p) and os.path.getmtime(p) >= started - 0.05)

    @property
    def output(self):
        return self.stdout + self.stderr

    def recap(self):
        """{host: {ok, changed, unreachable, failed, ...}} of the PLAY RECAP
        (the last one a host has)."""
        found = {}
        lines = self.stdout.splitlines()
        for index, line in enumerate(lines):
            if not line.startswith('PLAY RECAP'):
                continue
            for row in lines[index + 1:]:
                match = RECAP_LINE.match(row.strip())
                if not match:
                    break
                keys = ('ok', 'changed', 'unreachable', 'failed', 'skipped', 'rescued',
                        'ignored')
                found[match.group(1)] = dict(zip(keys, (int(v) for v in match.groups()[1:])))
        return found

    def recap_bad(self):
        """Hosts the recap counts as failed or unreachable."""
        return sorted(h for h, row in self.recap().items() if row['failed'] or row['unreachable'])

    def summary_lines(self):
        """The lines under the NIXDEPLOY SUMMARY banners."""
        found = []
        lines = self.stdout.splitlines()
        inside = False
        for line in lines:
            if line.startswith('NIXDEPLOY SUMMARY'):
                inside = True
                continue
            if inside and (line.startswith('PLAY ') or line.startswith('TASK ')
                           or line.startswith('RUNNING HANDLER')):
                inside = False
            if inside and line.strip():
                found.append(line)
        return found

    def summary_of(self, host):
        """The summary's text for ``host``: its line (the host name first, then
        platform, generations, outcome) and the indented lines that continue
        it (a wrapped cause); '' when it has none."""
        text, mine = [], False
        for line in self.summary_lines():
            if not line[:1].isspace():
                mine = line.split()[0] == host
            if mine:
                text.append(line)
        return '\n'.join(text)

    def fatal_lines(self, host):
        """The ``fatal:`` lines that name ``host``: the console's (``fatal:
        [web1, web2] at eval: ...``, one for every host a cause hit) or the
        default callback's (``fatal: [host]: FAILED! => {...}``), each with the
        indented lines that continue it."""
        found, lines = [], self.stdout.splitlines()
        for index, line in enumerate(lines):
            match = FATAL_LINE.match(line)
            if not match or host not in match.group(1).split(', '):
                continue
            text = [line]
            for more in lines[index + 1:]:
                if not more.startswith('    '):
                    break
                text.append(more)
            found.append('\n'.join(text))
        return found

    def console(self):
        """What the run printed but the NIXDEPLOY SUMMARY's lines: where each
        thing happened."""
        kept, inside = [], False
        for line in self.stdout.splitlines():
            if line.startswith('NIXDEPLOY SUMMARY'):
                inside = True
                continue
            if inside and line.startswith(('PLAY ', 'TASK ', 'RUNNING HANDLER')):
                inside = False
            if not inside:
                kept.append(line)
        return '\n'.join(kept) + '\n' + self.stderr

    def count(self, needle):
        return self.output.count(needle)

    def report_files(self):
        """Every file of reports/ this run wrote."""
        return list(self.written)

    def report_path(self):
        """This run's own JSON report: the one of the files it wrote whose
        run started with it (its own name, else the stable one), or None."""
        mine = []
        for path in self.report_files():
            if not path.endswith('.json'):
                continue
            with open(path) as handle:
                data = json.load(handle)
            runs = data.get('runs') or []
            # the callback notes the run's start in ansible-playbook, after ours
            if runs and runs[-1].get('started', 0) >= self.started:
                # a name of its own before the stable "latest" one
                stable = os.path.basename(path) == 'nixdeploy-report.json' or \
                    'latest' in os.path.basename(path)
                mine.append((stable, path))
        return sorted(mine)[0][1] if mine else None

    def report(self):
        """This run's JSON report, or None."""
        path = self.report_path()
        if path is None:
            return None
        with open(path) as handle:
            return json.load(handle)

    def report_html(self):
        """The page beside this run's JSON report, or ''."""
        path = self.report_path()
        page = path[:-len('.json')] + '.html' if path else None
        if not page or not os.path.exists(page):
            return ''
        with open(page, encoding='utf-8') as handle:
            return handle.read()

    def latest_reports(self):
        """The report files a person opens as "the latest": the stable name(s)
        in reports/ (nixdeploy-report.json/.html, or a *latest* name)."""
        folder = os.path.join(self.project, 'reports')
        return [p for p in glob.glob(os.path.join(folder, '*'))
                if os.path.basename(p).startswith('nixdeploy-report.')
                or 'latest' in os.path.basename(p)]


def run_user_playbook(project, playbook, args=(), env=None, timeout=900):
    """``ansible-playbook <playbook> <args>`` in the project folder, as a user
    runs it (its ansible.cfg, its inventory/, its reports/)."""
    runs = os.path.join(project, 'runs')
    os.makedirs(runs, exist_ok=True)
    number = len([name for name in os.listdir(runs) if name.endswith('.out')])
    record = os.path.join(runs, 'run-%02d.jsonl' % number)
    extra = {'NIXDEPLOY_TEST_RECORD': record, 'ANSIBLE_CALLBACKS_ENABLED': CALLBACKS}
    extra.update(env or {})
    environment = ansible_env(extra)
    # what ansible.cfg says, not the tests' defaults
    for name in ('ANSIBLE_GATHERING', 'ANSIBLE_PYTHON_INTERPRETER',
                 'ANSIBLE_RETRY_FILES_ENABLED'):
        environment.pop(name, None)
    started = time.time()
    argv = [os.path.join(BIN, 'ansible-playbook'), playbook] + list(args)
    proc = subprocess.run(argv, cwd=project, env=environment, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False)
    # kept beside the record: what the run printed, to read after a failure
    with open(record[:-len('.jsonl')] + '.out', 'w') as handle:
        handle.write('$ %s\nrc=%d\n%s\n--- stderr\n%s' % (
            ' '.join(argv[1:]), proc.returncode, proc.stdout, proc.stderr))
    records = []
    if os.path.exists(record):
        with open(record) as handle:
            records = [json.loads(line) for line in handle if line.strip()]
    return UserRun(proc.returncode, proc.stdout, proc.stderr, records, project, started)


def copy_project(source, target):
    """A copy of a project (its git history too) to break in one way."""
    # reports/ too: an older run's report must not look like this one's
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns('runs'))
    return target


def generation(lab, host):
    """(generation number, system path) the host's profile points at now,
    read on the host (None, None before the first deploy)."""
    profile = {
        'nixos': '/nix/var/nix/profiles/system',
        'darwin': '/nix/var/nix/profiles/system',
        'nix-on-droid': '/nix/var/nix/profiles/nix-on-droid',
        'home-manager': '/home/app/.local/state/nix/profiles/home-manager',
    }[lab.host(host)['platform']]
    link = lab.run_in(host, ['readlink', profile], check=False).stdout.strip()
    match = re.search(r'-(\d+)-link$', link)
    return (int(match.group(1)) if match else None), lab.active(host)
