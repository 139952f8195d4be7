# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""THE table of the phase modules' options that the deploy role sets from its
variables: option, role variable, default (in the spec), scope, modules, and
what the role says of it (``description``).

Everything else follows it: the modules' argument specs take these entries
(``spec``), the action base fills the options a task leaves unset from the
variables (``fill``), a batch computes each other host's value of a per-host
option from that host's own variable (``Filled.for_host``). The files that
repeat a row are written from it by ``python -m tests.docsite.role_spec_gen``:
the deploy role's argument spec entry and default (roles/deploy/meta/
argument_specs.yml, roles/deploy/defaults/main.yml), the doc fragment
``role_vars``'s lists of which options are filled from which variables, and
docs/roles.md; tests/unit/roles/test_generated_role_files.py fails while one
is not what the table makes. A row's one hand-written copy is its module's
DOCUMENTATION (for the module's user, in the option's name), which
ansible-test sanity (validate-modules) checks against the spec both ways.

A row's variable is always ``nix_`` + its option (an option whose name
starts with ``nix_`` is its own variable). Older irregular names stay until
the next major release (``REMOVED_IN``) as deprecated aliases: a variable
(``old``) read when the new one is not defined, an option name
(``old_option``) kept as an alias.

Scope: ``batch`` options are one value for the whole play batch (part of
what two hosts must share to share one computation); ``host`` options differ
per host: the batch reads each host's own variable for them when this host's
value is its own variable's (filled from it, or a task argument templated
from it, as ``path: "{{ deploy_eval.out_path }}"`` is the fact
``nix_out_path``). ``inventory`` rows are read from the host's variable even
without ``from_role_vars``: the Nix inventory sets them, and the modules
document that default (and ``host_key_unchecked``, the opt-out of host key
checking, is a host's own setting: nix_keys and nix_build read the variable
too). ``fact`` names the fact an action set that stands for
the option (a fact wins over a variable of the same name).

The check: nix_eval, the deploy role's first phase, validates every row's
variable a host has (``variable_problems``: ansible's own argument-spec
validation of the row's spec, a message naming the variable and, for a
choice, the nearest one) before anything is evaluated, and names the
``nix_*`` variables no row, role, inventory or action knows
(``unknown_variables``, ``OTHER_VARIABLES``); every phase checks the options
it filled from variables under the variables' names (``filled_problems``).

