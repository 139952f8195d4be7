# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: nix_channel
short_description: Move each host's tested channel (a git ref) to the commit that was built and published
version_added: 1.0.0
author:
  - nixdeploy.fleet contributors (@nixdeploy)
description:
  - Moves the git ref each self-updating host follows (its tested channel) to the commit whose
    system was built and published, so a host only ever updates to a tested system. You normally
    reach it through the role C(nixdeploy.fleet.publish) (C(nix_channel_repo)), after
    M(nixdeploy.fleet.nix_publish).
  - A tested channel is one git ref per host (default C(nixos-tested-<inventory_hostname>)) in a git
    repository. A host that updates itself (C(system.autoUpgrade.flake)) follows its own ref, so it only
    ever moves to a commit whose system was built and put in the binary cache.
  - V(state=query) pins the host's flake to its commit with C(nix flake metadata --no-update-lock-file)
    and reads where the host's ref is. A flake that is not a git flake, a git tree with uncommitted changes
    and a lock file the commit does not hold are refused, since a host evaluating the commit must get the
    system the controller builds. Sets the facts C(nix_flake_revision) and C(nix_flake_pinned).
  - V(state=present) points the host's ref at O(revision). With O(require_published) (the default) only a
    host whose system is in the cache moves (the fact C(nix_published_path) that
    M(nixdeploy.fleet.nix_publish) sets equals O(path)); the others fail and keep their ref.
  - The first host of the play batch reads the refs of the whole batch with one C(git ls-remote) and
    pushes every ref that moves in one C(git push) (each ref updates on its own; one refused ref does not
    hold the others back); the other hosts read their answer. A ref already at the commit is not pushed,
    so a second publish of the same commit moves nothing.
  - A ref moves only forward (to a commit that contains its current one) unless O(force). A ref that
    already holds a newer commit containing O(revision) (a later publish finished first) is left there
    with a warning.
  - git runs as argv lists without prompts (C(GIT_TERMINAL_PROMPT=0)); credentials come from the
    controller's git and ssh configuration (ssh host keys checked as usual).
extends_documentation_fragment:
  - nixdeploy.fleet.nix
  - action_common_attributes
  - action_common_attributes.flow
