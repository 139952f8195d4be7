# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cascade host as the controller's own ssh sees it.

The cascade (``_peer.CascadeDriver``) reaches every host with the controller's
ssh and the host's connection vars, and needs to know what that ssh knows:
the options it would use (``ssh -G``: plugin_utils/host/_host.py's
``Host.ssh_config``, read here), the host key lines its known_hosts
files hold for the host (``ssh-keygen -F``, under the name ssh looks it up
by), and the private keys it would log in with. Commands run here without a
controlling terminal, so nothing can ask for a password or passphrase.
"""

import os
import signal
import subprocess

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError


def known_host_name(conf):
    """The name ssh looks the host key up under (HostKeyAlias, [host]:port)."""
    alias = (conf.get('hostkeyalias') or ['none'])[0]
    if alias and alias != 'none':
        return alias
    host = (conf.get('hostname') or [''])[0]
    port = (conf.get('port') or ['22'])[0]
    return host if port == '22' else '[%s]:%s' % (host, port)


def parse_known_hosts(text):
    """'type base64' of each plain key line ssh-keygen -F printed. CA and
    revocation lines (@cert-authority, @revoked) are left out: such a host
    is not offered to peers (it gets a direct push)."""
    keys = []
    for line in (text or '').splitlines():
        words = line.split()
        if len(words) < 3 or words[0].startswith('#') or words[0].startswith('@'):
            continue
        key = '%s %s' % (words[1], words[2])
        if key not in keys:
            keys.append(key)
    return keys


def known_files(conf):
    files = []
    for option in ('userknownhostsfile', 'globalknownhostsfile'):
        for value in conf.get(option) or []:
            files += [os.path.expanduser(f) for f in value.split() if f != 'none']
    return [f for f in files if os.path.isfile(f)]


def host_keys(conf):
    name = known_host_name(conf)
    keys = []
    for path in known_files(conf):
        rc, out, _err = run_no_tty(['ssh-keygen', '-F', name, '-f', path])
        if rc == 0:
            keys += [k for k in parse_known_hosts(out) if k not in keys]
    return keys


def key_files(target, conf):
    files = [target.private_key_file] if target.private_key_file else []
    files += [os.path.expanduser(f) for f in conf.get('identityfile') or []]
    out = []
    for path in files:
        if path and os.path.isfile(path) and path not in out:
            out.append(path)
    return out


class TimedOut(NixdeployError):
    """A command run by ``run_no_tty`` did not end within its time limit
    (it was stopped, with its whole process group)."""


def run_no_tty(argv, stdin_data=None, env=None, timeout=None):
    """argv -> (rc, stdout, stderr); no controlling terminal, so nothing can
    ask for a password or passphrase. ``timeout``: seconds the command may
    take; past it the command and everything it started are killed and
    ``TimedOut`` is raised (an ssh whose ProxyJump hangs never ends by
    itself: ConnectTimeout bounds the target's login, not the jump's)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        # controller-only code (the nix_copy_closure action plugin), no AnsibleModule
        # to offer run_command: ansible-test 2.21+ flags subprocess in module_utils
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_data is not None  # pylint: disable=ansible-bad-function
                                else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=full_env, start_new_session=True,
                                universal_newlines=True, errors='replace')
    except OSError as exc:
        return 127, '', '%s: %s' % (argv[0], exc)
    try:
        out, err = proc.communicate(stdin_data, timeout=timeout)
    except subprocess.TimeoutExpired:
        # its own session: the group holds ssh and the jump's ssh it started
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # a process that left the group holds the pipes: not waited for
        raise TimedOut('%s gave no answer within %ss' % (argv[0], timeout))
    return proc.returncode, out, err
