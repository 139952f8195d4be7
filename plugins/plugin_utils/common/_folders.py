# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A folder of the run's own files, made when missing."""

import os


def private_folder(path):
    """``path``, made (mode 0700) when missing; several worker processes
    may make it at once: the one that loses the race finds it there."""
    if not os.path.isdir(path):
        try:
            os.makedirs(path, 0o700)
        except OSError:
            if not os.path.isdir(path):
                raise
    return path