options:
  repo:
    description:
      - The git repository holding the channel refs, a URL (C(git@github.com:org/fleet.git),
        C(https://...), C(file:///...)) or a local path (relative to the playbook).
    type: str
    required: true
  ref:
    description:
      - The host's channel, a branch name (C(refs/heads/) is added) or a full ref (C(refs/...)).
      - Defaults to the host var C(nix_channel_ref), else C(nixos-tested-<inventory_hostname>).
    type: str
  state:
    description:
      - V(present) moves the ref to O(revision); V(query) only pins the flake and reads the ref.
    type: str
    choices: [present, query]
    default: present
  flake:
    description:
      - The host's flake (default the host var C(nix_flake)). With V(state=query), the flake to pin.
        With V(state=present), the local checkout of a C(git+file://) flake is the default O(git_dir).
    type: str
  revision:
    description:
      - The commit (full id) the ref should point at. Defaults to the fact C(nix_flake_revision) that
        V(state=query) sets.
    type: str
  path:
    description:
      - The host's system built from O(revision). Defaults to the fact C(nix_out_path) that
        M(nixdeploy.fleet.nix_eval) sets.
    type: str
  require_published:
    description:
      - Move the ref only when O(path) is the host's published system (fact C(nix_published_path)).
      - Set V(false) to move refs without a cache (hosts then build the commit themselves).
    type: bool
    default: true
  git_dir:
    description:
      - A local git repository holding O(revision), the one C(git push) runs in.
      - Defaults to the checkout of a C(git+file://) O(flake).
    type: path
  force:
    description:
      - Let a ref move to a commit that does not contain its current one (a rewound branch). It still
        moves only from the commit just read (C(--force-with-lease)), never over a concurrent publish.
    type: bool
    default: false
  timeout:
    description:
      - Seconds after which a git command is stopped. Default, no limit.
    type: int
attributes:
  action:
    support: full
    details: Runs on the controller; hosts are not contacted.
  async:
    support: none
  bypass_host_loop:
    support: none
    details: Runs once per host, but the first host of a play batch reads and pushes the batch's refs.
  check_mode:
    support: full
    details: Pushes nothing (C(git push --dry-run)); C(changed) lists the hosts whose ref would move.
  diff_mode:
    support: full
    details: Shows the ref's commit before and after.
  platform:
    platforms: posix
notes:
  - "The batch moves only refs it knows exactly: each host's ref, commit and system come from host
    variables and facts. When this task's O(ref), O(revision) or O(path) are given as values that are not
    those variables, every host pushes its own ref alone (slower, same result)."
seealso:
  - module: nixdeploy.fleet.nix_publish
  - module: nixdeploy.fleet.nix_eval
'''

EXAMPLES = r'''
- name: Pin the flake to its commit (sets nix_flake_revision and nix_flake_pinned)
  nixdeploy.fleet.nix_channel:
    state: query
    repo: git@github.com:example/fleet.git
  register: source

- name: Evaluate the pinned commit
  nixdeploy.fleet.nix_eval:
    flake: "{{ source.flake }}"

- name: Build
  nixdeploy.fleet.nix_build:

- name: Publish
  nixdeploy.fleet.nix_publish:
    cache: s3://fleet-cache?region=eu-west-1
    signing_key: /run/secrets/fleet-cache-1.secret

- name: Move each host's nixos-tested-<host> branch to the commit
  nixdeploy.fleet.nix_channel:
    repo: git@github.com:example/fleet.git
'''

RETURN = r'''
ref:
  description: The host's channel ref.
  returned: when the request is valid
  type: str
  sample: refs/heads/nixos-tested-web1
revision:
  description: The commit the ref points at now (V(state=present)), or the flake's commit (V(state=query)).
  returned: success
  type: str
  sample: 9488d9ce56ac8c1aa8d5d89c2ed1b97ade3d8caf
before:
  description: The commit the ref pointed at before, null when it did not exist.
  returned: when the repository was read
  type: str
status:
  description: V(current) (already there), V(moved), V(new), V(would move) (check mode), V(ahead) (holds a
    newer commit containing the revision), V(refused).
  returned: with state=present, when the repository was read
  type: str
  sample: moved
moved:
  description: Whether the ref moved now.
  returned: with state=present, success
  type: bool
path:
  description: The host's system the ref now stands for.
  returned: with state=present
  type: str
flake:
  description: The flake pinned to its commit (use it to evaluate exactly that commit).
  returned: with state=query, success
  type: str
  sample: git+file:///srv/fleet?ref=main&rev=9488d9ce56ac8c1aa8d5d89c2ed1b97ade3d8caf
source:
  description: The flake reference before pinning.
  returned: with state=query, success
  type: str
would_move:
  description: Whether the ref is elsewhere than the flake's commit.
  returned: with state=query, success
  type: bool
repo:
  description: The repository (as given).
  returned: always
  type: str
batch_hosts:
  description: How many hosts the batch's git work answered (1 when this host worked alone).
  returned: when the request is valid
  type: int
  sample: 8
pushed_here:
  description: Whether this host's task ran the batch's git (and nix) processes.
  returned: when the request is valid
  type: bool
processes:
  description: How many git and nix processes the work needed (only on the host that ran them).
  returned: when pushed_here
  type: int
  sample: 2
ansible_facts:
  description: Facts later tasks use.
  returned: with state=query, success
  type: dict
  contains:
    nix_flake_revision:
      description: Same as RV(revision).
      type: str
      returned: with state=query, success
    nix_flake_pinned:
      description: Same as RV(flake).
      type: str
      returned: with state=query, success
'''

from ansible_collections.nixdeploy.fleet.plugins.module_utils._module import controller_only
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import CHANNEL_SPEC


def main():
    controller_only('nix_channel', CHANNEL_SPEC)


if __name__ == '__main__':
    main()
