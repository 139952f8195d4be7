# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One host of a closure cascade (``Peer``) and what the controller learns
about it: its probe's facts, what it lacks, its trust plan, the keys the
controller's ssh knows for it, whether the others can reach it and whether
it can send. ``_peer.CascadeDriver`` fills them in and runs the hops.
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (
    _cascade, _copy, _copy_send)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import Host

# a sender's ssh must bind the forwarded agent to each hop's host keys
# (session-bind@openssh.com) for the agent's destination constraints to let it
# log in to the receiver at all
MIN_SENDER_OPENSSH = (8, 9)


class Peer:
    """One host of a cascade and what the controller learns about it."""

    def __init__(self, name, target, path, site=_cascade.DEFAULT_SITE, peer_host=None,
                 remote_nix_dir=None):
        self.name = name
        self.target = target
        self.path = path
        self.site = site
        # the address other hosts reach it at (nix_peer_host), else Ansible's
        self.peer_host = peer_host
        self.remote_nix_dir = remote_nix_dir
        self.facts = None
        self.missing = []
        self.trust = None          # (no_check_sigs, via_sudo, how) from _copy.plan_trust
        self.error = None
        self.connection_lost = False
        self.host_keys = []        # 'type base64' lines the controller knows for it
        self.key_files = []        # the controller's private keys for it
        self.proxied = False       # reached through a jump host / proxy command
        self.warnings = []

    @property
    def peer_target(self):
        """How another host reaches this one's store (no controller options)."""
        return Host(address=self.peer_host or self.target.address, port=self.target.port,
                    user=self.target.user, name=self.name)

    @property
    def reachable_by_peers(self):
        # a host behind a jump host is likely not reachable from the others,
        # unless the inventory says where they reach it (nix_peer_host)
        return bool(self.host_keys and self.key_files) and (
            not self.proxied or bool(self.peer_host))

    @property
    def can_send(self):
        version = _copy.openssh_version((self.facts or {}).get('ssh_version'))
        return bool(self.facts and self.facts.get('ssh') and self.host_keys
                    and self.key_files and version and version >= MIN_SENDER_OPENSSH)

    def store_uri(self, target=None, compress=False):
        """The store URI of this peer (as ``target`` reaches it: a sender's
        own address of it), by its trust plan."""
        return _copy_send.store_address(target or self.target, self.facts['nix_dir'],
                                        self.trust[1], compress, self.target.become_user)
