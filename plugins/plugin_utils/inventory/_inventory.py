# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet as the flake describes it: the one ``nix eval`` that reads it.

``eval_args()`` builds the single ``nix eval`` that reads only inventory data
(never a system): ``--apply`` with the program ``inventory.nix`` beside this
file, which finds the source (a row of ``_inventory_sources.SOURCES``: an
inventory attribute, a colmena hive, deploy-rs nodes or the system
configurations) and returns its nodes as JSON through the source's Nix
mapper (``source-<name>.nix``). The mapping of that JSON to hosts is pure
Python beside it: ``_inventory_hosts.build_inventory``. The inventory
plugin stays a thin shell around these two.
"""

import hashlib
import json
import os
import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import (
    PLATFORM_ORDER, PLATFORMS)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_error import (
    InventoryError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_sources import (
    AUTO, CHOICES, SOURCES, source_row)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import nix_string
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_config import (
    ACCEPTED_NOTE, accepts_flake_config, refused_note)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_stderr import (
    refused_flake_settings)

# the program and its sources' mappers ship beside this file; their text is
# passed whole (a pure evaluation may not import a file outside the store)
HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.join(HERE, 'inventory.nix')

# the platforms' outputs in the order they are searched (the table's)
CONFIG_OUTPUTS = [PLATFORMS[p]['output'] for p in PLATFORM_ORDER]

PREFIX = 'nixdeploy.fleet.nix: '


def parse_attribute(value):
    """An attribute option (``a.b`` or a list) as a list of names, or None."""
    if value in (None, '', []):
        return None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    parts = []
    for part in re.findall(r'"((?:[^"\\]|\\.)*)"|([^.]+)', str(value)):
        parts.append(part[0].replace('\\"', '"') if part[0] else part[1])
    return parts


def program_params(source=AUTO, attribute=None):
    """What ``inventory.nix`` reads as ``params``, plain data: the source
    asked for, and each row of the table with the paths it is looked for at
    (the option ``attribute`` replaces those of the source asked for, with
    ``auto`` the first row's) and the words for it missing."""
    if source not in CHOICES:
        raise InventoryError('unknown source %r (one of %s)' % (source, ', '.join(CHOICES)))
    attr = parse_attribute(attribute)
    named = SOURCES[0].name if source == AUTO else source
    rows, looked = [], []
    for row in SOURCES:
        paths = row.attributes
        if attr and paths is not None and row.name == named:
            paths = [attr]
        looked.append(row.looked_for(paths, CONFIG_OUTPUTS))
        rows.append({
            'name': row.name,
            'attributes': paths,
            'missing': (PREFIX + 'the flake has no ' + row.missing.format(looked[-1])
                        if row.missing else None),
            'fillsGaps': row.fills_gaps,
            'inAuto': row.in_auto,
            'params': row.nix_params,
        })
    return {
        'wanted': source,
        'sources': rows,
        'noSource': no_source_message(looked, [row.in_auto for row in SOURCES]),
        'configOutputs': CONFIG_OUTPUTS,
    }


def no_source_message(looked, in_auto):
    """The error of ``auto`` finding no source: the inventory attribute
    named first, with where it must sit, and the source ``auto`` passes over
    (configuration names) as the inventory file's explicit choice.
    ``looked``: where each row was looked for, ``in_auto``: whether auto
    takes it, both in the table's order."""
    auto = [where for where, taken in zip(looked, in_auto) if taken]
    others = ', '.join(auto[1:-1]) + ' or ' + auto[-1]
    return ('%sthe flake has no attribute %s among its outputs (nor %s): the attribute must sit inside '
            'outputs, as in outputs = { self, ... }: { %s = { web1 = { targetHost = "web1"; '
            'tags = [ "vps" ]; }; }; nixosConfigurations = ...; }; or, for one host per '
            'configuration name (no tags, no addresses, your login user), set source: '
            'configurations in the inventory file' % (PREFIX, auto[0], others, auto[0]))


def auto_fallback_message(source, attribute=None):
    """The warning of ``auto`` that took ``source`` (colmena, deploy-rs): the
    flake has no inventory attribute, which may be meant (a colmena or
    deploy-rs flake) or not (the attribute gone, or outside ``outputs``).
    Said each parse until the inventory file names the source."""
    first, row = SOURCES[0], source_row(source)
    where = '.'.join(parse_attribute(attribute)) if attribute else \
        first.looked_for(first.attributes, CONFIG_OUTPUTS)
    return ('the flake has no attribute %s among its outputs: its hosts come from its %s, without '
            'what the %s data gives (tags, addresses, users); if that is meant, set source: %s in '
            'the inventory file (this warning goes); if not, the attribute %s must sit inside '
            'outputs' % (where, row.missing.format(row.looked_for(row.attributes, CONFIG_OUTPUTS)),
                         first.name, source, where))


def parse_warnings(result, source, attribute=None):
    """What a parse warns of: ``auto``'s choice of a source other than the
    inventory data (a flake whose inventory attribute went, or sits outside
    outputs, would otherwise lose its tags and addresses unsaid), then the
    inventory's own messages (``result``: ``build_inventory``'s)."""
    warnings = []
    if source == AUTO and result.source != SOURCES[0].name:
        warnings.append(auto_fallback_message(result.source, attribute))
    return warnings + list(result.messages())


def _text(path):
    with open(path) as handle:
        return handle.read()


def _mapper_text(row):
    """A row's Nix mapper, the file it names beside the program."""
    return _text(os.path.join(HERE, row.nix))


def apply_expression(source=AUTO, attribute=None):
    """The ``--apply`` function for one parse: ``inventory.nix`` applied to
    its params, one JSON string every user value is in (``nix_string``
    quotes it), and to the sources' mappers (the collection's own files).
    Each text is parenthesised on lines of its own: a file may end in a
    comment."""
    params = nix_string(json.dumps(program_params(source, attribute), sort_keys=True))
    mappers = ''.join('  %s = (\n%s\n);\n' % (nix_string(row.name), _mapper_text(row))
                      for row in SOURCES)
    return '(\n%s\n) (builtins.fromJSON %s) {\n%s}\n' % (_text(PROGRAM), params, mappers)


def eval_args(outputs, source=AUTO, attribute=None):
    """Arguments after ``nix eval`` (the NixOptions supply the rest).

    ``outputs``: the arguments naming the flake's outputs set
    (``NixCommand.outputs``, which differ by Nix version)."""
    return ['--json'] + list(outputs) + ['--apply', apply_expression(source, attribute)]


def check_flake(flake):
    """The flake reference alone: the attribute has an option of its own."""
    if '#' in flake:
        raise InventoryError('flake %r names an attribute: give the flake alone and the '
                             'attribute in the attribute option' % (flake,))
    return flake


def request_digest(argv, options):
    """The sha256 of one inventory evaluation's request: the nix argv and the
    Nix options it was made with.

    The inventory cache keeps this instead of the argv: ``nix_options`` may
    carry secrets (``access-tokens``) that must not sit in a cache file,
    while a changed option (or apply expression) must still miss the cache.
    The options count apart from the argv, so the digest changes with them
    however they reach Nix."""
    text = json.dumps([list(argv), options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def flake_config_warnings(stderr, flake, options, extra_args=()):
    """The warnings of one inventory evaluation about the flake's own
    ``nixConfig``: the settings Nix did not apply (its warnings in
    ``stderr``, dropped otherwise on success), or the operator's opting in
    (``options``: nix_options, ``extra_args``: nix_args)."""
    found = []
    refused = refused_flake_settings(stderr)
    if refused:
        found.append(refused_note(refused, flake))
    if accepts_flake_config(options, extra_args):
        found.append(ACCEPTED_NOTE)
    return found
