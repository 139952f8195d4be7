"""Which files hold a secret: what a test that hands a secret to the
collection reads the run's files with afterwards."""

import os


def files_holding(folder, secrets):
    """(path relative to ``folder``, secret) for each regular file under
    ``folder`` that holds one of ``secrets`` (text)."""
    holding = []
    for root, _dirs, files in os.walk(str(folder)):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                continue
            with open(path, 'rb') as handle:
                text = handle.read()
            holding.extend((os.path.relpath(path, str(folder)), secret)
                           for secret in secrets if secret.encode() in text)
    return holding
