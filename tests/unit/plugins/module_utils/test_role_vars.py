"""The option table (module_utils/_role_vars.py) is the one source: the
modules' argument specs take its entries, every phase has the Nix options.
The modules' documentation against their specs: ansible-test sanity's
validate-modules; the files written from the table (the role's spec and
defaults, the doc fragment role_vars' lists, docs/roles.md):
tests/unit/roles/test_generated_role_files.py and test_role_options.py."""

import os
import re
import sys

import pytest
import yaml

from tests.collection import REPO, collections_path

# module_utils import each other as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _role_vars, _specs)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._options import (  # noqa: E402
    NIX_OPTIONS)

SPECS = {'eval': _specs.EVAL_SPEC, 'build': _specs.BUILD_SPEC,
         'copy': _specs.COPY_SPEC, 'activate': _specs.ACTIVATE_SPEC}


def test_every_variable_is_nix_and_its_option():
    for row in _role_vars.ROWS:
        wanted = row.option if row.option.startswith('nix_') else 'nix_' + row.option
        assert row.variable == wanted, row.option
    assert len(set(r.variable for r in _role_vars.ROWS)) == len(_role_vars.ROWS)


@pytest.mark.parametrize('phase', sorted(SPECS))
def test_the_modules_take_the_tables_spec(phase):
    spec = SPECS[phase]
    for option, entry in _role_vars.spec(phase).items():
        assert spec[option] == entry, (phase, option)
    # and no option of the table's is specified anywhere else
    for row in _role_vars.ROWS:
        if phase not in row.modules:
            assert row.option not in spec or row.option in _role_vars.spec(phase), (phase, row.option)


def test_every_phase_has_every_nix_option():
    nix = set(row.option for row in _role_vars.ROWS if row.modules == _role_vars.PHASES)
    assert nix == set(NIX_OPTIONS)
    for row in _role_vars.ROWS:
        if row.option in NIX_OPTIONS:
            assert row.spec == NIX_OPTIONS[row.option], row.option


