"""Which test modules the current stack does not rerun, by docs/lab.md's rule
("What the current stack runs").

The current stack is there to catch what changes with Nix, Python,
ansible-core and OpenSSH versions. A module of ONE_STACK starts no program
(no Nix, no ansible-playbook, no ssh, no git, no shell) and calls no
library whose version differs by stack (ansible-core beyond its own
import-time patches, jinja2, cryptography) on the path of what it proves: it
checks the collection's own Python logic on fixed inputs, or the
repository's own files against each other. Such a module's outcome cannot
change with the stack but through Python itself, whose new version the
current stack's sanity tests and every module that stays there run the same
code on. The conftest marks its tests here_only (`make test-current` skips
them); every other module runs on both stacks, a new one too.

The table was drawn from a survey of the unit modules (what each started,
from Python's audit events, and which library functions each called); the
program half of the rule is checked on every run: ProgramGuard fails a
listed module's test that starts a program.
"""

import os
import sys

import pytest

# path (from the repository's root) -> why its outcome is the same on
# every stack: 'logic' (the collection's own Python on fixed inputs) or
# 'repo' (the repository's files against each other)
ONE_STACK = {
    'tests/unit/docsite/test_guides.py': 'repo',
    'tests/unit/plugins/inventory/test_inventory_network_checks.py': 'logic',
    'tests/unit/plugins/module_utils/test_copy_modes.py': 'logic',
    'tests/unit/plugins/module_utils/test_phases.py': 'logic',
    'tests/unit/plugins/module_utils/test_role_vars_read.py': 'repo',
    'tests/unit/plugins/plugin_utils/builds/test_build_platforms.py': 'logic',
    'tests/unit/plugins/plugin_utils/builds/test_build_request.py': 'logic',
    'tests/unit/plugins/plugin_utils/builds/test_closure.py': 'logic',
    'tests/unit/plugins/plugin_utils/common/test_data.py': 'logic',
    'tests/unit/plugins/plugin_utils/common/test_redact.py': 'logic',
    'tests/unit/plugins/plugin_utils/copy/test_cascade.py': 'logic',
    'tests/unit/plugins/plugin_utils/copy/test_cascade_request.py': 'logic',
    'tests/unit/plugins/plugin_utils/evaluation/test_eval.py': 'logic',
    'tests/unit/plugins/plugin_utils/evaluation/test_eval_request.py': 'logic',
    'tests/unit/plugins/plugin_utils/evaluation/test_eval_reuse_rules.py': 'logic',
    'tests/unit/plugins/plugin_utils/host/test_diagnosis.py': 'logic',
    'tests/unit/plugins/plugin_utils/inventory/test_inventory.py': 'logic',
    'tests/unit/plugins/plugin_utils/inventory/test_inventory_checks.py': 'logic',
    'tests/unit/plugins/plugin_utils/nix/test_flake_ref.py': 'logic',
    'tests/unit/plugins/plugin_utils/publish/test_channel_request.py': 'logic',
    'tests/unit/plugins/plugin_utils/report/test_retry.py': 'logic',
    'tests/unit/plugins/test_plugin_attributes.py': 'repo',
    'tests/unit/roles/test_argument_specs.py': 'repo',
    'tests/unit/roles/test_generated_role_files.py': 'repo',
    'tests/unit/test_changelog_entries.py': 'repo',
    'tests/unit/test_layers.py': 'repo',
    'tests/unit/test_supported_versions.py': 'repo',
}

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Python's audit events of a program being started (fork alone starts none)
PROGRAM_EVENTS = frozenset(('subprocess.Popen', 'os.exec', 'os.posix_spawn', 'os.spawn',
                            'os.system'))


def module_path(item):
    """A test's module as ONE_STACK names it."""
    return os.path.relpath(str(item.path), REPO).replace(os.sep, '/')


def mark(items):
    """Mark here_only the tests of ONE_STACK's modules."""
    for item in items:
        if module_path(item) in ONE_STACK:
            item.add_marker(pytest.mark.here_only)


class ProgramGuard:
    """Notes the programs a watched test starts, from Python's audit events
    (a hook once added stays for the process: it does nothing while no test
    is watched)."""

    def __init__(self):
        self.watched = None
        self.started = []
        sys.addaudithook(self._audit)

    def _audit(self, event, args):
        if self.watched is None or event not in PROGRAM_EVENTS:
            return
        program = args[0] if args else None
        if event == 'subprocess.Popen' and program is None:
            argv = args[1]
            program = argv if isinstance(argv, (str, bytes)) else (argv or ['?'])[0]
        self.started.append(os.fsdecode(program) if isinstance(program, bytes)
                            else str(program))

    def watch(self, name):
        """From now on note what starts, for name (None: watch nothing)."""
        self.watched = name
        self.started = []

    def check(self):
        """Fail if the watched test started a program, naming it and the rule."""
        name, started = self.watched, self.started
        self.watch(None)
        if started:
            pytest.fail('%s is in tests/stacks.py\'s ONE_STACK (the current stack does not '
                        'rerun it) but started %s: a module that starts a program runs on '
                        'both stacks; take it out of the table'
                        % (name, ', '.join(sorted(set(started)))), pytrace=False)
