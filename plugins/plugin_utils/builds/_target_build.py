# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_build with ``build_on: target``: a host builds its own system, in its
own task, in parallel with the others (colmena's buildOnTarget).

The host's store is probed first, over the task's connection with its become:
where nix is, whether the system is there already, and (not in check mode)
the GC root of the system to be built planted there, as a copy plants it
(the activation releases it). The probe is the copy stage's
(copy/target/copy-probe.sh), which sits above this stage: the action hands
it in (``probe``, copy/_copy.py ``probe_target``). Then the derivation
closure goes there (``nix copy --derivation``) and ONE ``nix build --store
ssh-ng://<host>`` builds it; the output never passes through the controller.
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _build, _closure
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds._build_stage import (
    BuildStage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    dropped_warning)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import remote_program


class NoNixFound(NixdeployError):
    """The probe found no nix on the target (where remote_nix_dir says, or
    on its PATH and in the known locations)."""


def build_on_target(opts, args, check_mode, host, request, target, probe):
    """The batch entry ({'request', 'result', 'error'?}) of ``host`` (its
    inventory name) for its ``request`` ({drv, eval, build_on}), built on
    ``target`` (its ``Host``): the system's path, whether it was built (or,
    in ``check_mode``, what would be), the store it is in and its closure's
    size. ``probe``: the copy stage's ``probe_target``."""
    host_entry = {'request': request, 'result': {}}
    drvs = BuildStage(opts, args, check_mode).drvs({host: host_entry})
    if host not in drvs:
        return host_entry
    drv = drvs[host]
    builder = _build.Builder(opts, args.get('timeout'))
    graph = builder.derivations([drv])
    out = _build.outputs_of(graph, drv)[0]
    # raises for a connection the controller's ssh cannot take
    target = target.require_ssh()
    rooted = not check_mode
    _rc, _stdout, _stderr, facts = probe(
        target, [out], args.get('remote_nix_dir'), root_key=host if rooted else None,
        root_path=out if rooted else None, sudoable=True)
    if facts is None:
        raise NoNixFound('no nix found on the target (set remote_nix_dir)')
    uri = target.store_uri(remote_program=remote_program(facts['nix_dir']))
    env = target.nix_env()
    store_args = ('--store', uri)
    result = host_entry['result']
    result.update({'drv_path': drv, 'out_path': out, 'target_store': uri})
    dropped = dropped_warning(host, facts['dropped'])
    if dropped:
        result.setdefault('warnings', []).append(dropped)
    if rooted:
        result['target_gc_root'] = facts.get('gc_root')
        if facts.get('gc_root_error'):
            result.setdefault('warnings', []).append(
                '%s: the system built there is not protected from a garbage collection '
                'before its activation: %s' % (host, facts['gc_root_error']))
    if out not in facts.get('invalid', []) and facts.get('complete'):
        result.update({'built': False, 'would_build': [], 'would_fetch': []})
    elif check_mode:
        result.update(_build.remote_plan(builder, [drv], graph, store_args, env)[drv])
    else:
        builder.copy_derivations([drv], uri, env)
        built = _build.build_group(builder, [drv], graph, store_args, env)[drv]
        result.update(dict((k, v) for k, v in built.items() if k != 'error'))
        if 'error' in built:
            host_entry['error'] = built['error']
            return host_entry
    if not check_mode:
        infos = builder.path_infos([out], store_args, env)
        result['closure_paths'], result['closure_bytes'] = _closure.sizes(infos, out)
    return host_entry