Why variables at all: every templated task argument costs the controller a
Jinja compilation in the task's worker for every host and task; the role
passes each phase's own inputs and ``from_role_vars`` (docs/benchmarks.md,
"Overhead").
"""

import difflib
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import ArgumentTypeError

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (
    _copy_modes, _health_kinds, _options, _phases, _platforms)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._options import NIX_OPTIONS

# the phase modules of the table: the phases that record (module_utils/_phases.py)
PHASES = _phases.RECORDING
EVAL, BUILD, COPY, ACTIVATE = PHASES
# the release that drops the deprecated names: a removal waits for a major release
REMOVED_IN = '2.0.0'
COLLECTION = 'nixdeploy.fleet'

FLAG = 'from_role_vars'
FLAG_SPEC = {'type': 'bool', 'default': False}
# what nix_eval does with a nix_* variable that is no known one (nix_unknown_vars)
UNKNOWN_VARS = ('warn', 'error')


def fact_or_var(host_vars, name):
    """A host's fact ``name`` (as set by an action's ``ansible_facts``, e.g.
    ``nix_out_path`` from nix_eval), else its variable of that name, else None.

    Facts are read under ``ansible_facts``: ansible-core injects them as
    top-level variables only while INJECT_FACTS_AS_VARS is on (deprecated in
    2.20, off by default from 2.24). A fact wins over an inventory variable
    of the same name, as it does when injected.
    """
    facts = host_vars.get('ansible_facts') or {}
    value = facts.get(name) if hasattr(facts, 'get') else None
    if value in (None, ''):
        value = host_vars.get(name)
    return None if value in (None, '') else value


class Row(object):
    """One option of the table. ``description``: its paragraphs as the deploy
    role says them (Ansible's markup; its variable's name, not the option's);
    ``sub_descriptions``: each sub-option's, by its path below the option
    (``http.url``); ``version_added``: the release that added the variable."""

    __slots__ = ('option', 'variable', 'modules', 'scope', 'spec', 'inventory', 'fact',
                 'old', 'old_option', 'description', 'sub_descriptions', 'version_added')

    def __init__(self, option, modules, spec, scope='batch', inventory=False, fact=None,
                 old=None, old_option=None, description=(), sub_descriptions=None,
                 version_added=None):
        self.option = option
        self.variable = option if option.startswith('nix_') else 'nix_' + option
        self.modules, self.spec, self.scope = modules, spec, scope
        self.inventory, self.fact, self.old, self.old_option = inventory, fact, old, old_option
        self.description, self.version_added = description, version_added
        self.sub_descriptions = sub_descriptions or {}

    @property
    def default(self):
        return self.spec.get('default')

    def own_value(self, variables):
        """(value, variable name) of this row's variable in ``variables``,
        the deprecated name when only it is defined; (None, None) when
        neither is."""
        for name in (self.variable, self.old):
            if name and name in variables:
                return variables[name], name
        return None, None

    def host_value(self, host_vars):
        """What ``host_vars`` (a host's variables, as hostvars) give this
        option: its fact, else its variable (or the deprecated name), else
        None."""
        if self.fact:
            return fact_or_var(host_vars, self.fact)
        for name in (self.variable, self.old):
            if name:
                value = host_vars.get(name)
                if value not in (None, ''):
                    return value
        return None


# a folder on the target: a string (type path would expand ~ on the controller)
_PATH = {'type': 'str'}

# The health checks' sub-options, by their path below the option (the kinds'
# specs are module_utils/_health_kinds.py's rows).
_HEALTH_CHECK_TEXT = {
    'name': ("The check's name, unique among the checks; failures name it.",),
    'command': ("A POSIX sh command run on the host; exit code 0 means healthy.",),
    'http': ("A GET request made from the controller.",),
    'http.url': ("An C(http://) or C(https://) URL.",),
    'http.status': ("The status code a healthy answer has.",),
    'http.body': ("A Python regular expression the answer's body must contain a match of.",),
    'http.validate_certs': ("Check the server's TLS certificate.",),
    'http.follow_redirects': (
        "C(none) follows no redirect (the 3xx is the answer); C(same_host) follows redirects "
        "to the same scheme, host and port as the check's C(url) only.",),
    'tcp': ("A TCP connection made from the controller, which the port must accept within the "
            "check's C(timeout).",),
    'tcp.port': ("The port that must accept connections.",),
    'tcp.host': (
        "The host name or address to connect to; by default where Ansible's connection reaches "
        "the host (C(ansible_host), else the inventory name).",),
    'unit': ("A systemd unit that must be active on the host.",),
    'retries': ("Tries after the first before the check fails.",),
    'interval': ("Seconds between tries.",),
    'timeout': ("Seconds one try may take.",),
}

# In the order docs/roles.md lists them: the phases' own, then the Nix options.
ROWS = (
    # nix_eval (and nix_build when it is given no derivation)
    Row('flake', (EVAL, BUILD), {'type': 'str'}, scope='host', inventory=True, description=(
        "Flake reference holding the host's system. Normally set per host by the "
        "C(nixdeploy.fleet.nix) inventory plugin; set it (e.g. as an extra var) to deploy "
        "every selected host from another checkout of the flake.",)),
    Row('attr', (EVAL, BUILD), {'type': 'str'}, scope='host', inventory=True, description=(
        "Flake attribute of the host's system, e.g. "
        "C(nixosConfigurations.web1.config.system.build.toplevel). Normally set per host by "
        "the inventory plugin; without it the modules derive it from C(nix_platform) and "
        "C(nix_configuration) or the inventory host name.",)),
    Row('eval_chunk_size', (EVAL,), {'type': 'int'}, old_option='chunk_size', description=(
        "At most this many hosts evaluated per Nix process. By default the batch's systems are "
        "split evenly over the evaluators (nix_eval_workers).",)),
    Row('eval_workers', (EVAL,), {'type': 'int'}, description=(
        "Evaluator processes run side by side. By default as many as the controller has cores "
        "and its free memory holds at nix_eval_max_memory_mb each.",)),
    Row('eval_max_memory_mb', (EVAL,), {'type': 'int', 'default': 4096}, description=(
        "Resident memory (MiB) after which an evaluator is replaced by a fresh process for the "
        "rest of its systems, as nix-eval-jobs' --max-memory-size.",)),
    Row('eval_timeout', (EVAL,), {'type': 'int'}, description=(
        "Seconds one host's evaluation may take (the first host of an evaluator also holds "
        "what its hosts share, such as nixpkgs). An evaluator over it is stopped: that host "
        "fails saying so, and its other hosts are evaluated by a fresh process. By default "
        "no limit.",)),
    Row('eval_cache', (EVAL,), {'type': 'bool', 'default': True}, description=(
        "Answer from the evaluation cache what an earlier run evaluated from the same locked "
        "flake, attribute, Nix version and options (docs/eval-cache.md).",)),
    Row('eval_reuse', (EVAL,), {'type': 'bool', 'default': True}, description=(
        "With nix_eval_cache, answer a host of another commit from its earlier evaluation "
        "while everything that evaluation read of the flake is the same (strace on the "
        "controller; docs/eval-cache.md, \"Reuse across commits\").",)),
    Row('eval_reuse_check', (EVAL,), {'type': 'int', 'default': 1}, description=(
        "Reused hosts per batch evaluated again as a spot check, the least recently checked "
        "first; a difference fails the host and turns reuse off for the flake until the mark "
        "is removed (docs/eval-cache.md, \"The spot check\"). C(0) checks none.",)),
    Row('max_fail_percentage', (EVAL,), {'type': 'int', 'default': 100}, description=(
        "With C(serial) batches (C(nix_serial)), the share of a batch's hosts (in percent) "
        "that may fail for the next batch to start; over it the play ends before the next "
        "batch touches any host. C(0) with C(nix_serial=[1, \"100%\"]) is a canary that stops "
        "the rest when it fails. Checked by the first task of each batch (C(host_pinned) and "
        "C(free) ignore the C(max_fail_percentage) play keyword). Whatever this says, a batch "
        "whose every host failed ends the play (Ansible's own rule).",)),
    # the login probe beside the evaluation (plugin_utils/task/_reach.py)
    Row('target_hosts', (EVAL, ACTIVATE), {'type': 'list', 'elements': 'str'}, scope='host',
        inventory=True, description=(
            "The host's addresses in the order they are tried (LAN, Wi-Fi, a tunnel), after "
            "C(ansible_host) when the list lacks it: the first one at which the login probe logs "
            "in is where the whole run reaches the host (copy, activation, health checks); a "
            "login of the activation that fails there tries them again. Set by the inventory "
            "plugin from C(targetHosts). docs/networks.md.",)),
    Row('probe_timeout', (EVAL,), {'type': 'int', 'default': 10}, description=(
        "Seconds each of a host's addresses has to let the login probe in. The probe runs "
        "beside the evaluation and finds the hosts that cannot be reached before anything is "
        "built or copied for them. C(0) turns it off; a run with C(--tags eval) does not "
        "probe.",)),
    Row('unreachable', (EVAL,), {'type': 'str', 'default': 'skip', 'choices': ['skip', 'fail']},
        description=(
            "What a host the login probe cannot reach at any of its addresses is. V(skip): "
            "Ansible's unreachable (the recap's C(unreachable=), AWX's host summary); nothing "
            "is built or copied for it, the other hosts go on, and the run ends with "
            "ansible-playbook's exit code for unreachable hosts (4). V(fail): a failed host "
            "(exit code 2), counted by C(nix_max_fail_percentage). Either way the summary "
            "names each such host with the reason and writes their names to "
            "C(nixdeploy-unreachable.txt) for C(-l @nixdeploy-unreachable.txt).",)),
    # a nix_* variable no role knows (a typo): warned of once, or each such host failed
    Row('unknown_vars', (EVAL,), {'type': 'str', 'default': 'warn', 'choices': list(UNKNOWN_VARS)},
        description=(
            "What a host variable whose name starts with C(nix_) and that no role of the "
            "collection, the Nix inventory or an action knows (a typo such as C(nix_gaol)) does, "
            "checked by the first phase before anything is evaluated. V(warn) says it once a "
            "run, with the nearest known name and the hosts that set it; V(error) fails each "
            "such host.",
            "Every other role variable is checked then too (type, choices, sub-options), "
            "whichever phase reads it; a bad one fails its host before evaluation, naming the "
            "variable.")),
    # nix_build
    # a string (names separated by commas) or a list: _builders.parse_build_on
    Row('build_on', (BUILD,), {'type': 'raw', 'default': 'controller'}, scope='host',
        inventory=True, description=(
            "Where systems are built. C(controller) builds the whole batch in one C(nix build) "
            "on the controller. C(target) builds each system on its own host (colmena's "
            "C(buildOnTarget), deploy-rs' C(remoteBuild)); nothing is copied then.",
            "Any other value names one or more builders, each an inventory host name or an ssh "
            "store URI, as a list or one string separated by commas. Each builder is probed "
            "before use (ssh login, its store, the systems and features it builds, free disk); "
            "unhealthy ones are skipped and named in the build result and the summary, and the "
            "systems are spread over the healthy ones. With none usable the host fails at build "
            "with each builder's reason.")),
    Row('gc_root_dir', (BUILD,), {'type': 'path', 'default': '/nix/var/nix/gcroots/nixdeploy'},
        description=(
            "Controller directory of the garbage collector roots that keep each host's deployed "
            "system alive in the controller's store (one per inventory host).",)),
    Row('closure_diff', (BUILD, ACTIVATE), {'type': 'bool', 'default': True}, description=(
        "In diff mode, show each host's closure difference (C(nix store diff-closures) on the "
        "controller). Needs both the running and the new system in the controller's store; in "
        "check mode the new system is built on the controller for it (never on a host).",)),
    # nix_copy_closure
    # the modes' table says what each does (module_utils/_copy_modes.py)
    Row('copy_mode', (COPY,), {'type': 'str', 'default': 'push',
                               'choices': list(_copy_modes.NAMES)},
        scope='host', old_option='mode',
        description=tuple('C(%s) %s' % (mode.name, mode.description)
                          for mode in _copy_modes.ROWS)),
    Row('caches', (COPY,), {'type': 'list', 'elements': 'str', 'default': []}, description=(
        "Binary cache URLs for O(nix_copy_mode=cache).",)),
    Row('compress', (COPY,), {'type': 'bool', 'default': False}, description=(
        "Compress the ssh stream of the copy (worth it on slow links only).",)),
    Row('check_sigs', (COPY,),
        {'type': 'str', 'default': 'auto', 'choices': ['auto', 'true', 'false']}, description=(
            "Whether the host checks signatures of the copied paths. C(auto) checks unless the "
            "deploy user is trusted by the host's Nix.",)),
    Row('signing_key', (COPY,), {'type': 'path', 'no_log': True}, description=(
        "Secret key file (C(nix-store --generate-binary-cache-key)) the controller signs the "
        "closure with before copying. Needed when the ssh user of a host is not a trusted Nix "
        "user there (nix-darwin via C(deploy) + sudo, home-manager users); the host must list "
        "the public key in C(trusted-public-keys).",)),
    Row('free_space_margin', (COPY,), {'type': 'float', 'default': 1.1}, description=(
        "The copy fails before sending anything when the free space of the file system holding "
        "a host's C(/nix/store) is less than the NAR size of the paths it lacks times this "
        "margin, plus 4 KiB per path and 8 MiB (Nix's database, the activation); the message "
        "names both figures. V(0) turns the check off.",)),
    Row('remote_nix_dir', (BUILD, COPY, ACTIVATE), dict(_PATH), scope='host', inventory=True,
        description=(
            "Directory holding C(nix) on the hosts when their non-login ssh shell has no nix on "
            "PATH. By default the modules look in the known places (macOS, nix-on-droid).",)),
    # nix_activate
    Row('platform', (ACTIVATE,), {'type': 'str', 'choices': list(_platforms.PLATFORM_ORDER)},
        scope='host', inventory=True, description=(
            "What kind of system the host runs. Normally set per host by the inventory plugin.",)),
    Row('goal', (ACTIVATE,),
        {'type': 'str', 'default': 'switch', 'choices': list(_platforms.GOALS)}, description=(
            "C(switch) activates now and makes the system the boot default (on NixOS with magic "
            "rollback once it is confirmed: a host that restarts unconfirmed boots the previous "
            "system); C(boot) only sets "
            "the boot default; C(test) activates without touching the boot default; "
            "C(dry-activate) only prints what would change.",
            "Darwin, nix-on-droid and home-manager know only C(switch) (C(dry-activate) is "
            "honoured by nix-on-droid).",
            "Magic rollback applies to C(switch) and C(test) only.")),
    Row('magic_rollback', (ACTIVATE,), {'type': 'bool', 'default': True}, description=(
        "Roll back on the host unless a new ssh connection confirms the new system within "
        "O(nix_confirm_timeout) seconds.",)),
    Row('confirm_timeout', (ACTIVATE,), {'type': 'int', 'default': 30}, description=(
        "Seconds the host waits for the confirmation before it rolls back.",)),
    Row('auto_rollback', (ACTIVATE,), {'type': 'bool', 'default': True}, description=(
        "Roll back when the activation itself fails.",)),
    Row('activation_timeout', (ACTIVATE,), {'type': 'int', 'default': 240}, description=(
        "Seconds an activation may take before it counts as failed.",)),
    Row('lock_timeout', (ACTIVATE,), {'type': 'int', 'default': 60}, description=(
        "Seconds to wait for another deploy's lock on the same host.",)),
    Row('profile', (ACTIVATE,), dict(_PATH), description=(
        "Override the profile the system is installed into (default from the platform).",)),
    Row('health_checks', (ACTIVATE,), _health_kinds.HEALTH_CHECKS, description=(
        "Health checks that decide whether the host is fine on its new system. They run after "
        "the activation and before the confirmation; the first check that fails all its tries "
        "fails the host, which rolls back (with magic rollback its watchdog at once, without "
        "it with C(nix_auto_rollback)). They also run after a reboot, and are skipped in check "
        "mode. See C(docs/health-checks.md).",
        "Each item has a C(name), exactly one of C(command) (POSIX sh run on the host, exit 0 "
        "is healthy), C(http) (a GET from the controller, a dict with C(url), C(status) "
        "(C(200)), C(body) (a regular expression the body must match), C(validate_certs) "
        "(C(true)) and C(follow_redirects) (C(none) or C(same_host))), C(tcp) (a connection "
        "from the controller that the port must accept, a dict with C(port) and C(host) (the "
        "host's C(ansible_host))) or C(unit) (a systemd unit that must be active), and "
        "C(retries) (tries after the first, C(3)), C(interval) (seconds between tries, C(2)) "
        "and C(timeout) (seconds per try, C(10)).",
        "With magic rollback the confirmation window grows by the longest the checks can "
        "take."), sub_descriptions=_HEALTH_CHECK_TEXT),
    Row('reboot', (ACTIVATE,),
        {'type': 'str', 'default': 'never', 'choices': list(_options.REBOOT_MODES)}, description=(
            "Reboot NixOS hosts after deploying. C(when-needed) reboots when the kernel, initrd, "
            "kernel modules or systemd differ between C(/run/booted-system) and the new system, "
            "or when switch inhibitors refused the switch.",
            "A rebooting host gets the new system as its boot default, reboots, must come back "
            "with a new boot id within O(nix_reboot_timeout) seconds and on the new system, "
            "then passes O(nix_health_checks); otherwise its previous generation is the boot "
            "default again and it fails. Reboots follow the play's batches (C(nix_serial)); "
            "with C(-e nix_reboot=...) the deploy playbook's batches default to one host.")),
    Row('reboot_timeout', (ACTIVATE,), {'type': 'int', 'default': 600}, description=(
        "Seconds a rebooting host has to come back with a new boot id before it counts as "
        "failed.",)),
    Row('pre_switch_checks', (ACTIVATE,), {'type': 'bool', 'default': True}, description=(
        "Let NixOS's pre-switch checks (switch inhibitors, NixOS 25.11+) refuse a switch whose "
        "critical components (systemd, dbus) changed. A refused switch changes nothing; with "
        "O(nix_reboot=when-needed) the host boots the new system instead, otherwise it fails "
        "naming the inhibitor. C(false) switches anyway (C(NIXOS_NO_CHECK=1)).",
        "The checks run for dry runs too (C(--check), C(nix_goal=dry-activate)), with the "
        "same setting.")),
    Row('install_bootloader', (ACTIVATE,), {'type': 'bool', 'default': False}, description=(
        "NixOS. Have C(switch-to-configuration) install the boot loader again "
        "(C(NIXOS_INSTALL_BOOTLOADER=1), as C(nixos-rebuild --install-bootloader)); it is "
        "always passed, as C(0) by default.",)),
    Row('backup_extension', (ACTIVATE,), {'type': 'str'}, old='nix_hm_backup_extension',
        description=(
            "home-manager. Move a file that is in the way of one the configuration manages "
            "aside with this extension instead of failing the activation "
            "(C(HOME_MANAGER_BACKUP_EXT), the C(-b) of C(home-manager switch)). Unset by "
            "default.",)),
    Row('reactivate', (ACTIVATE,), {'type': 'bool', 'default': False}, description=(
        "Run the activation even when the host already runs the wanted system, as deploy-rs "
        "and colmena always do. On NixOS that restarts units that failed, so a host left with "
        "a failed unit is repaired by deploying again with C(-e nix_reactivate=true). Such a "
        "run counts as a change and has no magic rollback (there is no other system to go "
        "back to).",
        "C(false) (the default) keeps a second identical deploy free of changes.")),
    # the opt-out for a host whose key ssh does not check (plugin_utils/task/_action.py):
    # a host's own setting, read from its variable whoever runs the task
    Row('host_key_unchecked', (COPY, ACTIVATE), {'type': 'bool', 'default': False},
        scope='host', inventory=True, description=(
            "A host whose key ssh does not check (Ansible's C(host_key_checking) off, which "
            "ansible-runner, AWX and ansible-navigator do in every job's environment, or "
            "C(StrictHostKeyChecking=no), or known_hosts files that are all C(/dev/null)) is "
            "refused before anything is copied, built on it or activated, naming the fix "
            "(C(ansible_host_key_checking: true) in group_vars beats the environment; see "
            "docs/troubleshooting.md).",
            "C(true), for such a host (in host_vars), deploys it anyway with a warning; its "
            "results say C(host_key_unchecked: true) and the summary line says C(host key "
            "unchecked).")),
    # the Nix options (module_utils/_options.py), every phase's: each is its own variable
    Row('nix_bin', PHASES, NIX_OPTIONS['nix_bin'], description=(
        "The C(nix) executable on the controller.",)),
    Row('nix_args', PHASES, NIX_OPTIONS['nix_args'], description=(
        "Extra arguments for every C(nix) call on the controller, one argument per item.",)),
    Row('nix_options', PHASES, NIX_OPTIONS['nix_options'], description=(
        "Nix settings on the controller, passed as C(NIX_CONFIG) lines (never on a command "
        "line, which C(ps) shows), for example C(substituters) set to an empty string, or "
        "C(max-jobs).",)),
    Row('impure', PHASES, NIX_OPTIONS['impure'], description=(
        "Evaluate with C(--impure).",)),
    Row('show_trace', PHASES, NIX_OPTIONS['show_trace'], description=(
        "Evaluate with C(--show-trace).",)),
    Row('override_inputs', PHASES, NIX_OPTIONS['override_inputs'], description=(
        "Flake inputs to override, name to flake reference.",)),
)
BY_OPTION = dict((row.option, row) for row in ROWS)

# Inputs that stand for a per-host option of one module but are no role
# variable: the facts nix_eval sets (the role passes them as arguments).
FACT_ROWS = {
    BUILD: (Row('drv_path', (BUILD,), {'type': 'str'}, scope='host', fact='nix_drv_path'),),
    COPY: (Row('path', (COPY,), {'type': 'str', 'required': True}, scope='host',
               fact='nix_out_path'),),
}


# The nix_* variables that are no row of the table and still mean something:
# the roles' own (roles/*/meta/argument_specs.yml, checked both ways by
# tests/unit/roles/test_role_options.py), the playbooks' and the callbacks',
# the Nix inventory's host variables (plugins/plugin_utils/inventory/, checked
# by tests/unit/plugins/module_utils/test_role_vars.py), the host variables
# the plugins read themselves and the facts the actions set. nix_eval
# (from_role_vars) warns of any other nix_* variable.
# tests/unit/plugins/module_utils/test_role_vars_read.py checks that every
# nix_* variable a plugin, role or playbook reads is known.
OTHER_VARIABLES = frozenset((
    # the deploy role's keys (nix_activate's keys, keys_prune)
    'nix_keys', 'nix_keys_prune',
    # the rollback role's
    'nix_generation', 'nix_summary',
    # the publish role's
    'nix_publish_cache', 'nix_publish_build_on', 'nix_publish_gc_root_dir',
    'nix_channel_repo', 'nix_channel_ref', 'nix_channel_git_dir', 'nix_channel_force',
    # the playbooks' serial batches; the copy cascade's site (copy/_cascade.py)
    # and the address the other hosts reach a host at (copy/_cascade_stage.py)
    'nix_serial', 'nix_site', 'nix_peer_host',
    # the Nix inventory's host variables (with nix_flake, nix_attr, nix_platform)
    'nix_source', 'nix_system', 'nix_tags', 'nix_role', 'nix_configuration', 'nix_node',
    'nix_profiles',
    # the flake's own ssh options (the inventory plugin), for ansible_ssh_common_args to add to
    'nix_ssh_common_args',
    # facts: nix_eval's, nix_publish's, nix_channel's
    'nix_drv_path', 'nix_out_path', 'nix_published_path', 'nix_flake_revision',
    'nix_flake_pinned',
))


def rows(module):
    """The table's rows of ``module`` (eval, build, copy, activate)."""
    return tuple(row for row in ROWS if module in row.modules)


def spec(module):
    """The argument spec entries of ``module``'s table options, and the flag."""
    out = {FLAG: dict(FLAG_SPEC)}
    for row in rows(module) + FACT_ROWS.get(module, ()):
        option_spec = dict(row.spec)
        if row.old_option:
            option_spec['aliases'] = [row.old_option]
            option_spec['deprecated_aliases'] = [{'name': row.old_option, 'version': REMOVED_IN,
                                                  'collection_name': COLLECTION}]
        out[row.option] = option_spec
    return out


def per_host(module):
    """The options of ``module`` that may differ per host (scope ``host``), sorted."""
    return tuple(sorted(row.option for row in rows(module) + FACT_ROWS.get(module, ())
                        if row.scope == 'host'))


def aliases(module):
    """The deprecated option names of ``module`` (none without a module)."""
    return [row.old_option for row in rows(module) if row.old_option] if module else []


def host_value(option, host_vars):
    """A host's own value of ``option`` (its fact or variable), or None."""
    return BY_OPTION[option].host_value(host_vars)


def _unset(value):
    return value is None or value == ''


class Filled(object):
    """A task's arguments with the options it left unset filled from the
    host's variables, and which per-host options are each host's own."""

    def __init__(self, args, own_options, deprecations, sources=None):
        self.args = args
        # {option: the variable it was filled from}: a bad value names it
        self.sources = dict(sources or {})
        # per-host options whose value is this host's own: a batch computes
        # each other host's from that host's variables (for_host)
        self.own_options = frozenset(own_options)
        self.deprecations = deprecations

    def shared(self, args):
        """``args`` with each host's own options unset: what the batch's
        hosts share (part of the batch key)."""
        return dict((k, None if k in self.own_options else v) for k, v in args.items())

    def for_host(self, args, module, host_vars):
        """``args`` (this host's validated arguments) as another host's task
        would have them: each option in ``own_options`` is that host's value, its
        spec's default when it has none."""
        out = dict(args)
        for row in rows(module) + FACT_ROWS.get(module, ()):
            if row.option in self.own_options:
                value = row.host_value(host_vars)
                out[row.option] = row.default if _unset(value) else value
        return out


def fill(module, args, variables, render, from_vars):
    """``args`` (a task's, templated) with each option of ``module`` it
    leaves unset taken from ``variables`` (a variable rendered by ``render``,
    as a task argument would be): every row with ``from_vars`` (the flag),
    the ``inventory`` and ``fact`` rows always. Returns a Filled."""
    merged, own_options, deprecations, sources = dict(args), set(), [], {}
    for row in rows(module):
        if row.old_option and row.old_option in merged:
            deprecations.append(_deprecation('the option %s is deprecated: use %s'
                                             % (row.old_option, row.option)))
    for row in rows(module) + FACT_ROWS.get(module, ()):
        given = merged.get(row.option)
        if _unset(given) and row.old_option:
            given = merged.get(row.old_option)
        if not _unset(given):
            # an argument templated from this host's own variable or fact
            # (compared as given, as cheap as it gets): each host's own
            if row.scope == 'host' and given == row.host_value(variables):
                own_options.add(row.option)
            continue
        if not (from_vars or row.inventory or row.fact):
            continue
        if row.scope == 'host':
            own_options.add(row.option)
        if row.fact:
            value = row.host_value(variables)
            if value is not None:
                merged[row.option] = value
            continue
        value, name = row.own_value(variables)
        if name is None:
            continue
        if name == row.old:
            deprecations.append(_deprecation('the variable %s is deprecated: use %s'
                                             % (row.old, row.variable)))
        merged[row.option] = render(value)
        sources[row.option] = name
    return Filled(merged, own_options, deprecations, sources)


def filled_problems(module, filled):
    """What is wrong with the options of ``module`` that ``filled`` took
    from role variables: messages naming the variable (the module's own
    validation would name the option, which the user never wrote)."""
    problems = []
    for row in rows(module):
        name = filled.sources.get(row.option)
        value = filled.args.get(row.option)
        # the role's default is good as it is (nothing to check)
        if name is not None and value != row.default:
            problems.extend(value_problems(row, name, value))
    return problems


def as_variables(text, sources):
    """``text`` (ansible's validation message) with each option that
    ``sources`` ({option: variable}) says a role variable gave named as
    that variable."""
    for option, name in sources.items():
        if option != name:
            text = re.sub(r'(?<![\w.])%s(?!\w)' % re.escape(option), name, text)
    return text


# What the deploy role itself defines after its first phase, for a later one
# to read: its registered results and the facts nix_eval sets. A template
# that needs one of them cannot be templated before evaluation; the phase
# that reads it templates it.
SET_BY_THE_ROLE = frozenset(('deploy_eval', 'deploy_build', 'deploy_copy', 'deploy_activate',
                             'nix_drv_path', 'nix_out_path'))
# ansible-core's words for an undefined variable
_UNDEFINED = re.compile(r"'(\w+)' is undefined")


def set_later(text):
    """Whether ``text`` (ansible-core's message for a template that failed)
    says only that variables the role defines later are undefined."""
    names = _UNDEFINED.findall(text or '')
    return bool(names) and all(name in SET_BY_THE_ROLE for name in names)


def template_message(row, name, text, origins=()):
    """What is said of ``name`` (row's variable), whose template fails:
    ansible-core's words (``text``), where it says the value comes from
    (``origins``, ``file:line:column`` each) and the fix."""
    secret = bool(row.spec.get('no_log'))
    if secret:
        text = 'the value given cannot be templated'
    where = ' (Origin: %s)' % '; '.join(origins) if origins else ''
    fix = 'fix its template where it is set'
    if not _unset(row.default) and row.default not in ([], {}):
        fix += ', or remove it to use the default (%s)' % (row.default,)
    else:
        fix += ', or remove it'
    return '%s: %s%s; %s' % (name, text, where, fix)


def variable_problems(variables, render=None, skip=(), failure=None):
    """What is wrong with the role variables in ``variables`` (a host's),
    every row of the table, whichever phase reads it: messages naming the
    variable. A value equal to its row's default (the role's defaults) is
    good as it is; ``render(value)`` templates one that may be a template,
    so that a variable only a later phase reads is templated before
    evaluation all the same (ansible-core templates a variable only when
    something reads it). When ``render`` raises, ``failure(error, value)``
    says whether that is this host's problem: (ansible-core's words, the
    origins) for a template that fails (a syntax error, an undefined
    variable, a lookup that fails), None for one that is not ready yet (it
    needs what the role defines later, SET_BY_THE_ROLE): that one is left
    to its phase, as is every failed template without ``failure``.
    ``skip``: names not to check."""
    problems = []
    for row in ROWS:
        value, name = row.own_value(variables)
        if name is None or name in skip or _unset(value) or value == row.default:
            continue
        if _maybe_template(value):
            if render is None:
                continue
            try:
                value = render(value)
            except Exception as error:  # pylint: disable=broad-except
                said = failure(error, value) if failure is not None else None
                if said is not None:
                    problems.append(template_message(row, name, *said))
                # else not ready yet: the phase that reads it templates it
                continue
            if _unset(value):
                continue
        problems.extend(value_problems(row, name, value))
    return problems


def _maybe_template(value):
    """Whether ``value`` holds Jinja (only then is it templated: a plain
    value costs no template)."""
    if isinstance(value, str):
        return '{{' in value or '{%' in value
    if isinstance(value, dict):
        return any(_maybe_template(k) or _maybe_template(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_maybe_template(v) for v in value)
    return False


# ------------------------------------------------------------ the check
def known_variables():
    """Every nix_* variable name that means something (the table's, their
    deprecated names, ``OTHER_VARIABLES``)."""
    names = set(OTHER_VARIABLES)
    for row in ROWS:
        names.add(row.variable)
        if row.old:
            names.add(row.old)
    return names


_KNOWN = None


def unknown_variables(names):
    """{name: nearest known name or None} of the ``nix_*`` names among
    ``names`` that no role, inventory or action knows (a typo)."""
    global _KNOWN  # pylint: disable=global-statement
    if _KNOWN is None:
        _KNOWN = known_variables()
    out = {}
    for name in names:
        if isinstance(name, str) and name.startswith('nix_') and name not in _KNOWN:
            out[name] = nearest(name, _KNOWN)
    return out


def unknown_message(name, suggestion):
    """What is said of an unknown variable ``name``."""
    text = '%s: not a variable of the deploy role' % name
    return text + ('; did you mean %s?' % suggestion if suggestion else '')


def nearest(word, candidates):
    """The candidate closest to ``word`` (a typo's fix), or None."""
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _shown(value, secret):
    """A value as a message shows it: quoted, short (a secret never)."""
    if secret:
        return 'the value given'
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 60:
        text = text[:57] + '...'
    return "'%s'" % text if isinstance(value, str) else text


# ansible's words for a value it could not convert
_TYPE_ERROR = re.compile(r"^argument '[^']*' is of type \S+ and we were unable to convert to (\w+)")
_A = {'int': 'an integer', 'bool': 'a boolean (true or false)', 'float': 'a number',
      'list': 'a list', 'dict': 'a mapping', 'str': 'a string', 'path': 'a path',
      'raw': 'a value'}


def value_problems(row, name, value):
    """What is wrong with ``value`` as row's variable ``name`` (the
    role variable, or its deprecated name): messages naming the variable
    and what it must be, [] when it is good. The same argument-spec
    validation ansible runs on the option (types, choices, elements,
    sub-options)."""
    spec = dict(row.spec)
    spec.pop('default', None)
    secret = bool(spec.get('no_log'))
    # a key no sub-option knows (nix_health_checks' `comand:`): said with the
    # nearest known key, instead of ansible's list of the supported ones
    # (what else ansible says of such an item follows from the typo)
    unknown = unknown_keys(spec, value, name)
    if unknown:
        return unknown
    # (iterated: the error list of ansible has no length of its own)
    errors = list(ArgumentSpecValidator({name: spec}).validate({name: value}).errors)
    if not errors:
        return []
    choices = spec.get('choices')
    if choices and spec.get('type', 'str') == 'str' and isinstance(value, (str, int, float)) \
            and not isinstance(value, bool):
        # what ansible refused is not one of the choices: said with the nearest
        text = '%s' % value
        problem = '%s: %s is not one of %s' % (name, _shown(text, secret), ', '.join(choices))
        near = nearest(text, choices)
        return [problem + (' (did you mean %s?)' % near if near else '')]
    problems = []
    for error in errors:
        text = '%s' % error
        found = _TYPE_ERROR.match(text)
        if found and isinstance(error, ArgumentTypeError):
            problems.append('%s: %s is not %s' % (
                name, _shown(value, secret), _A.get(found.group(1), found.group(1))))
        elif secret:
            problems.append('%s: the value given is not valid' % name)
        else:
            problems.append('%s: %s' % (name, text))
    return problems


def unknown_keys(spec, value, path):
    """Messages for each key of ``value`` (at ``path``, the variable's
    name) that its spec's sub-options do not know, with the nearest known
    key: ``unknown key 'comand' in nix_health_checks[0]: did you mean
    'command'?``. Only keys are looked at; values are ansible's to judge."""
    options = spec.get('options')
    if not options:
        return []
    if spec.get('type') == 'list':
        if not isinstance(value, (list, tuple)):
            return []
        items = [('%s[%d]' % (path, index), item) for index, item in enumerate(value)]
    else:
        items = [(path, value)]
    known = set(options)
    for option in options.values():
        known.update(option.get('aliases') or ())
    problems = []
    for where, item in items:
        if not isinstance(item, dict):
            continue
        for key in sorted(item, key=str):
            if key in known:
                sub = options.get(key)
                if sub is not None:
                    problems.extend(unknown_keys(sub, item[key], '%s.%s' % (where, key)))
                continue
            near = nearest('%s' % key, known)
            problems.append("unknown key '%s' in %s%s" % (
                key, where, ": did you mean '%s'?" % near if near else
                ' (known keys: %s)' % ', '.join(sorted(options))))
    return problems


def _deprecation(msg):
    return {'msg': msg, 'version': REMOVED_IN, 'collection_name': COLLECTION}
