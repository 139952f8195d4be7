# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for the get-pip.py that ansible-test downloads.

ansible-test builds each sanity test's virtualenv without pip and bootstraps
pip with a script fetched from ci-files.testing.ansible.com, which machines
that only reach PyPI cannot download. ansible-test uses a cached copy from
~/.ansible/test/cache/ when one exists; tests/sanity/run.sh puts this file
there. Like get-pip.py it takes pip install arguments (e.g. ``pip==24.2
--no-setuptools --no-wheel``): it seeds pip from the interpreter's own
``ensurepip`` and lets that pip install the requested packages from PyPI.
"""

import subprocess
import sys


def main(argv):
    no_setuptools = '--no-setuptools' in argv
    no_wheel = '--no-wheel' in argv
    args = [arg for arg in argv if arg not in ('--no-setuptools', '--no-wheel')]

    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'])
    subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)

    # ensurepip may also seed setuptools/wheel; drop what was not asked for.
    unwanted = (['setuptools'] if no_setuptools else []) + (['wheel'] if no_wheel else [])
    if unwanted:
        subprocess.call([sys.executable, '-m', 'pip', 'uninstall', '-y', '-q',
                         '--disable-pip-version-check'] + unwanted)


if __name__ == '__main__':
    main(sys.argv[1:])
