"""The targets of the copy stages' unit tests: each a folder standing for a
host (test_target_scripts.py's, not root: a fake id) whose store is a real
Nix store of its own (``local?root=`` in the folder: NIX_REMOTE in its
environment), and the controller's ``ssh`` faked on PATH (``FakeSsh``).

Only ssh itself is faked: the stages' store URIs, NIX_SSHOPTS, Nix's own
ssh-ng client, ``nix-daemon --stdio`` on the target, the real probe, fetch
and hop programs and ssh-agent all run. The fake ssh reads its destination
(wherever OpenSSH allows it among the options), finds the folder registered
for that address and runs the command there with sh, stdin passed on, as
sshd would; a forwarded agent (``ForwardAgent=SOCKET``) is that socket;
a LocalCommand runs here first, as ssh runs it once connected.
``ssh -G`` and ``ssh -V`` are the real ssh's. A host that is ``down`` gets
ssh's own refusal and exit 255. The closure: two paths built with /bin/sh,
``top`` referring to ``base``."""

import json
import os
import subprocess
import sys
import uuid

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.activation.test_target_scripts import Host as TargetFolder
from tests.unit.plugins.plugin_utils.stages.stage_nix import NIX_OPTIONS

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _role_vars, _specs)

NIX_DIR = os.path.dirname(os.path.realpath(
    subprocess.run(['sh', '-c', 'command -v nix'], check=True, stdout=subprocess.PIPE,
                   universal_newlines=True).stdout.strip()))
REAL_SSH = '/usr/bin/ssh'

# ssh's options that take an argument (OpenSSH's getopt string)
FAKE_SSH = r'''#!%(python)s -I
import json, os, subprocess, sys
WITH_ARG = set('BbcDEeFIiJLlmOopQRSWw')
args, dest, command, options = sys.argv[1:], None, [], {}
if '-G' in args or '-V' in args:
    os.execv(%(ssh)r, [%(ssh)r] + args)
i = 0
while i < len(args):
    word = args[i]
    if command:
        command.append(word)
    elif word == '--':
        rest = args[i + 1:]
        if dest is None:
            dest, rest = rest[0], rest[1:]
        command.extend(rest)
        break
    elif word.startswith('-') and len(word) > 1:
        if word[1] in WITH_ARG:
            value = word[2:]
            if not value:
                i += 1
                value = args[i]
            if word[1] == 'o':
                key, _sep, setting = value.partition('=')
                options.setdefault(key.lower(), setting)
            if word[1] == 'O':
                sys.stderr.write('Control socket connect: No such file or directory\n')
                sys.exit(255)
    elif dest is None:
        dest = word
    else:
        command.append(word)
    i += 1
host = dest.rsplit('@', 1)[-1]
registry = os.environ['FAKE_SSH_HOSTS']
with open(os.path.join(registry, 'log'), 'a') as log:
    log.write('%%s %%s\n' %% (host, ' '.join(command)[:200]))
try:
    with open(os.path.join(registry, host + '.json')) as handle:
        target = json.load(handle)
except OSError:
    target = None
if target is None or target.get('down'):
    sys.stderr.write('ssh: connect to host %%s port 22: Connection refused\n' %% host)
    sys.exit(255)
env = dict(target['env'])
forward = options.get('forwardagent', 'no')
if forward not in ('yes', 'no') and target.get('forwards_agent', True):
    env['SSH_AUTH_SOCK'] = forward
# once connected, ssh runs LocalCommand here (Nix 2.19+ waits for its 'started')
if options.get('permitlocalcommand') == 'yes' and options.get('localcommand'):
    subprocess.run(['/bin/sh', '-c', options['localcommand']], check=False)
    sys.stdout.flush()
os.execve('/bin/sh', ['sh', '-c', ' '.join(command) or 'sh'], env)
'''


class FakeSsh:
    """The controller's ssh, faked on PATH (``monkeypatch``): ``log()``
    the destinations and commands it was asked to run."""

    def __init__(self, folder, monkeypatch):
        self.registry = folder / 'ssh-hosts'
        self.bin = folder / 'ssh-bin'
        os.makedirs(str(self.registry))
        os.makedirs(str(self.bin))
        script = self.bin / 'ssh'
        script.write_text(FAKE_SSH % {'python': sys.executable, 'ssh': REAL_SSH})
        script.chmod(0o755)
        (self.registry / 'log').write_text('')
        monkeypatch.setenv('PATH', '%s:%s' % (self.bin, os.environ['PATH']))
        monkeypatch.setenv('FAKE_SSH_HOSTS', str(self.registry))
        # the hop agent's keys and the host keys the controller knows
        self.keys = folder / 'keys'
        os.makedirs(str(self.keys))
        for name in ('id_ed25519', 'host_ed25519'):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', name, '-f',
                            str(self.keys / name)], check=True, stdout=subprocess.DEVNULL)
        self.known_hosts = self.keys / 'known_hosts'
        self.known_hosts.write_text('')

    def common_args(self):
        """The connection's ssh args: our known_hosts and key, nothing of
        the user's (~/.ssh)."""
        return '-o UserKnownHostsFile=%s -o IdentitiesOnly=yes -i %s' % (
            self.known_hosts, self.keys / 'id_ed25519')

    def register(self, target):
        """``target`` answers at its address; the controller knows its key."""
        host_key = (self.keys / 'host_ed25519.pub').read_text().split()[:2]
        with open(str(self.known_hosts), 'a') as handle:
            handle.write('%s %s\n' % (target.address, ' '.join(host_key)))
        self.update(target)

    def update(self, target):
        (self.registry / ('%s.json' % target.address)).write_text(json.dumps({
            'env': target.env, 'down': target.down, 'forwards_agent': target.forwards_agent}))

    def log(self):
        return [line for line in (self.registry / 'log').read_text().splitlines() if line]


