"""plugin_utils/host/_script.py: the loader of the target programs, run under sh."""

import os
import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script  # noqa: E402

HOSTILE = "x'; touch pwned; echo '$(id)`id`\n\"$HOME\""


def run_sh(text, env=None, cwd=None):
    return subprocess.run(['/bin/sh', '-c', text], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, cwd=cwd, check=False)


def test_values_reach_sh_as_data(tmp_path):
    program = _script.assignments({'VALUE': HOSTILE, 'FLAG': True, 'NONE': None}) + \
        'printf "%s|%s|%s" "$VALUE" "$FLAG" "$NONE"'
    proc = run_sh(program, cwd=str(tmp_path))
    assert proc.stdout == HOSTILE + '|1|'
    assert not os.path.exists(tmp_path / 'pwned')


def test_bad_names_and_values_are_refused():
    with pytest.raises(ValueError):
        _script.assignments({'lower': 'x'})
    with pytest.raises(ValueError):
        _script.assignments({'LIST': ['a', 'b']})


def test_emit_and_parse_round_trip():
    program = _script.render([], {})
    values, log = program.parse_raw(run_sh(program + 'emit a "one\ntwo"; emit b c x; log_section; echo text').stdout)
    assert values == {'a': 'one two', 'b': 'c x'}
    assert log == 'text'


def test_fail_exits_3_with_an_error_value():
    program = _script.render([], {})
    proc = run_sh(program + 'fail "no nix here"; echo never')
    assert proc.returncode == 3
    assert program.parse(proc.stdout)[0] == {'error': 'no nix here'}


def test_find_nix_prefers_remote_nix_dir_then_path_then_known_dirs(tmp_path):
    home = tmp_path / 'home'
    known = home / '.nix-profile' / 'bin'
    known.mkdir(parents=True)
    (known / 'nix-env').write_text('#!/bin/sh\n')
    (known / 'nix-env').chmod(0o755)
    # a PATH without nix: the known locations are searched
    empty = tmp_path / 'empty'
    empty.mkdir()
    env = {'HOME': str(home), 'USER': 'u', 'PATH': str(empty)}
    look = 'if find_nix nix-env; then echo "$NIX_TOOL"; else echo none; fi'
    found = run_sh(_script.render([], {}) + look, env=env).stdout.strip()
    assert found == str(known / 'nix-env')
    # remote_nix_dir wins, and only it is searched
    forced = run_sh(_script.render([], {'NIX_DIR': str(tmp_path / 'nowhere')}) + look,
                    env=env).stdout.strip()
    assert forced == 'none'


def test_every_target_program_passes_shellcheck():
    paths = _script.programs()
    assert _script.LIBRARY in paths
    proc = subprocess.run(['shellcheck', '-s', 'sh'] + [paths[n] for n in sorted(paths)],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize('line,expected', [
    ('/dev/sda1 49152 40960 8192 84% /nix', (8192, '/nix')),
    # GNU with a long name, busybox, macOS (an APFS volume), a name with spaces
    ('lab-store-ndl3-f1 49152 49152 0 100% /nix', (0, '/nix')),
    ('/dev/disk3s7 487350400 12345 12000000 1% /nix', (12000000, '/nix')),
    ('my disk 100 50 50 50% /mnt/my store', (50, '/mnt/my store')),
    ('', (None, None)),
    ('df: /nix/store: No such file or directory', (None, None)),
])
def test_df_space_reads_every_df(line, expected):
    assert _script.df_space(line) == expected
