# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the Nix inventory hands its values to Ansible: a host variable's value
(``inventory_value``) and a host name (``host_name``) as data, never
templated, and exported by ``ansible-inventory --list --export`` (AWX's
inventory sync) as plain JSON wherever that keeps them data (``TRUSTS``:
whether this ansible-core marks values trusted).
"""

try:
    # ansible-core 2.19+ (data tagging): a string is templated only when
    # tagged TrustedAsTemplate, and nothing an inventory plugin reads is.
    # But `ansible-inventory --list --export` (AWX's inventory sync) prints
    # every untrusted host var string as {"__ansible_unsafe": "..."}
    # (_internal/_json/_profiles/_legacy.py, trust inversion), which AWX
    # stores as a dict. A string without template syntax is the same
    # templated or not: the templar returns it as is before it looks at trust
    # (_internal/_templating/_engine.py, `is_possibly_template` with the
    # default delimiters, which every variable is templated with; a
    # `#jinja2:` header counts as syntax). So such a string is marked trusted
    # and is exported as a plain JSON string. A string that holds template
    # syntax stays untrusted: exported with the marker, which the script
    # inventory plugin reads back untrusted from AWX's stored copy, where a
    # plain string would come back trusted and be templated
    # (plugins/inventory/script.py tags a script's output TrustedAsTemplate).
    from ansible.template import Templar, trust_as_template

    _TEMPLAR = []

    def inventory_value(value):
        if isinstance(value, str):
            if not _TEMPLAR:
                _TEMPLAR.append(Templar())
            return value if _TEMPLAR[0].is_possibly_template(value) else trust_as_template(value)
        if isinstance(value, (list, tuple)):
            return [inventory_value(item) for item in value]
        if isinstance(value, dict):
            # keys are never templated
            return dict((key, inventory_value(item)) for key, item in value.items())
        return value

    def host_name(value):
        return value
    TRUSTS = True
except ImportError:  # ansible-core 2.18: mark every string unsafe
    from ansible.utils.unsafe_proxy import wrap_var as inventory_value
    host_name = inventory_value
    TRUSTS = False