def test_a_batch_sees_each_host_with_its_own_values_side_by_side():
    """One host's task (h1, from_role_vars) and how the batch sees three
    other hosts of the same play batch: one with its own variables, one with
    none (the table's defaults), one whose fact is only in flight; an option
    the task gives for all stays the same for every host."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import with_facts
    own = {'nix_copy_mode': 'cascade', 'nix_remote_nix_dir': '/opt/nix/bin',
           'ansible_facts': {'nix_out_path': '/nix/store/a-h1'}}
    task = {'path': '/nix/store/a-h1', 'compress': True}
    filled = _role_vars.fill('copy', task, own, lambda value: value, True)
    # host_key_unchecked: a host's own opt-out, read from its variable always
    assert filled.own_options == {'copy_mode', 'path', 'remote_nix_dir', 'host_key_unchecked'}
    args = filled.args
    hosts = {
        'h2': {'nix_copy_mode': 'substitute', 'nix_compress': False,
               'ansible_facts': {'nix_out_path': '/nix/store/b-h2'}},
        'h3': {'ansible_facts': {'nix_out_path': '/nix/store/c-h3'}},
        'h4': with_facts({'ansible_facts': {}}, {'nix_out_path': '/nix/store/d-h4'}),
    }
    seen = dict((name, filled.for_host(args, 'copy', hostvars))
                for name, hostvars in hosts.items())
    assert [seen[h]['copy_mode'] for h in sorted(seen)] == ['substitute', 'push', 'push']
    assert seen['h2']['path'] == '/nix/store/b-h2' and seen['h4']['path'] == '/nix/store/d-h4'
    assert seen['h3']['remote_nix_dir'] is None and seen['h3']['copy_mode'] == 'push'
    # compress is the batch's (the task's), whatever h2's variable says
    assert all(seen[h]['compress'] is True for h in seen)
    # the batch key: the per-host options are each host's, not shared
    assert all(filled.shared(args).get(k) is None for k in _role_vars.per_host('copy'))
    # a task that gives one mode for all: every host copies that way
    alike = _role_vars.fill('copy', dict(task, copy_mode='cache'), own, lambda v: v, True)
    assert 'copy_mode' not in alike.own_options
    assert alike.for_host(alike.args, 'copy', hosts['h2'])['copy_mode'] == 'cache'


# ------------------------------------------------------------ the check (issue 61)
def role_defaults():
    with open(os.path.join(REPO, 'roles', 'deploy', 'defaults', 'main.yml')) as handle:
        return yaml.safe_load(handle)


def test_a_bad_choice_names_the_variable_and_the_nearest_choice():
    row = _role_vars.BY_OPTION['goal']
    assert _role_vars.value_problems(row, 'nix_goal', 'bot') == [
        "nix_goal: 'bot' is not one of switch, boot, test, dry-activate (did you mean boot?)"]
    assert _role_vars.value_problems(row, 'nix_goal', 'boot') == []
    # nothing near: no guess
    assert _role_vars.value_problems(_role_vars.BY_OPTION['reboot'], 'nix_reboot', 'xyzzy') == [
        "nix_reboot: 'xyzzy' is not one of never, always, when-needed"]


@pytest.mark.parametrize('option,value,said', [
    ('confirm_timeout', 'soon', "nix_confirm_timeout: 'soon' is not an integer"),
    ('magic_rollback', 'maybe', "nix_magic_rollback: 'maybe' is not a boolean (true or false)"),
    ('free_space_margin', 'big', "nix_free_space_margin: 'big' is not a number"),
    ('caches', {'a': 1}, "nix_caches: {'a': 1} is not a list"),
    ('nix_options', 'x y', "nix_options: 'x y' is not a mapping"),
])
def test_a_value_of_the_wrong_type_names_the_variable(option, value, said):
    row = _role_vars.BY_OPTION[option]
    assert _role_vars.value_problems(row, row.variable, value) == [said]


def test_sub_options_are_checked_as_ansible_checks_them():
    row = _role_vars.BY_OPTION['health_checks']
    problems = _role_vars.value_problems(row, 'nix_health_checks', [
        {'name': 'web', 'http': {'url': 'http://127.0.0.1/', 'status': 'ok'}}])
    assert problems and all(p.startswith('nix_health_checks: ') for p in problems), problems
    assert any('status' in p for p in problems), problems
    problems = _role_vars.value_problems(row, 'nix_health_checks', [{'name': 'web'}])
    assert problems and all(p.startswith('nix_health_checks: ') for p in problems), problems
    good = [{'name': 'web', 'http': {'url': 'http://127.0.0.1/'}}]
    assert _role_vars.value_problems(row, 'nix_health_checks', good) == []


@pytest.mark.parametrize('checks,said', [
    ([{'name': 'web', 'comand': 'true'}],
     ["unknown key 'comand' in nix_health_checks[0]: did you mean 'command'?"]),
    ([{'name': 'a', 'unit': 'sshd'}, {'name': 'b', 'command': 'true', 'retires': 5}],
     ["unknown key 'retires' in nix_health_checks[1]: did you mean 'retries'?"]),
    ([{'name': 'web', 'http': {'url': 'http://127.0.0.1/', 'stauts': 204}}],
     ["unknown key 'stauts' in nix_health_checks[0].http: did you mean 'status'?"]),
    ([{'name': 'web', 'unit': 'sshd', 'zzzzzz': 1}],
     ["unknown key 'zzzzzz' in nix_health_checks[0] (known keys: command, http, interval, "
      "name, retries, tcp, timeout, unit)"]),
])
def test_a_key_typo_in_a_health_check_gets_the_nearest_key(checks, said):
    """Not ansible's garbled list of the supported parameters (and its
    "one of the following is required" that follows from the typo): the
    key, the item it is in and the nearest known key."""
    row = _role_vars.BY_OPTION['health_checks']
    assert _role_vars.value_problems(row, 'nix_health_checks', checks) == said
    # the check before evaluation says the same of the variable
    assert _role_vars.variable_problems({'nix_health_checks': checks}) == said


def test_a_secret_is_never_shown():
    row = _role_vars.Row('token', ('copy',), {'type': 'int', 'no_log': True})
    problems = _role_vars.value_problems(row, 'nix_token', 'hunter2-secret')
    assert problems == ['nix_token: the value given is not an integer'], problems


def test_the_roles_defaults_pass_and_cost_no_template():
    def render(value):
        raise AssertionError('templated %r' % (value,))
    assert _role_vars.variable_problems(role_defaults(), render) == []


def test_every_variable_of_the_table_is_checked_whichever_phase_reads_it():
    variables = dict(role_defaults(), nix_goal='bot', nix_copy_mode='pusj',
                     nix_eval_workers='many', nix_platform='nixso')
    problems = _role_vars.variable_problems(variables, lambda v: v)
    assert [p.split(':')[0] for p in problems] == [
        'nix_eval_workers', 'nix_copy_mode', 'nix_platform', 'nix_goal'], problems
    assert "did you mean push?" in problems[1] and 'did you mean nixos?' in problems[2]


def test_a_template_is_rendered_and_one_not_ready_is_left_to_its_phase():
    seen = []

    def render(value):
        seen.append(value)
        if 'later' in value:
            raise ValueError('undefined yet')
        return 'bot'
    variables = {'nix_goal': '{{ goal }}', 'nix_reboot': '{{ later }}'}
    assert _role_vars.variable_problems(variables, render) == [
        "nix_goal: 'bot' is not one of switch, boot, test, dry-activate (did you mean boot?)"]
    assert sorted(seen) == ['{{ goal }}', '{{ later }}']
    # without a templar (another host's, in the batch's process): left alone
    assert _role_vars.variable_problems(variables) == []


def test_an_unknown_nix_variable_gets_the_nearest_name():
    found = _role_vars.unknown_variables(['nix_gaol', 'nix_goal', 'nix_copymode', 'nix_zzzzzzzz',
                                          'ansible_host', 'nix_out_path', 'nix_serial'])
    assert found == {'nix_gaol': 'nix_goal', 'nix_copymode': 'nix_copy_mode', 'nix_zzzzzzzz': None}
    assert _role_vars.unknown_message('nix_gaol', 'nix_goal') == \
        'nix_gaol: not a variable of the deploy role; did you mean nix_goal?'
    assert _role_vars.unknown_message('nix_zzzzzzzz', None) == \
        'nix_zzzzzzzz: not a variable of the deploy role'


def test_every_roles_variable_is_known():
    for role in ('deploy', 'publish', 'rollback'):
        with open(os.path.join(REPO, 'roles', role, 'meta', 'argument_specs.yml')) as handle:
            specs = yaml.safe_load(handle)['argument_specs']
        for entry in specs.values():
            assert not _role_vars.unknown_variables(entry.get('options') or {}), role


def test_every_variable_the_inventory_sets_and_every_fact_is_known():
    """The Nix inventory's host variables (plugins/plugin_utils/inventory/,
    and the plugin), the facts the actions set and the playbooks' own
    variables: no warning of them."""
    def read(folder):
        for base, _dirs, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                if name.endswith(('.py', '.yml')):
                    with open(os.path.join(base, name)) as handle:
                        yield handle.read()
    names = set()
    for folder in ('plugins/plugin_utils/inventory', 'plugins/inventory'):
        for text in read(folder):
            names.update(re.findall(r"['\"](nix_\w+)['\"]\s*[:\]]", text))
    for folder in ('plugins/action', 'plugins/plugin_utils/evaluation'):
        for text in read(folder):
            for facts in re.findall(r"ansible_facts'\]\s*=\s*\{([^}]*)\}|def facts_of.*?\{([^}]*)\}",
                                    text, re.S):
                names.update(re.findall(r"'(nix_\w+)'", ''.join(facts)))
    for text in read('playbooks'):
        names.update(re.findall(r"\b(nix_\w+)\s*\|\s*default", text))
    for name in ('nix_configuration', 'nix_out_path', 'nix_drv_path', 'nix_serial',
                 'nix_published_path', 'nix_flake_revision'):
        assert name in names, name
    assert _role_vars.unknown_variables(names) == {}


def test_a_validation_message_names_the_variables():
    sources = {'copy_mode': 'nix_copy_mode', 'caches': 'nix_caches', 'nix_bin': 'nix_bin'}
    assert _role_vars.as_variables(
        'copy_mode is cache but all of the following are missing: caches', sources) == \
        'nix_copy_mode is cache but all of the following are missing: nix_caches'


def test_an_option_filled_from_a_variable_is_checked_under_its_name():
    filled = _role_vars.fill('activate', {}, {'nix_goal': 'bot', 'nix_confirm_timeout': 30,
                                              'nix_reboot_timeout': 'x'},
                             lambda v: v, True)
    assert _role_vars.filled_problems('activate', filled) == [
        "nix_goal: 'bot' is not one of switch, boot, test, dry-activate (did you mean boot?)",
        "nix_reboot_timeout: 'x' is not an integer"]
    # a task's own argument is the module's to check (named as the option)
    own = _role_vars.fill('activate', {'goal': 'bot'}, {}, lambda v: v, True)
    assert _role_vars.filled_problems('activate', own) == []


def test_a_choice_yaml_made_a_boolean_is_taken_as_ansible_takes_it():
    row = _role_vars.BY_OPTION['check_sigs']
    for value in (True, 'True', 'false', 'auto'):
        assert _role_vars.value_problems(row, 'nix_check_sigs', value) == [], value
    assert _role_vars.value_problems(row, 'nix_check_sigs', 'ture') == [
        "nix_check_sigs: 'ture' is not one of auto, true, false (did you mean true?)"]
