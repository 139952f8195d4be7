# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: nix_publish
short_description: Push the built systems of a play batch to a binary cache, signed, for hosts that update themselves
version_added: 1.0.0
author:
  - nixdeploy.fleet contributors (@nixdeploy)
description:
  - Puts each host's built system into a binary cache, signed, so hosts that update themselves (pull
    deploys) substitute it instead of building it. You normally reach it through the role
    C(nixdeploy.fleet.publish) (C(ansible-playbook nixdeploy.fleet.publish); C(nix_publish_cache),
    C(nix_signing_key)).
  - Puts each host's built system, with its whole closure, into a binary cache (any store URI Nix takes,
    C(file://), C(s3://), C(ssh-ng://)), signed with O(signing_key), so hosts that update themselves can
    substitute it instead of building it.
  - The first host of the play batch publishes the systems of every host of the batch; the other hosts
    read their answer. One C(nix path-info) query asks the cache which closure paths it lacks or holds
    without a signature of the key, one C(nix copy --to) sends the systems missing something, and the same
    query afterwards proves that every path of each closure is in the cache, signed.
  - "Signing: a binary cache (C(file://), C(s3://), C(http(s)://)) signs on upload (C(secret-key=) is
    added to the URI), so the controller's store needs no trusted user. Any other store receives paths
    signed first in the controller's store (C(nix store sign)), which needs a trusted controller user.
    Paths the cache already holds without a signature of the key are signed there."
  - A host whose system is not in the controller's store (its build failed) fails and nothing of it is
    sent; a host whose closure did not reach the cache completely fails with Nix's message. The others
    are published.
  - A second publish of the same systems finds them in the cache and copies nothing (no change).
  - Sets the host fact C(nix_published_path), which M(nixdeploy.fleet.nix_channel) requires before it
    moves the host's channel.
extends_documentation_fragment:
  - nixdeploy.fleet.nix
  - action_common_attributes
  - action_common_attributes.flow
options:
  path:
    description:
      - The host's system, a store path in the controller's store.
      - Defaults to the host fact C(nix_out_path) that M(nixdeploy.fleet.nix_eval) sets.
    type: str
  cache:
    description:
      - The store URI of the binary cache, for example C(s3://fleet-cache?region=eu-west-1),
        C(file:///srv/cache) or C(ssh-ng://cache.example.org).
      - Query parameters pass through (C(?compression=zstd)). A C(secret-key=) in it wins over
        O(signing_key) for the upload; the check still requires a signature of O(signing_key)'s name.
      - "An http(s) cache that asks for a login takes it in the URI, C(https://USER:PASSWORD@host):
        every Nix command gets the URI without it and reads the login from a private netrc file
        (C(netrc-file), given in its environment, removed after the publish), so it is in no
        command line, result or message. A secret-named query parameter (C(?token=)) or a login on
        another kind of store is refused: Nix sends neither to the cache."
    type: str
    required: true
  signing_key:
    description:
      - A Nix secret key file on the controller (C(nix-store --generate-binary-cache-key NAME SECRET
        PUBLIC)). Hosts list the public half in C(trusted-public-keys).
      - Only the key's name appears in results (RV(signed_by)).
    type: path
    required: true
  timeout:
    description:
      - Seconds after which a Nix command is stopped. Default, no limit.
    type: int
attributes:
  action:
    support: full
    details: Runs on the controller; hosts are not contacted.
  async:
    support: none
  bypass_host_loop:
    support: none
    details: Runs once per host, but the first host of a play batch publishes the batch's systems.
  check_mode:
    support: full
    details: Sends and signs nothing; reports what is missing from the cache (RV(missing_paths)),
      or RV(would_build) when the system is not built yet. C(changed) says whether a real run would copy.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Uses the controller's nix (Nix 2.8 or later; the C(nix path-info --json) formats before and after
    Nix 2.19 are both read).
seealso:
  - module: nixdeploy.fleet.nix_build
  - module: nixdeploy.fleet.nix_channel
'''

EXAMPLES = r'''
- name: Evaluate and build every selected system
  nixdeploy.fleet.nix_eval:

- name: Build them
  nixdeploy.fleet.nix_build:

- name: Push them to the cache, signed (path defaults to the nix_out_path fact)
  nixdeploy.fleet.nix_publish:
    cache: s3://fleet-cache?region=eu-west-1&compression=zstd
    signing_key: /run/secrets/fleet-cache-1.secret
  register: published
'''

RETURN = r'''
path:
  description: The system published.
  returned: always
  type: str
  sample: /nix/store/4i05gkk2f6acn8xzxyva9s3daf6wk46s-nixos-system-web-1
cache:
  description: The cache URI as given, any credential in it masked.
  returned: always
  type: str
  sample: s3://fleet-cache?region=eu-west-1
signed_by:
  description: The name of the signing key; every path of the closure carries its signature in the cache.
  returned: when the key was read
  type: str
  sample: fleet-cache-1
closure_paths:
  description: Number of store paths in the system's closure.
  returned: when the system is in the controller's store
  type: int
  sample: 412
closure_bytes:
  description: Size of the closure (NAR bytes).
  returned: when the system is in the controller's store
  type: int
missing_paths:
  description: Paths of the closure the cache lacked (before this run).
  returned: when the system is in the controller's store
  type: int
  sample: 3
missing_bytes:
  description: Their size (NAR bytes).
  returned: when the system is in the controller's store
  type: int
unsigned_paths:
  description: Paths the cache held without a signature of the key (signed now).
  returned: when the system is in the controller's store
  type: int
copied:
  description: Whether this run copied paths of the closure to the cache.
  returned: always
  type: bool
would_build:
  description: In check mode, the system is not built yet; a real run builds it, then copies it.
  returned: in check mode, when the system is not in the controller's store
  type: bool
batch_hosts:
  description: How many hosts the batch publish answered.
  returned: always
  type: int
published_here:
  description: Whether this host's task ran the Nix processes for the batch.
  returned: always
  type: bool
nix_processes:
  description: How many Nix processes the publish needed (only on the host that ran them).
  returned: when published_here
  type: int
ansible_facts:
  description: Facts later tasks use.
  returned: success
  type: dict
  contains:
    nix_published_path:
      description: The system now in the cache, signed (in check mode, the one that would be).
      type: str
      returned: success
'''

from ansible_collections.nixdeploy.fleet.plugins.module_utils._module import controller_only
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import PUBLISH_SPEC


def main():
    controller_only('nix_publish', PUBLISH_SPEC)


if __name__ == '__main__':
    main()
