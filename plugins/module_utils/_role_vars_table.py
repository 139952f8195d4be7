# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy role's option table: one ``Row`` an option (``ROWS``).

A row says an option's spec, scope, modules, role variable and what the role
says of it; ``_role_vars.py`` reads the table (the modules' argument specs,
filling options from variables, checking the variables) and is where the
rest of the collection reads it from. See ``_role_vars.py`` for what the
fields mean and what is written from them.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (
    _copy_modes, _health_kinds, _options, _phases, _platforms)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._options import NIX_OPTIONS

# the phase modules of the table: the phases that record (module_utils/_phases.py)
PHASES = _phases.RECORDING
EVAL, BUILD, COPY, ACTIVATE = PHASES
# the release that drops the deprecated names: a removal waits for a major release
REMOVED_IN = '2.0.0'
COLLECTION = 'nixdeploy.fleet'
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
        "1800 (a bound on an evaluator that hangs); 0, no limit.",)),
    Row('eval_batch_timeout', (EVAL,), {'type': 'int'}, description=(
        "Seconds the evaluations of one play batch may take in all. At the bound every "
        "evaluator is stopped and each host not answered yet fails, naming its configuration "
        "and this variable. By default no bound beyond each host's own (nix_eval_timeout).",)),
    Row('eval_cache', (EVAL,), {'type': 'bool', 'default': True}, description=(
        "Answer from the evaluation cache what an earlier run evaluated from the same locked "
        "flake, attribute, Nix version and options (docs/eval-cache.md).",)),
    Row('eval_reuse', (EVAL,), {'type': 'bool', 'default': True}, description=(
        "With nix_eval_cache, answer a host of another commit from its earlier evaluation "
        "while everything that evaluation read of the flake is the same (strace on the "
        "controller; docs/eval-cache.md, \"Reuse across commits\").",)),
    Row('eval_reuse_check', (EVAL,), {'type': 'int', 'default': 1}, description=(
        "Hosts per batch evaluated again as a spot check (reused ones, and ones a recorded "
        "evaluator answers), the least recently checked first, within a quarter of the "
        "evaluation time reuse saved; one that waited its turn out is checked whatever it "
        "costs. A difference fails the host and turns reuse off for the flake until the mark "
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
        "built or copied for them. C(0) turns it off. A run that logs in to no host does not "
        "probe: C(--tags eval), or C(--tags build) with the build on the controller or on "
        "builders (docs/networks.md, \"Which phases reach the hosts\").",)),
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
