# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A key's content, read on the controller.

``text`` (vault-encrypted values decrypt only here), a ``src`` file (read by
the caller's ``read_src``: the action plugin's search path and vault) or the
stdout of a ``command`` argv run without a shell and without stdin. The
content stays bytes in memory until ``_keys_target.Uploader`` sends it as a
script's stdin; nothing of it, not even a hash, appears in a result.
"""

import hashlib
import subprocess

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidType
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys._keys import KeysError

COMMAND_STDERR_CHARS = 400


def to_content(value):
    """A text value as bytes; vault-encrypted values decrypt here."""
    if isinstance(value, bytes):
        return value
    if value is None or isinstance(value, (bool, int, float, dict, list, tuple)):
        raise InvalidType('text must be a string')
    # str() decrypts Ansible's vaulted strings (2.18 AnsibleVaultEncryptedUnicode,
    # 2.19 EncryptedString) without ever showing them
    return str(value).encode('utf-8', 'surrogateescape')


def run_command(argv, cwd=None):
    """stdout of ``argv`` run on the controller, no shell, no stdin.

    A failure names the program only: its arguments may hold a secret (a
    token, a vault path), its stdout IS the secret and is never shown, and
    its stderr is the KeysError's ``detail``, which only a verbose run shows."""
    program = argv[0]
    try:
        # controller-only code (the nix_keys action plugin), no AnsibleModule to
        # offer run_command: ansible-test 2.21+ flags subprocess in module_utils
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                              stderr=subprocess.PIPE, cwd=cwd, check=False)
    except OSError as exc:
        raise KeysError('cannot run %s: %s' % (program, exc.strerror or exc))
    if proc.returncode != 0:
        err = proc.stderr.decode('utf-8', 'replace').strip()
        if len(err) > COMMAND_STDERR_CHARS:
            err = '...' + err[-COMMAND_STDERR_CHARS:]
        raise KeysError('command %s exited with %d' % (program, proc.returncode),
                        detail=err or None)
    return proc.stdout


def load_content(key, read_src, cwd=None):
    """The content of ``key`` (bytes). ``read_src(name)`` reads a controller
    file (the action plugin's: search path and vault); KeysError names the key."""
    try:
        if key.source == 'text':
            try:
                return to_content(key.value)
            except TypeError:
                raise KeysError('text must be a string')
        if key.source == 'src':
            return read_src(key.value)
        return run_command(key.value, cwd=cwd)
    except KeysError as exc:
        raise KeysError("key '%s': %s" % (key.key, exc.message), key.key, detail=exc.detail)


def salted_digest(nonce, content):
    """sha256(nonce || content), as the target computes it (keys-lib.sh's
    ``salted``): ``nonce`` is one call's fresh salt (64 hex digits), never
    published, so the digest cannot be used to guess the content."""
    return hashlib.sha256(nonce.encode('ascii') + content).hexdigest()
