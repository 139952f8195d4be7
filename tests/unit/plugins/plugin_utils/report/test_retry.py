"""plugin_utils/report/_retry.py: the file of unreachable hosts for
``-l @nixdeploy-unreachable.txt`` keeps what a limited run did not try, takes
out what it reached, and goes when no host is left."""

import contextlib
import os
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import _retry  # noqa: E402


def test_the_file_follows_the_runs(tmp_path):
    path = str(tmp_path / 'nixdeploy-unreachable.txt')
    assert _retry.update(path, {'phone': 'no route', 'laptop': 'timeout'}, set()) == \
        ['laptop', 'phone']
    with open(path) as handle:
        assert handle.read() == 'laptop\nphone\n'
    # a list of names for the next -l: readable by all, as a retry file
    assert os.stat(path).st_mode & 0o777 == 0o644
    # a run limited to the laptop reaches it: the phone, not tried, stays
    assert _retry.update(path, {}, {'laptop'}) == ['phone']
    # a new host off, the phone still off: once each
    assert _retry.update(path, {'phone': 'no route', 'mac': 'timeout'}, {'web1'}) == \
        ['mac', 'phone']
    assert _retry.update(path, {}, {'phone', 'mac'}) == []
    assert not os.path.exists(path)
    # nothing to say, nothing written
    assert _retry.update(path, {}, set()) == [] and not os.path.exists(path)


def test_the_closing_line_names_each_host_escaped_and_the_way_to_retry():
    line = _retry.line({'pho\x1bne': 'no route', 'mac': 'timeout'}, 'nixdeploy-unreachable.txt')
    assert line == ('nixdeploy: 2 unreachable (nothing was built or copied for them): mac, '
                    'pho\\x1bne; to try again: -l @nixdeploy-unreachable.txt')
    assert _retry.line({}, 'x') is None
    assert _retry.line({'mac': ''}, None).endswith('for it): mac')


def test_a_link_in_its_place_is_neither_read_nor_written(tmp_path):
    secret = private_file(tmp_path)
    path = tmp_path / 'nixdeploy-unreachable.txt'
    os.symlink(str(secret), str(path))
    with pytest.raises(_retry.Refused) as refused:
        _retry.update(str(path), {'phone': 'no route'}, set())
    assert str(refused.value) == 'it is a symbolic link'
    assert os.path.islink(str(path)) and secret.read_text() == 'private-token-41d9\n'


def private_file(folder):
    """A file only the user may read, one line that reads as a host name."""
    secret = folder / 'id-notes'
    secret.write_text('private-token-41d9\n')
    os.chmod(str(secret), 0o600)
    return secret


@contextlib.contextmanager
def right_after_first(names, path, then):
    """The race a co-tenant of the folder wins now and then, made certain:
    ``then()`` runs right after the first call of one of os's ``names`` on
    ``path`` returns (the check of a check-then-open, or the one open)."""
    real = dict((name, getattr(os, name)) for name in names)
    done = []

    def hooked(name):
        def call(target, *args, **kwargs):
            result = real[name](target, *args, **kwargs)
            if not done and os.fspath(target) == path:
                done.append(name)
                then()
            return result
        return call

    try:
        for name in names:
            setattr(os, name, hooked(name))
        yield done
    finally:
        for name, function in real.items():
            setattr(os, name, function)


def test_a_link_swapped_in_after_the_file_is_opened_is_never_followed(tmp_path):
    """The list checked, then a link to a private file put in its place
    before the read: the run reads the file it opened, once and without
    following a link, and the new list replaces the link by a rename; the
    private file's line is nowhere in it."""
    secret = private_file(tmp_path)
    path = str(tmp_path / 'nixdeploy-unreachable.txt')
    _retry.update(path, {'laptop': 'timeout'}, set())

    def swap():
        os.unlink(path)
        os.symlink(str(secret), path)

    with right_after_first(('lstat', 'stat', 'open'), path, swap) as done:
        assert _retry.update(path, {'phone': 'no route'}, set()) == ['laptop', 'phone']
    assert done, 'the file was never looked at'
    assert not os.path.islink(path)
    with open(path) as handle:
        assert handle.read() == 'laptop\nphone\n'
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert secret.read_text() == 'private-token-41d9\n'
    assert os.stat(str(secret)).st_mode & 0o777 == 0o600


def test_a_link_swapped_in_for_the_new_list_before_its_mode_is_set(tmp_path):
    """The new list's temp file, in a folder the co-tenant can write, swapped
    for a link to a private file before it is made readable: the mode is set
    on the file the run created, never on what a link points at."""
    secret = private_file(tmp_path)
    folder = tmp_path / 'shared'
    folder.mkdir()
    path = str(folder / 'nixdeploy-unreachable.txt')

    def swap():
        for name in os.listdir(str(folder)):
            if name.startswith('.nixdeploy-unreachable.txt.'):
                os.unlink(str(folder / name))
                os.symlink(str(secret), str(folder / name))

    real_chmod, real_fchmod = os.chmod, os.fchmod

    def chmod(target, mode, *args, **kwargs):
        swap()
        return real_chmod(target, mode, *args, **kwargs)

    def fchmod(fd, mode):
        swap()
        return real_fchmod(fd, mode)

    try:
        os.chmod, os.fchmod = chmod, fchmod
        _retry.update(path, {'phone': 'no route'}, set())
    finally:
        os.chmod, os.fchmod = real_chmod, real_fchmod
    assert os.stat(str(secret)).st_mode & 0o777 == 0o600
    assert secret.read_text() == 'private-token-41d9\n'


def test_a_name_that_selects_other_hosts_is_left_out():
    import tempfile
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, 'nixdeploy-unreachable.txt')
    assert _retry.update(path, {'all': 'x', '*': 'x', 'web:db': 'x', 'a\nb': 'x', 'ok-1.b': 'x'},
                         set()) == ['ok-1.b']
