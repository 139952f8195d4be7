# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one short digest of any data: a stable file name or key
for a batch's files, a probe's answer kept for the run, a warning said once.
"""

import hashlib
import json


def short_digest(*parts):
    """A short stable name for ``parts`` (any JSON-serialisable data): the
    first 32 hex digits of the sha256 of their JSON, keys sorted."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:32]
