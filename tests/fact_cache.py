"""Reading back the facts a run kept in a ``jsonfile`` fact cache (ansible-runner's
``fact_cache_type='jsonfile'``, AWX's *Enable Fact Storage*), whichever
ansible-core wrote them."""

import json
import os


def cached_facts(folder, host):
    """``host``'s facts in a jsonfile fact cache folder, read as
    ansible-core reads them back: from 2.19 the file is ``s1_<host>`` (a
    schema version) and holds the facts under ``__payload__``, a JSON string
    of tagged values that ansible-core's own decoder reads; before, the file
    is ``<host>`` and holds them as they are. None when absent."""
    for name in ('s1_' + host, host):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path) as handle:
                data = json.load(handle)
            if isinstance(data, dict) and set(data) == {'__payload__'}:
                from ansible._internal._json._profiles import _cache_persistence
                data = json.loads(data['__payload__'], cls=_cache_persistence.Decoder)
            return data
    return None
