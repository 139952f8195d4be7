# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which function serves a batch work, found by the serving process from
its name.

A phase names its work's function (``'<module>:<function>'``, a
module-level function ``serve(context, requests, put)`` of the
collection, marked ``@serves``) and gives the data it needs (the
context); the run's serving process gets both from the host that
registers the work, over its socket, and imports the function itself. Nothing of the worker that asked (its
action, its variables, a closure) is called in that process.

A name is data: only a function marked ``@serves`` and defined in a module
of the collection (``COLLECTION``) is called; any other name (another
function of the collection, one a module imported from elsewhere) is
refused with a ``BatchError`` naming the work's kind. The one way to widen
the modules is code, not data: ``trust(module)``, called by a test's helper
module as it is imported, so that a test's own serve functions may run in a
real serving process (the collection never calls it).
"""

import importlib
import inspect
import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import BatchError

# the package every serve function of the collection is in
COLLECTION = 'ansible_collections.nixdeploy.fleet.plugins'
# the modules (and packages) whose functions may serve: the collection's,
# and what a test trusted in this process
_TRUSTED = [COLLECTION]
# a dotted module name, a colon, a function name
_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*\Z')


def serves(function):
    """Mark ``function`` (``serve(context, requests, put)``) as a batch
    work's serve function: the serving process calls no other."""
    function.nixdeploy_batch_serve = True
    return function


def trust(module):
    """Let this process (and the serving processes it starts) call the
    serve functions of ``module`` (a module name outside the collection):
    for tests only, from their helper module's code."""
    if module not in _TRUSTED:
        _TRUSTED.append(module)


def check_name(kind, serve):
    """``serve`` as a ``BatchWork`` of ``kind`` takes it: a name, never a
    callable (a function of the worker would have to cross into the serving
    process): BatchError, an internal error of the phase."""
    if callable(serve):
        raise BatchError('the %s batch: its serve is the name of its function '
                         '("<module>:<function>"), not the function %r'
                         % (kind.split('-')[0], serve))
    return serve


def _trusted(module):
    return any(module == root or module.startswith(root + '.') for root in _TRUSTED)


def serve_function(kind, name):
    """The function ``name`` (``'<module>:<function>'``) names, imported
    here; BatchError naming the ``kind``'s phase when it is no function
    defined in a module of the collection (or of one a test trusted)."""
    phase = kind.split('-')[0]
    if not isinstance(name, str) or not _NAME.match(name) or not _trusted(name.split(':')[0]):
        raise BatchError('the %s batch: its serve function %r is not a function of the '
                         'collection (%s.<module>:<function>): refused' % (phase, name, COLLECTION))
    module_name, function_name = name.split(':')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BatchError('the %s batch: its serve function %s: no such module (%s)'
                         % (phase, name, exc))
    found = getattr(module, function_name, None)
    # defined there (not a name the module imported from elsewhere) and
    # marked: not any other function of the collection
    if not inspect.isfunction(found) or found.__module__ != module_name \
            or getattr(found, 'nixdeploy_batch_serve', False) is not True:
        raise BatchError('the %s batch: its serve function %s is no function of %s marked '
                         '@serves: refused' % (phase, name, module_name))
    return found