class StoreTarget(TargetFolder):
    """A target folder with a Nix store of its own (``store``: its URL),
    reached at ``address`` through ``ssh`` (a FakeSsh, or None).
    ``trusted``: its nix-daemon trusts the user (trusted-users)."""

    def __init__(self, root, address='127.0.0.1', ssh=None, trusted=True, config=''):
        os.makedirs(str(root))
        super(StoreTarget, self).__init__(root)
        self.address, self.ssh = address, ssh
        self.down, self.forwards_agent = False, True
        self.store = 'local?root=%s' % (root / 'store-root')
        self.env['NIX_REMOTE'] = self.store
        self.env['NIX_CONFIG'] = '\n'.join(
            ['experimental-features = nix-command', 'substituters ='] +
            (['trusted-users = root tester'] if trusted else []) + ([config] if config else []))
        if ssh is not None:
            self.env['FAKE_SSH_HOSTS'] = str(ssh.registry)
            self.env['PATH'] = '%s:%s' % (ssh.bin, self.env['PATH'])
            ssh.register(self)

    def set(self, **changes):
        """Change how ssh finds it (``down``, ``forwards_agent``)."""
        for key, value in changes.items():
            setattr(self, key, value)
        self.ssh.update(self)

    def give(self, path):
        """``path``'s closure in this target's store, as an earlier deploy left it."""
        subprocess.run(['nix', '--extra-experimental-features', 'nix-command', 'copy',
                        '--no-check-sigs', '--to', self.store, path], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def lacks(self, paths):
        """Those of ``paths`` this target's store does not hold."""
        proc = subprocess.run(['nix-store', '--store', self.store, '--check-validity',
                               '--print-invalid'] + list(paths), check=True,
                              stdout=subprocess.PIPE, universal_newlines=True)
        return proc.stdout.split()

    def gc_root(self, name):
        """Where the copy's GC root for host ``name`` points (None: none)."""
        link = os.path.join(self.env['XDG_STATE_HOME'], 'nixdeploy', 'gcroots', name)
        return os.readlink(link) if os.path.islink(link) else None


CLOSURE = r'''let
  sh = name: script: derivation { inherit name; system = builtins.currentSystem;
                                  builder = "/bin/sh"; args = [ "-c" script ]; };
  base = sh "copy-base-@TAG@" "echo base > $out";
in { inherit base; top = sh "copy-top-@TAG@" "echo ${base} > $out";
     other = sh "copy-other-@TAG@" "echo ${base} other > $out"; }
'''


class Closure:
    """New systems in the controller's store (a fresh tag): ``top`` (its
    closure: itself and ``base``); ``other`` (also on ``base``) instantiated
    only, ``build_other`` builds it."""

    def __init__(self, folder):
        os.makedirs(str(folder))
        self.file = folder / 'closure.nix'
        self.file.write_text(CLOSURE.replace('@TAG@', uuid.uuid4().hex[:12]))
        self.top, self.base = self._build('top'), self._build('base')
        self.other_drv = self._nix_build('other', ['nix-instantiate'])
        self.other = subprocess.run(
            ['nix-store', '-q', '--outputs', self.other_drv], check=True,
            stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()

    def _nix_build(self, attr, tool):
        return subprocess.run(tool + ['--option', 'substituters', '', str(self.file), '-A', attr],
                              check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True).stdout.strip()

    def _build(self, attr):
        return self._nix_build(attr, ['nix-build', '--no-out-link'])

    def build_other(self):
        subprocess.run(['nix-store', '--option', 'substituters', '', '--realise',
                        self.other_drv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def copy_args(task_vars=None, **given):
    """nix_copy_closure's arguments as its action has them: filled from the
    host's variables (``task_vars``: ``nix_out_path`` as a fact fills
    ``path``), validated against the module's spec. (args, Filled)."""
    given.setdefault('nix_options', dict(NIX_OPTIONS))
    given.setdefault('remote_nix_dir', NIX_DIR)
    filled = _role_vars.fill(_role_vars.COPY, given, task_vars or {}, lambda value: value, False)
    result = ArgumentSpecValidator(_specs.COPY_SPEC, **_specs.COPY_VALIDATION).validate(
        filled.args)
    assert not result.error_messages, result.error_messages
    args = dict(result.validated_parameters)
    for name in ('from_role_vars', 'record_stats'):
        args.pop(name, None)
    return args, filled
