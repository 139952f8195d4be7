# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
name: nix
short_description: The fleet as a Nix flake describes it
version_added: 1.0.0
author:
  - nixdeploy.fleet contributors (@nixdeploy)
description:
  - Reads hosts, groups and connection variables from a Nix flake with one C(nix eval --json) whose
    C(--apply) function extracts only inventory data. No system is evaluated or built.
  - "Four sources: pure inventory data (an C(inventory) output), a colmena hive (C(colmenaHive) or
    C(colmena)), deploy-rs nodes (C(deploy.nodes)), or, asked for with O(source=configurations), the
    names in C(nixosConfigurations), C(darwinConfigurations), C(nixOnDroidConfigurations) and
    C(homeConfigurations)."
  - "A flake with none of the first three (an C(inventory) written beside C(outputs) or in a C(let)
    instead of inside the set C(outputs) returns) fails the parse, naming the attribute and where it
    must sit (C(outputs = { self, ... }: { inventory = ...; nixosConfigurations = ...; })), unless
    the configuration file asks for configuration names with O(source=configurations)."
  - "A tag, role, system or platform whose group has the name of a host (a tag C(web1) on a fleet with
    a host C(web1)) fails the parse, naming the host and the tag: Ansible cannot have a group and a
    host of one name."
  - Every host gets C(ansible_host), C(ansible_user) and C(ansible_port) when the data has them, and
    C(nix_source), C(nix_platform), C(nix_system), C(nix_attr), C(nix_flake), C(nix_tags), C(nix_role),
    C(nix_configuration) and C(nix_node) (the node's raw data).
  - "A node's ssh options (colmena C(deployment.sshOptions), deploy-rs C(sshOpts), an inventory entry's
    C(sshOptions)) become C(ansible_ssh_common_args) of a group C(ssh_options_<digest>) and the host var
    C(nix_ssh_common_args); the operator's C(group_vars) and C(host_vars) files take precedence over the
    group's. An inventory entry's C(targetHosts) (an ordered list of addresses) becomes C(nix_target_hosts),
    its first item C(ansible_host). An IPv6 address is taken with or without brackets and given on without
    them; one with a zone index (C(fe80::1%eth0)) is refused."
  - "Groups: one per tag (characters outside C([A-Za-z0-9_]) become C(_), so C(batch-vps) becomes
    C(batch_vps)), C(role_<role>), one per platform (C(nixos), C(darwin), C(nix_on_droid),
    C(home_manager)) and one per system (C(x86_64_linux), ...)."
  - Every string read from the flake is data, never a template.
  - "With ansible-core 2.19 and later, C(ansible-inventory --list --export) (AWX's inventory sync) prints
    every such string that holds no template syntax as a plain JSON string, and one that does
    (C({{), C({%), C({#), a leading C(#jinja2:)) as C({\"__ansible_unsafe\": ...}), which a job reading the
    stored copy back keeps as data."
  - "Every value from the flake that reaches ssh is checked: the address (C(targetHost), C(host),
    C(hostname), C(targetHosts), C(ips), colmena's default of the node name, the host of a home-manager
    C(user@host), the host name when no address is given), the ssh user, the port and the ssh options,
    which pass only through an allow-list of options that cannot run a command, read a file, open a
    forward or weaken host key checking (a ProxyJump chain of plain hops passes). A node with a value that could be read as an ssh option (a leading
    C(-)), whitespace, a control character or a character no host or user name has is skipped with a
    warning naming the node, the field and the value; with O(strict=true) it fails the parse.
    C(ansible_host), C(ansible_user) and C(ansible_port) set by O(compose) are checked the same way."
  - "A node whose name (the Ansible host name) is not printable (a control character, C(ESC), a newline, a
    bidi control: the summary, messages and warnings print host names) or holds C(/) (host names name files
    and git refs) is skipped with a warning naming it; with O(strict=true) it fails the parse."
  - "The evaluation never builds: C(allow-import-from-derivation = false) is passed to Nix as the O(nix_options)
    are (a C(NIX_CONFIG) line, never on the command line), so loading the inventory builds and runs no
    derivation of the flake's on the controller; a flake whose inventory imports from a derivation fails
    the parse with Nix's message. O(nix_options) C(allow-import-from-derivation: true) turns it on."
  - "The flake's own C(nixConfig) is not applied (C(accept-flake-config = false) after the controller's
    C(nix.conf) and C(NIX_CONFIG)): the settings it names are said in one warning. O(nix_options)
    C(accept-flake-config: true) applies them (import-from-derivation too, if the flake sets it), with a
    warning that says so."
  - The configuration file name must end in C(.nix.yml) or C(.nix.yaml). A key in it that is no option of
    this plugin fails the parse, naming the nearest option (C(unknown option flak in ...; did you mean flake?)).
  - "Before Nix runs, a path O(flake) is checked: a folder without C(flake.nix), or a C(flake.nix) git does
    not track in a git work tree (Nix reads only tracked files), fails the parse with a sentence naming the
    folder and the fix (C(git add flake.nix)); so does a O(nix_bin) that is no program on the controller."
  - "A source that fails only warns unless the C(ansible.cfg) says otherwise: C([inventory])
    C(enable_plugins = nixdeploy.fleet.nix, ansible.builtin.host_list), C(unparsed_is_failed = True) and
    C(any_unparsed_is_failed = True) make it one error that stops the run (C(docs/inventory.md))."
  - See C(docs/inventory.md) in the collection for the mapping of each source.
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - nixdeploy.fleet.nix
options:
  plugin:
    description: Marks this file as a configuration for this plugin.
    type: str
    required: true
    choices: ['nixdeploy.fleet.nix']
  flake:
    description:
      - The flake to read, a path relative to this configuration file or a flake reference
        such as C(github:owner/repo) or C(git+https://...).
      - A path inside a git work tree (C(.git) at it or in a folder above it) is read as Nix reads
        it, C(git+file://TOP) with C(?dir=SUBFOLDER) below the top, so only files git tracks are
        seen; any other path as C(path:).
    type: str
    default: .
  source:
    description:
      - Where the hosts come from.
      - V(auto) takes the first the flake has, in the order V(inventory), V(colmena),
        V(deploy-rs), in the same single evaluation; a flake with none of them fails the parse
        (it never falls back to the configuration names). Taking V(colmena) or V(deploy-rs) (no
        C(inventory) attribute) warns each parse, naming the source; set that source to mean it.
      - V(inventory) reads pure data at O(attribute), host name to attribute set.
      - V(colmena) reads each node's C(deployment) options of a C(colmenaHive) or C(colmena) output.
      - V(deploy-rs) reads C(deploy.nodes) without forcing any profile's C(path).
      - V(configurations) makes one host per configuration name, without tags or addresses
        (ssh connects to the name as the login user), unless the flake's C(inventory) entry of
        that name gives them.
      - For every source but V(inventory), the entry of the same name in the C(inventory) output
        (when there is one) fills in what the source does not give (tags, role, system, address).
    type: str
    default: auto
    choices: ['auto', 'inventory', 'colmena', 'deploy-rs', 'configurations']
  attribute:
    description:
      - Attribute path of the source inside the flake outputs, dot-separated (quote a name holding
        a dot with double quotes).
      - Defaults to C(inventory) for O(source=inventory) and O(source=auto), to C(colmenaHive) then
        C(colmena) for O(source=colmena), and to C(deploy) for O(source=deploy-rs).
    type: str
  hive_keys:
    description:
      - Which of a colmena hive's C(deployment.keys) become the host var C(nix_keys), by the field that
        gives a key's content.
      - V(text) is content the flake holds already. V(keyFile) makes the controller read a file the
        flake names and upload it where the flake says; V(keyCommand) makes the controller run a
        command the flake names. Any module of any input of the flake can set them, so they are
        mapped only when listed here (colmena itself maps every kind).
      - A key left out is named in a warning with this option. V([]) maps no key of the hive. A
        C(nix_keys) from C(host_vars) or C(group_vars) is not affected.
    type: list
    elements: str
    choices: ['text', 'keyFile', 'keyCommand']
    default: ['text']
'''

EXAMPLES = r'''
# fleet.nix.yml: whatever the flake in the parent folder has
plugin: nixdeploy.fleet.nix
flake: ..

---
# a colmena hive, with extra groups from the data
plugin: nixdeploy.fleet.nix
flake: github:example/infra
source: colmena
keyed_groups:
  - key: nix_system
    prefix: arch
groups:
  canary: "'canary' in nix_tags"

---
# pure inventory data at a custom attribute, cached for an hour
plugin: nixdeploy.fleet.nix
flake: .
source: inventory
attribute: fleet.hosts
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/nixdeploy-inventory
cache_timeout: 3600
nix_options:
  substituters: ''

---
# a colmena hive whose keyFile and keyCommand keys the operator trusts
plugin: nixdeploy.fleet.nix
flake: ..
source: colmena
hive_keys: [text, keyFile, keyCommand]
'''

import os
import sys

from ansible import constants as C
from ansible.errors import AnsibleParserError
from ansible.plugins.loader import callback_loader
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display


from ansible_collections.nixdeploy.fleet.plugins.module_utils._options import NIX_OPTIONS
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import evaluation_options
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._source import RunSources
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import (
    batch_folder, short_digest)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory import (
    check_flake, eval_args, flake_config_warnings, parse_warnings, request_digest)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_error import (
    InventoryError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_config import (
    CONFIG_SUFFIXES, NoFlakeError, check_flake_folder, check_keys, check_nix, misnamed_config,
    nix_error, outside_outputs, untracked_source)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_folder import (
    elsewhere)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_checks import (
    check_composed, node_label)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_hosts import (
    build_inventory)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_trust import (
    TRUSTS, host_name, inventory_value)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import flake_ref
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixOptions, NixCommand)

display = Display()


REPORT_CALLBACK = 'nixdeploy.fleet.report'


def report_not_current():
    """An ansible-playbook run whose inventory does not parse stops before
    any callback runs, and would leave the previous run's report as the
    latest (nixdeploy-report.json/.html), looking current: when the report
    callback is enabled, the latest names say instead that this run's
    inventory failed. Never in the way of the inventory's own error."""
    if not os.path.basename(sys.argv[0] if sys.argv else '').startswith('ansible-playbook'):
        return  # ansible-inventory, AWX's inventory sync: no run, no report
    try:
        enabled = [name.strip() for name in C.CALLBACKS_ENABLED or ()]
        if REPORT_CALLBACK not in enabled:
            return
        callback = callback_loader.get(REPORT_CALLBACK)
        callback.set_options()
        callback.inventory_failed()
    except Exception as exc:  # pylint: disable=broad-except
        display.vvv('nixdeploy.fleet.nix: the report could not say the inventory failed: %s' % exc)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = 'nixdeploy.fleet.nix'

    def verify_file(self, path):
        if not super(InventoryModule, self).verify_file(path):
            return False
        if path.endswith(CONFIG_SUFFIXES):
            return True
        # a file meant for this plugin but misnamed: ansible-core says only
        # that nothing could parse it (the reason at -vvv), so say why here
        misnamed = misnamed_config(path)
        if misnamed:
            display.warning('nixdeploy.fleet.nix: %s' % misnamed)
        return False

    def parse(self, inventory, loader, path, cache=True):
        try:
            self._parse(inventory, loader, path, cache)
        except AnsibleParserError:
            report_not_current()
            raise

    def _parse(self, inventory, loader, path, cache):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        config = self._read_config_data(path)
        try:
            # before anything reads an option: a typo'd key leaves its option
            # at the default, and the run would go on with it
            defs = self.option_definitions
            check_keys(config, set(defs).union(*[d.get('aliases') or () for d in defs.values()]), path)
        except InventoryError as exc:
            raise AnsibleParserError(to_native(exc))
        try:
            flake = check_flake(flake_ref(self.get_option('flake'),
                                          os.path.dirname(os.path.abspath(path))))
            runner = NixCommand(NixOptions.from_params(self._nix_params()))
        except (NixError, InventoryError) as exc:
            raise AnsibleParserError('%s: %s' % (path, _redact.text(to_native(exc))))
        if _redact.url(flake) != flake:
            # the reference becomes every host's nix_flake, which AWX stores
            # and shows: a token belongs in nix_options' access-tokens
            display.warning('nixdeploy.fleet.nix: the flake reference %s in %s carries a credential; '
                            'every host gets it as nix_flake: give the token as nix_options '
                            'access-tokens instead' % (_redact.url(flake), path))
        raw = self._evaluate(path, runner, flake, cache)
        self._populate(raw, flake)

    def _nix_params(self):
        """The Nix options of the inventory's evaluation: the config's, with
        import-from-derivation off unless its nix_options turn it on (an
        inventory only reads data: no derivation of the flake's is built and
        run by any ansible-* command that loads it)."""
        params = dict((k, self.get_option(k)) for k in NIX_OPTIONS)
        params['nix_options'] = evaluation_options(params.get('nix_options'))
        return params

    def _evaluate(self, path, runner, flake, cache):
        """The Nix JSON, from the cache when allowed and made by the same call."""
        source, attribute = self.get_option('source'), self.get_option('attribute')
        # The cached value records the call it came from, so a changed
        # option (or a new apply expression) never reads a stale entry. The
        # installable stands in symbolically: its form depends on the Nix
        # version (NixCommand.outputs), which a cached parse does not ask. Only a
        # digest of it is kept: nix_options may carry secrets.
        argv = runner.argv('eval', eval_args(['<outputs of %s>' % flake], source, attribute),
                           flake_command=True)
        request = request_digest(argv, self._nix_params())
        use_cache = self.get_option('cache')
        cache_key = self.get_cache_key(path)
        if use_cache and cache:
            try:
                cached = self._cache[cache_key]
            except KeyError:
                cached = None
            if isinstance(cached, dict) and cached.get('request_sha256') == request:
                return cached['raw']
        try:
            # Nix's words for these name a store path the user never wrote
            # or a Python error; a cached parse needs neither
            check_flake_folder(self.get_option('flake'), flake, path)
            check_nix(self.get_option('nix_bin'), path)
        except NoFlakeError as exc:
            # run in another project's folder (a clone's demo inventory)?
            raise AnsibleParserError(_redact.text(to_native(exc)) + elsewhere(path, os.getcwd()))
        except InventoryError as exc:
            raise AnsibleParserError(_redact.text(to_native(exc)))
        stderr = []
        try:
            raw = runner.json('eval', eval_args(runner.outputs(flake), source, attribute),
                              'nix eval of the inventory in %s' % path, flake_command=True,
                              said=stderr)
        except NixError as exc:
            said = exc.nix_message()
            raise AnsibleParserError(untracked_source(said, flake) or (
                '%s: %s%s' % (exc.message, nix_error(said), outside_outputs(said)) if said
                else to_native(exc)))
        # the flake's nixConfig Nix did not apply (accept-flake-config = false
        # on every controller Nix process), or the operator's opting in: said
        # once a run, as the evaluation's notes are (the same words: the run's
        # evaluation of the systems does not say them again)
        params = self._nix_params()
        sources = RunSources(batch_folder(C.DEFAULT_LOCAL_TMP))
        for note in flake_config_warnings(''.join(stderr), _redact.url(flake),
                                          params.get('nix_options'), params.get('nix_args')):
            if sources.warn_once(short_digest(note)):
                display.warning('nixdeploy.fleet.nix: %s' % note)
        if use_cache:
            self._cache[cache_key] = {'request_sha256': request, 'raw': raw}
        return raw

    def _populate(self, raw, flake):
        strict = self.get_option('strict')
        try:
            result = build_inventory(raw, flake, strict=strict, hive_keys=self.get_option('hive_keys'))
        except InventoryError as exc:
            raise AnsibleParserError('nixdeploy.fleet.nix: %s' % to_native(exc))
        for message in parse_warnings(result, self.get_option('source'), self.get_option('attribute')):
            display.warning('nixdeploy.fleet.nix: %s' % message)
        compose = self.get_option('compose')
        groups = self.get_option('groups')
        keyed_groups = self.get_option('keyed_groups')
        known_groups = set()
        for host in result.hosts:
            # Host names and every value from the flake are data: never templated.
            name = host_name(host.name)
            self.inventory.add_host(name)
            for group in host.groups:
                if group not in known_groups:
                    self.inventory.add_group(group)
                    known_groups.add(group)
                self.inventory.add_child(group, name)
            for key, value in host.vars.items():
                self.inventory.set_variable(name, key, inventory_value(value))
            if compose or groups or keyed_groups:
                hostvars = self.inventory.get_host(name).get_vars()
                self._set_composite_vars(compose, hostvars, name, strict=strict)
                if not self._composed_ok(compose, name, result.source, strict):
                    continue
                if TRUSTS:
                    self._trust_composed(compose, name)
                self._add_host_to_composed_groups(groups, hostvars, name, strict=strict)
                self._add_host_to_keyed_groups(keyed_groups, hostvars, name, strict=strict)
        # the hosts' ssh options, as group variables: the operator's
        # group_vars/ and host_vars/ files rank above them (_inventory_hosts)
        for group, variables in sorted(result.group_vars.items()):
            for key, value in variables.items():
                self.inventory.set_variable(group, key, inventory_value(value))

    def _trust_composed(self, compose, name):
        """What ``compose`` made is exported as the flake's values are: its
        strings without template syntax marked trusted (``inventory_value``)."""
        composed = self.inventory.get_host(name).get_vars()
        for key in compose or ():
            if key in composed:
                self.inventory.set_variable(name, key, inventory_value(composed[key]))

    def _composed_ok(self, compose, name, source, strict):
        """The connection vars ``compose`` set (maybe from the flake's data)
        pass the same checks; a host that fails them is taken out again."""
        try:
            changed = check_composed(compose, self.inventory.get_host(name).get_vars())
        except InventoryError as exc:
            message = '%s node %s: %s' % (source, node_label(name), to_native(exc))
            if strict:
                raise AnsibleParserError('nixdeploy.fleet.nix: %s' % message)
            display.warning('nixdeploy.fleet.nix: skipped %s' % message)
            self.inventory.remove_host(self.inventory.get_host(name))
            return False
        for key, value in changed.items():
            # an IPv6 ansible_host without its brackets, as ssh and Nix take it
            self.inventory.set_variable(name, key, inventory_value(value))
        return True
