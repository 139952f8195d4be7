# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: nix_eval
short_description: Evaluate each host's Nix system on the controller, the first phase of a deploy
version_added: 1.0.0
author:
  - nixdeploy.fleet contributors (@nixdeploy)
description:
  - Finds the system (derivation and output path) each host of the play deploys, by evaluating its
    flake attribute (C(nix_attr) from the P(nixdeploy.fleet.nix#inventory) inventory) on the
    controller. You normally reach it through the role C(nixdeploy.fleet.deploy) (C(ansible-playbook
    nixdeploy.fleet.deploy -l vps)), whose first phase it is, and the role
    C(nixdeploy.fleet.publish); use it alone to evaluate without deploying.
  - Finds the derivation (C(.drv)) and output path of each host's system in a Nix flake, on the controller.
  - Runs per host like any task, but the first host of the play batch (C(ansible_play_batch), so C(-l) and
    C(serial) are honoured) starts ONE detached process that evaluates every host of the batch (forked from its
    worker in a new session, its file descriptors closed; it ends when done or when the C(ansible-playbook) process
    is gone). Hosts sharing one flake attribute are evaluated once.
  - "That process answers from the evaluation cache first (O(eval_cache)), then runs O(eval_workers) C(nix eval)
    processes side by side over even pieces of the rest, each ONE C(nix eval --apply) that traces each host's
    result as soon as it is known; each host's answer is written at that moment, and each host's task ends as soon
    as its own answer is there, so its build starts while others are still evaluated. An idle evaluator takes the
    back half of the waiting hosts of a process stuck on one host, and an evaluator over O(eval_max_memory_mb) is
    replaced by a fresh process after its current host."
  - An evaluation error fails only the host whose system has it, with Nix's own message (file and line);
    the hosts its process traced before keep their results and the hosts after it go to a new process.
  - A host whose batch's process ended or died without its answer fails with the tail of that process's log
    (a Python traceback cut to its last line; the whole one is shown at C(-vvv) only).
  - Sets the host facts C(nix_drv_path) and C(nix_out_path), which M(nixdeploy.fleet.nix_build) uses by default.
  - Nothing changes anywhere, so the task never reports C(changed).
  - "An evaluation never builds: C(allow-import-from-derivation = false) is passed to Nix as the O(nix_options)
    are (a C(NIX_CONFIG) line, never on the command line), also when M(nixdeploy.fleet.nix_build) evaluates
    a host itself; a system that imports from a derivation fails its host with Nix's message, nothing of
    the flake is built or run on the controller. O(nix_options) C(allow-import-from-derivation: true) turns
    it on."
extends_documentation_fragment:
  - nixdeploy.fleet.nix
  - nixdeploy.fleet.role_vars
  - action_common_attributes
  - action_common_attributes.flow
options:
  flake:
    description:
      - The flake holding the systems, a path (relative to the playbook) or a flake reference.
      - Defaults to the host var C(nix_flake) that the P(nixdeploy.fleet.nix#inventory) inventory sets.
    type: str
  attr:
    description:
      - Attribute path of the host's system in the flake outputs, dot-separated, names holding dots in double quotes.
      - Defaults to the host var C(nix_attr), else to the platform's system attribute (C(nix_platform)) of the
        configuration C(nix_configuration) or, without it, of the inventory host name.
    type: str
  eval_chunk_size:
    description:
      - At most this many distinct systems are evaluated by one C(nix eval) process.
      - By default the batch's systems are split evenly over the O(eval_workers) evaluators, so a
        shared part of the flake (a nixpkgs) is evaluated once per evaluator.
      - Its former name O(chunk_size) is a deprecated alias (until release 2.0.0).
    type: int
    aliases: [chunk_size]
  eval_workers:
    description:
      - How many C(nix eval) processes evaluate the batch side by side, as nix-eval-jobs' C(--workers).
      - Defaults to as many as the controller has cores, as its free memory less 1 GiB holds at
        O(eval_max_memory_mb) each, and as the batch has distinct systems; at least 1.
      - Each host's answer is delivered as soon as its evaluator has it; an evaluator that is done
        takes half of the waiting systems of the busiest one, so a slow system holds only itself.
    type: int
  eval_timeout:
    description:
      - Seconds one host's evaluation may take. The first host of an evaluator also holds what its
        hosts share (a nixpkgs). An evaluator over it is stopped; that host fails saying it took
        longer than the timeout, and the evaluator's other hosts go on in a fresh process.
      - By default 1800 (half an hour, far above what one host takes; a bound on an evaluator that
        hangs, such as a fetch that never ends); V(0), no limit.
    type: int
  eval_batch_timeout:
    description:
      - Seconds the evaluations of one play batch may take in all. At the bound, every evaluator is
        stopped and each host not answered yet fails, its message naming its configuration and this
        option; the hosts answered before keep their answers.
      - By default no bound beyond each host's own (O(eval_timeout)).
    type: int
  eval_max_memory_mb:
    description:
      - The memory (resident, in MiB) an evaluator may reach. After each system, an evaluator over it
        is replaced by a fresh process for the rest of its systems (nix-eval-jobs'
        C(--max-memory-size)); the evaluation's memory stays within O(eval_workers) times this plus
        one system's own.
    type: int
    default: 4096
  eval_cache:
    description:
      - Answer from the evaluation cache what an earlier run evaluated from the same locked flake
        (its narHash), attribute, Nix version and evaluation options; anything else is evaluated.
        A cached derivation that is no longer in the store is evaluated again.
      - The cache is kept in C($NIXDEPLOY_EVAL_CACHE), else C(~/.cache/nixdeploy-eval); a folder another
        account could swap or write is not used (the run warns once). An impure evaluation (C(impure),
        C(pure-eval = false), anything in O(nix_args) not known to be pure) is never cached, nor is a
        flake the run could not pin (RV(source)). A hit whose output is not its derivation's is evaluated
        again. See docs/eval-cache.md.
    type: bool
    default: true
  eval_reuse:
    description:
      - With O(eval_cache), answer a host of another commit (another content of the same flake) from
        its earlier evaluation while every file, folder listing, absent path and link of the flake that
        evaluation read is the same, and every attribute of C(self) it used (C(rev), C(lastModified),
        C(outPath)...) has the same value; its inputs, attribute, Nix and options must be the same too.
        Every evaluated host's reads are recorded for this (the evaluator runs under C(strace), which
        must be installed on the controller).
      - Nothing is reused, and the run says why once, where reads cannot all be seen (no strace or
        tracing refused, import-from-derivation allowed, Determinate Nix). RV(answered) says C(reused),
        RV(reused) from which content. See docs/eval-cache.md, "Reuse across commits".
    type: bool
    default: true
  eval_reuse_check:
    description:
      - At most how many hosts of each batch to evaluate again by Nix before their answers are
        given, as a spot check, drawn from the reused hosts and the hosts a recorded evaluator
        answers, the ones least recently checked first, within a budget of a quarter of the
        evaluation time reuse saved in the batch (each host's recorded cost). A host that does not
        fit waits; one reused ceil(n / eval_reuse_check) + 2 batches unchecked (n reused hosts) is
        checked whatever it costs, and so is one host of a recorder never checked (a new flake, Nix
        or record.nix). An answer that differs from the fresh one fails its host loudly and turns
        reuse off for that flake until the mark is removed (its other answers of the batch are
        evaluated by Nix; see docs/eval-cache.md, "The spot check"); 0 checks none.
    type: int
    default: 1
  max_fail_percentage:
    description:
      - "With C(serial) play batches, the share of the previous batch's hosts (in percent) that may have
        failed for this batch to start. Over it, no host of this batch is evaluated: each returns
        RV(stopped) and the reason, and the play is expected to end (the C(nixdeploy.fleet.deploy) role
        follows with C(meta: end_play)). A canary is C(serial: [1, ...]) with V(0)."
      - Ansible's own C(max_fail_percentage) play keyword is honoured only by the C(linear) strategy; a
        deploy runs on C(host_pinned) (a C(free) strategy), where this option takes its place. V(100), the default, stops nothing (only
        Ansible's own rule holds, the play stops when every host of a batch failed).
    type: int
    default: 100
  target_hosts:
    description:
      - The host's addresses in the order the login probe tries them (LAN, Wi-Fi, a tunnel), after the
        connection's own address (C(ansible_host)) when the list lacks it. The first one it logs in at is
        where every later task of the collection reaches the host for the rest of the run (copy,
        activation, confirmation, health checks). Read from the host variable C(nix_target_hosts) when not
        given (the P(nixdeploy.fleet.nix#inventory) inventory sets it from C(targetHosts)). An item that is
        no address fails the host, naming it.
    type: list
    elements: str
  probe_timeout:
    description:
      - Seconds each address has to let the login probe in. The probe is one ssh login with the host's own
        connection (user, port, key, ssh options, jump host), run while the batch is evaluated; a host it
        cannot reach gets nothing built or copied (see O(unreachable)).
      - V(0) turns the probe off; a play whose later tasks log in to no host sets it (the
        P(nixdeploy.fleet.publish#role) role does, since publishing needs no host). There is no probe for a
        connection that is not ssh, nor in a run whose tags select only the deploy role's phases that log in
        to no host (C(--tags eval); C(--tags build) with the build on the controller or on builders).
    type: int
    default: 10
  unreachable:
    description:
      - What a host the probe cannot reach at any address is. V(skip) returns Ansible's C(unreachable) (the
        recap's C(unreachable=), AWX's host summary), which ends the host for the play; ansible-playbook exits
        with its code for a run with unreachable hosts (4). V(fail) fails the host instead (exit code 2),
        naming each address and why it failed.
    type: str
    choices: [skip, fail]
    default: skip
  activates:
    description:
      - Whether the run activates the systems it evaluates. V(false) (the P(nixdeploy.fleet.status#role)
        role, which only reads the hosts) skips the check that the host's activation could run as root
        (its C(ansible_user) or C(ansible_become)), so a login that may only read is enough.
    type: bool
    default: true
  unknown_vars:
    description:
      - With O(from_role_vars), what a host variable whose name starts with C(nix_) and that no role of
        the collection, the P(nixdeploy.fleet.nix#inventory) inventory or an action knows (a typo such as
        C(nix_gaol)) does. V(warn) says it once a run with the nearest known name and the hosts that set it;
        V(error) fails each such host before anything is evaluated.
      - Every role variable of the option table is checked before anything is evaluated too (type, choices,
        sub-options), whichever phase reads it; a bad one fails its host with a message naming the
        variable (C(nix_goal)), never the module option.
    type: str
    choices: [warn, error]
    default: warn
attributes:
  action:
    support: full
    details: Runs on the controller; targets are not contacted.
  async:
    support: none
  bypass_host_loop:
    support: none
    details: Runs once per host, but only the first host of a play batch starts the batch's evaluation (a detached
      process); each host waits for its own answer.
  check_mode:
    support: full
    details: Evaluation changes nothing on any target.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The evaluation writes the derivations (C(.drv) files) into the controller's store, as C(nix eval) does.
  - "Arguments templated per host (for example O(attr) from a host var) batch as long as they equal the host
    vars C(nix_flake)/C(nix_attr); with other per-host values the batch evaluates the first host's, and the
    hosts it did not ask again together, in a wave of evaluators of its own (the shared part of the flake once
    per evaluator, never more at once than O(eval_workers) or its default)."
seealso:
  - module: nixdeploy.fleet.nix_build
'''

EXAMPLES = r'''
- name: Evaluate the systems of the selected hosts
  nixdeploy.fleet.nix_eval:
  register: evaluated

- name: Evaluate from an explicit flake, with a local override of an input
  nixdeploy.fleet.nix_eval:
    flake: ./fleet
    attr: nixosConfigurations.web.config.system.build.toplevel
    override_inputs:
      nixpkgs: path:/srv/nixpkgs
    nix_options:
      substituters: ""

- name: Show what each host would deploy
  ansible.builtin.debug:
    msg: "{{ evaluated.out_path }}"
'''

RETURN = r'''
details:
  description:
    - On a failed host, the batch's internals kept out of the printed failure (C(play_hosts),
      C(nix_processes), C(evaluation), C(batch), C(batch_hosts), C(evaluated_here),
      C(started_here), C(from_cache), C(source)); the summary and report callbacks read them here.
  returned: failed
  type: dict
drv_path:
  description: The derivation of the host's system.
  returned: success
  type: str
  sample: /nix/store/0im2pba7r3fdpdibj6ks2hakkl8n3rgp-nixos-system-web-1.drv
out_path:
  description: The output path the derivation builds (the system to deploy).
  returned: success
  type: str
  sample: /nix/store/4i05gkk2f6acn8xzxyva9s3daf6wk46s-nixos-system-web-1
system:
  description: The Nix system the derivation builds for.
  returned: success
  type: str
  sample: x86_64-linux
platform:
  description: The host's platform (C(nix_platform), else the flake output the attribute is in).
  returned: unless stopped
  type: str
  sample: nixos
attr:
  description: The attribute path evaluated.
  returned: unless stopped
  type: str
  sample: nixosConfigurations.web.config.system.build.toplevel
flake:
  description: The flake reference evaluated.
  returned: unless stopped
  type: str
  sample: path:/srv/fleet
batch_hosts:
  description: How many hosts the batch evaluation answered.
  returned: unless stopped
  type: int
  sample: 8
batch:
  description: The number of this play batch (1 for the first C(serial) batch, or the only one).
  returned: always
  type: int
  sample: 2
play_hosts:
  description: How many hosts the play has in all its batches (C(ansible_play_hosts_all)).
  returned: always
  type: int
  sample: 16
stopped:
  description:
    - The previous batch failed more hosts than O(max_fail_percentage) allows; nothing was evaluated and
      RV(msg) says why. Such a batch must not go on.
  returned: when the batch must not start
  type: bool
  sample: true
msg:
  description: Why the batch does not start (with RV(stopped)), or why the host failed.
  returned: when stopped or failed
  type: str
evaluated_here:
  description:
    - Whether this host's answer completed the batch's evaluation; that host carries the batch's
      figures (RV(nix_processes), RV(evaluation)), so they are counted once.
  returned: unless stopped
  type: bool
started_here:
  description:
    - Whether the wave of the batch's evaluation that answered this host was opened for it (its own
      request started that wave).
  returned: unless stopped
  type: bool
source:
  description:
    - What was evaluated, from the run's own pin of the flake (one content per run; every evaluator of
      the run evaluates RV(source.evaluated)). A git work tree with uncommitted changes is evaluated from
      the snapshot Nix copied to the store when the run pinned it, never read again.
  returned: when evaluated
  type: dict
  contains:
    url:
      description: The locked URL Nix gave (credentials masked).
      type: str
    evaluated:
      description: The pinned reference every evaluator of the run evaluated.
      type: str
      sample: path:/nix/store/2bbfk9d0pmygvisd8y4j1sfvl9i42c5i-source?narHash=sha256-0F...&lastModified=1795594793
    revision:
      description: The git commit, or null (a dirty tree, a C(path:) flake).
      type: str
    dirty:
      description: Whether it is a git work tree with uncommitted changes.
      type: bool
    dirty_revision:
      description: The commit under a dirty tree's changes (Nix 2.18+), or null.
      type: str
    nar_hash:
      description: The narHash of the content evaluated.
      type: str
    last_modified:
      description: Its lastModified time.
      type: int
    pinned:
      description: False when the run could not pin the flake (it then warned once; nothing of it is cached).
      type: bool
from_cache:
  description: Whether this host's answer came from the evaluation cache (O(eval_cache)) instead of Nix
    (RV(answered) is C(cached) or C(reused)).
  returned: unless stopped
  type: bool
answered:
  description:
    - How this host's answer was found. C(evaluated) by Nix (and its reads recorded where the cache is
      used), C(cached) from the evaluation cache for exactly this content, C(reused) from the evaluation of
      another content (an earlier commit) whose every recorded read and every attribute of C(self) it used
      are the same in this one.
    - See docs/eval-cache.md, "Reuse across commits".
  returned: unless stopped
  type: str
  choices: [evaluated, cached, reused]
  sample: reused
reused:
  description: Where a reused answer came from (RV(answered) is C(reused)).
  returned: when reused
  type: dict
  contains:
    from:
      description: The content it was evaluated from, as RV(source) describes one (url, revision, dirty,
        nar_hash, last_modified).
      type: dict
    checked:
      description: How many recorded paths were checked against this content.
      type: int
address:
  description: The address the login probe reached the host at; every later task of the collection reaches
    the host there.
  returned: when the probe reached the host
  type: str
  sample: 100.64.0.7
probe:
  description: What the login probe found.
  returned: when the probe ran
  type: dict
  contains:
    address:
      description: The address it logged in at; null when none answered.
      type: str
    tried:
      description: Each address that failed before, with the reason (C(no route), C(connection refused), C(timeout),
        C(jump failed), C(login refused), C(host key) ...) and ssh's own line. A host that refuses the login at
        every address fails; so does one whose key ssh refuses where its connection checks the key (one whose
        key is not checked is reached, and its later phases judge it).
      type: list
      elements: dict
    seconds:
      description: How long the probe took.
      type: float
    generation:
      description: The generation the host's system profile is on, as the probe's login read it (no write);
        null where it was not read (the inventory gives no C(nix_platform), a home-manager profile, no
        generation yet) or the probe logged in nowhere.
      type: int
unreachable:
  description: The probe reached the host at none of its addresses (O(unreachable=skip)).
  returned: when unreachable
  type: bool
unreachable_at:
  description: The addresses the probe tried in vain.
  returned: when the probe reached none
  type: list
  elements: str
nix_processes:
  description: How many C(nix eval) processes the batch needed (only on the host that completed it).
  returned: when evaluated_here
  type: int
  sample: 2
evaluation:
  description: The batch's evaluation figures (only on the host that completed it).
  returned: when evaluated_here
  type: dict
  contains:
    processes:
      description: C(nix eval) processes run (RV(nix_processes)).
      type: int
    other_processes:
      description: Other Nix processes of the evaluation (the cache's look at the locked flake and its store).
      type: int
    workers:
      description: Evaluators run side by side (0 when every answer came from the cache).
      type: int
    budget_mb:
      description: The memory budget, O(eval_workers) times O(eval_max_memory_mb).
      type: int
    peak_mb:
      description: The largest resident memory one evaluator reached (MiB, sampled every 0.1 s).
      type: int
    peak_total_mb:
      description: The largest resident memory of all evaluators at once (MiB, sampled).
      type: int
    from_cache:
      description: Hosts answered from the evaluation cache.
      type: int
    reused:
      description: Hosts answered by reusing another content's evaluation (RV(answered)).
      type: int
    evaluated:
      description: Hosts whose systems Nix evaluated.
      type: int
ansible_facts:
  description: Facts later tasks use.
  returned: success
  type: dict
  contains:
    nix_drv_path:
      description: Same as RV(drv_path).
      type: str
      returned: success
    nix_out_path:
      description: Same as RV(out_path).
      type: str
      returned: success
'''

from ansible_collections.nixdeploy.fleet.plugins.module_utils._module import controller_only
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import EVAL_SPEC


def main():
    controller_only('nix_eval', EVAL_SPEC)


if __name__ == '__main__':
    main()
