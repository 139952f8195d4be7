# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Byte counts as people read them (the report's page, the status line)."""


def human_bytes(value, signed=False):
    """'12 B', '34.5 MiB'; with ``signed`` a growth gets its '+'; '-' for None."""
    if value is None:
        return '-'
    sign = '+' if signed and value > 0 else ('-' if value < 0 else '')
    amount = float(abs(value))
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if amount < 1024 or unit == 'GiB':
            text = '%d %s' % (amount, unit) if unit == 'B' else '%.1f %s' % (amount, unit)
            return sign + text
        amount /= 1024.0
    return sign + '%d B' % amount
