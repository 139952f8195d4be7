# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The login of one cascade hop: a destination-constrained ssh-agent.

A hop is ``ssh SENDER sh`` running ``_copy_send.hop_script``, which copies to the
receiver over ``ssh-ng://``. Trust and access, per hop:
- host key: the sender checks the receiver's key against the lines the
  controller's own known_hosts holds for the receiver (``_peer_ssh``),
  written to a temp file on the sender under a fixed alias and removed when
  the hop ends;
- login: a dedicated ``ssh-agent`` started for this hop alone (``HopAgent``,
  stopped by its pid afterwards) holds the deploy key(s) with destination
  constraints (``ssh-add -h sender -h 'sender>receiver'``, bound to both host
  keys) and a lifetime, and is forwarded to the sender
  (``ForwardAgent=<socket>``): the sender can use it to log in to this
  receiver only, while the hop runs.
OpenSSH 10.1+ sshd makes folders for a forwarded agent (``~/.ssh/agent/``,
and ``~/.ssh`` when missing); the hop removes them again when the probe
found the sender without them (``hop_leftovers``).
"""

import os
import shutil
import socket
import subprocess
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import _copy_send
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._peer_ssh import (
    TimedOut, run_no_tty)

SENDER_ALIAS = 'nixdeploy-sender'
RECEIVER_ALIAS = _copy_send.HOP_ALIAS
# seconds the hop agent keeps a key even if nobody stops it (the controller
# died): the sender logs in to the receiver once, at the start of its hop
AGENT_LIFETIME = 300
# seconds the controller's own ssh-agent may take to listen, and ssh-add to
# load the keys into it: both local, done in milliseconds; past it the hop
# is not set up (HopError) and the receiver is served another way
AGENT_START_TIMEOUT = 10


class HopError(NixdeployError):
    """The controller could not set a hop up (its own agent or key)."""


def hop_leftovers(facts):
    """Values for target/copy-hop.sh: the folders OpenSSH 10.1+ sshd makes for
    a forwarded agent (``~/.ssh``, ``~/.ssh/agent``) that the sender's probe
    did not find, so the hop removes them again when it ends."""
    facts = facts or {}
    return {'SSH_DIR_NEW': facts.get('ssh_dir') == 'no',
            'AGENT_DIR_NEW': facts.get('ssh_agent_dir') == 'no'}


def _accepts(path):
    """Whether a unix socket at ``path`` accepts connections."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


class HopAgent:
    """An ssh-agent for one hop, holding the deploy key(s) with destination
    constraints; started and stopped by its pid, its folder removed."""

    def __init__(self, folder):
        self.folder = folder
        self.sock = os.path.join(folder, 'agent')
        self.proc = None

    def start(self, keys, sender_keys, receiver_keys):
        hostkeys = os.path.join(self.folder, 'hostkeys')
        with open(hostkeys, 'w') as handle:
            for alias, lines in ((SENDER_ALIAS, sender_keys), (RECEIVER_ALIAS, receiver_keys)):
                for key in lines:
                    handle.write('%s %s\n' % (alias, key))
        try:
            # a process of its own, stopped by its pid (see _peer_ssh.run_no_tty for the pylint note)
            self.proc = subprocess.Popen(['ssh-agent', '-D', '-a', self.sock],  # pylint: disable=ansible-bad-function
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise HopError('cannot start ssh-agent on the controller: %s' % exc)
        # the socket file exists from bind(), before the agent listens: wait
        # until it accepts a connection, or ssh-add meets "connection refused"
        deadline = time.time() + AGENT_START_TIMEOUT
        while not _accepts(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                raise HopError('ssh-agent on the controller did not start')
            time.sleep(0.01)
        argv = ['ssh-add', '-q', '-t', str(AGENT_LIFETIME), '-H', hostkeys,
                '-h', SENDER_ALIAS, '-h', '%s>%s' % (SENDER_ALIAS, RECEIVER_ALIAS)] + list(keys)
        try:
            rc, _out, err = run_no_tty(argv, env={'SSH_AUTH_SOCK': self.sock,
                                                  'SSH_ASKPASS_REQUIRE': 'never'},
                                       timeout=AGENT_START_TIMEOUT)
        except TimedOut:
            raise HopError('ssh-add on the controller did not load the deploy key into the '
                           'hop\'s agent within %ss' % AGENT_START_TIMEOUT)
        if rc != 0:
            raise HopError('cannot load the deploy key into a destination-constrained agent '
                           '(ssh-add -h needs OpenSSH 8.9; a key with a passphrase cannot be '
                           'loaded unattended): %s' % (err.strip()[-300:] or 'exit %d' % rc))
        return self.sock

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
