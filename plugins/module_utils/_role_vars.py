# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""THE table of the phase modules' options that the deploy role sets from its
variables: option, role variable, default (in the spec), scope, modules, and
what the role says of it (``description``). Its rows are in
``_role_vars_table.py``, what is said of one variable's value in
``_role_vars_values.py``; the collection reads both through this module.

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

import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars_table import (
    BY_OPTION, COLLECTION, FACT_ROWS, REMOVED_IN, ROWS)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars_values import (
    maybe_template, unset, nearest, template_message, value_problems)
# the rest of the table's names, which the collection reads as _role_vars.<name>
from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars_table import (  # noqa: F401 pylint: disable=unused-import
    ACTIVATE, BUILD, COPY, EVAL, PHASES, Row, fact_or_var)

FLAG = 'from_role_vars'
FLAG_SPEC = {'type': 'bool', 'default': False}

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
    # the status role's
    'nix_status_fail_unless_in_sync', 'nix_status_textfile', 'nix_status_timeout',
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
                out[row.option] = row.default if unset(value) else value
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
        if unset(given) and row.old_option:
            given = merged.get(row.old_option)
        if not unset(given):
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
        if name is None or name in skip or unset(value) or value == row.default:
            continue
        if maybe_template(value):
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
            if unset(value):
                continue
        problems.extend(value_problems(row, name, value))
    return problems


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


def _deprecation(msg):
    return {'msg': msg, 'version': REMOVED_IN, 'collection_name': COLLECTION}
