# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fix for a failed evaluation, where the cause is known for sure.

Nix's message names what went wrong in Nix's terms: a path in the store
copy of the flake the user never wrote, or only the one name it did not find.
Each function here takes that message and what the host asked, and returns
ONE sentence in the user's terms with the fix, or None when the cause is not
certain (then Nix's message stands alone):

- ``untracked_file``: a file the flake imports that exists in the work tree
  but git does not track (a git flake's copy holds only tracked files);
- ``missing_attribute`` and ``nearest_names``: a host whose configuration
  name is not in its flake's set (``nixosConfigurations`` ...), with the
  names of that set closest to it; ``attribute_names`` reads those names
  with one bounded Nix call.

And one rewrite of Nix's own words, for every phase's failure
(``trace_hint``): Nix points at its command line option ``--show-trace``,
which the user never types; the message points at the setting they have.

Nothing here runs a shell: git and Nix get argument lists.
"""

import difflib
import json
import os
import re
import shutil
import subprocess

from urllib.parse import unquote

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import nix_list
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_output import strip_ansi

GIT_FILE = 'git+file://'
# how long one git command may take (a big checkout on a slow disk); on a
# timeout there is no hint
GIT_TIMEOUT = 30
# how long the one Nix call that lists a set's names may take
NAMES_TIMEOUT = 30
# how many near names the hint lists, and up to how many names it lists
# all of them when none is near
NEAREST = 5
LIST_ALL_UP_TO = 8

# A file missing from the store copy of the flake, in the words of every Nix:
# "getting status of '/nix/store/<hash>-source/hosts/common.nix': No such
# file or directory" (up to 2.19 and Lix), "path '/nix/store/<hash>-source/
# hosts/common.nix' does not exist" (later Nix, on a path: copy), "path
# '«git+file:///repo?ref=...&rev=...»/hosts/common.nix' does not exist" (Nix
# 2.34, a commit read through its git accessor). Nix 2.20+ say "... is not
# tracked by Git" themselves for a git work tree.
_STORE_SOURCE = (
    re.compile(r"getting status of '/nix/store/[a-z0-9]{32}-source/([^'\n]+)'"),
    re.compile(r"path '/nix/store/[a-z0-9]{32}-source/([^'\n]+)' does not exist"),
    re.compile(u"path '\u00ab[^\u00bb'\n]*\u00bb/([^'\n]+)' does not exist"),
)

# Nix's pointer to its full trace: "(use '--show-trace' to show detailed
# location information)" (Nix 2.4 on, Lix), "(stack trace truncated; use
# '--show-trace' to show the full, detailed trace)" (later Nix, after the
# frames it shows); what comes before "use" stays
_SHOW_TRACE = re.compile(r"\(([^()\n]*?)use '--show-trace'[^)\n]*\)")
# what it reads as: the deploy role's variable, or a task's own option
ROLE_TRACE = "run again with -e nix_show_trace=true for Nix's full trace"
TASK_TRACE = "run again with the task's option show_trace: true for Nix's full trace"

# The evaluation's own words for a missing attribute (evaluation/_eval.py's
# --apply expression): "the flake has no attribute a.b.c (no 'b')"
_NO_ATTRIBUTE = re.compile(r"the flake has no attribute .* \(no '(.*)'\)\s*$", re.MULTILINE)


# ------------------------------------------------------------------ Nix's trace
def trace_hint(message, role_vars=True):
    """``message`` with Nix's ``(use '--show-trace' ...)`` as the setting
    that gives the trace: the deploy role's variable (``role_vars``: the
    task takes its options from them), else the task's option."""
    said = ROLE_TRACE if role_vars else TASK_TRACE
    return _SHOW_TRACE.sub(lambda match: u'(%s%s)' % (match.group(1), said),
                           u'%s' % (message or u''))


# ------------------------------------------------------------------ untracked files
def git_top(flake):
    """The folder of a ``git+file://`` flake reference (its work tree's top:
    Nix copies the whole repository, a ``?dir=`` included), else None."""
    text = u'%s' % (flake or '')
    if not text.startswith(GIT_FILE):
        return None
    path = unquote(text[len(GIT_FILE):].split('?', 1)[0].split('#', 1)[0])
    return path if os.path.isabs(path) else None


def _git(top, args):
    """git's exit code in ``top`` (an argument list, never a shell), or None
    when git is missing or did not finish in time."""
    git = shutil.which('git')
    if git is None:
        return None
    try:
        # controller-only code reading the user's checkout
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
            [git, '-C', top] + list(args), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=GIT_TIMEOUT,
            check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.returncode


def is_untracked(top, rel):
    """True when git in ``top`` tracks nothing at ``rel`` (a file, or a
    folder with no tracked file in it), False when it does, None when git
    cannot say (no git, not a work tree, a repository git refuses)."""
    # --error-unmatch: 1 when the path matches no tracked file; other errors
    # (not a repository, a refused owner) exit 128
    code = _git(top, ['ls-files', '--error-unmatch', '--', rel])
    if code == 0:
        return False
    if code == 1:
        return True
    return None


def untracked_file(message, flake, cwd=None):
    """The sentence with the fix when Nix's ``message`` says a file of the
    flake's store copy is missing, ``flake`` is a git flake of this machine,
    and the file is there in its work tree but git does not track it; else
    None. ``cwd``: the folder the user runs from (the ``git add`` is
    written for it)."""
    top = git_top(flake)
    if top is None or not os.path.isdir(top):
        return None
    text = strip_ansi(message or '')
    for pattern in _STORE_SOURCE:
        for rel in pattern.findall(text):
            rel = rel.rstrip('/')
            parts = rel.split('/')
            if not rel or '..' in parts or '' in parts:
                continue
            full = os.path.join(top, rel)
            if not os.path.lexists(full) or not is_untracked(top, rel):
                continue
            ignored = _git(top, ['check-ignore', '-q', '--', rel]) == 0
            return u'%s is not tracked by git, and a git flake sees only tracked files: %s%s' % (
                rel, _git_add(top, rel, cwd, ignored),
                ' (.gitignore leaves it out: -f adds it all the same)' if ignored else '')
    return None


def _git_add(top, rel, cwd, force):
    """``git add <file>`` as the user types it in ``cwd``."""
    add = 'git add -f' if force else 'git add'
    here = os.path.realpath(cwd or os.getcwd())
    real_top = os.path.realpath(top)
    if here == real_top:
        return u'%s %s' % (add, rel)
    if here.startswith(real_top + os.sep):
        return u'%s %s' % (add, os.path.relpath(os.path.join(real_top, rel), here))
    return u'git -C %s %s %s' % (top, add[len('git '):], rel)


# ------------------------------------------------------------------ missing attributes
def missing_attribute(message, attr):
    """(the path of the set, the missing name) when ``message`` is the
    evaluation's "the flake has no attribute ..." for the attribute path
    ``attr`` (a list of names), else None. The set is the path before the
    first name that is missing: ``nixosConfigurations`` for
    ``nixosConfigurations.web3.config...`` without ``web3``, the flake's
    outputs (an empty path) when even the first name is missing."""
    found = _NO_ATTRIBUTE.search(strip_ansi(message or ''))
    if not found or not attr:
        return None
    name = found.group(1)
    attr = [u'%s' % part for part in attr]
    if name not in attr:
        return None
    return attr[:attr.index(name)], name


def names_expression(prefix):
    """The ``--apply`` function that gives the sorted names of the set at
    ``prefix`` in a flake's outputs (an empty list when there is none). Only
    the set's names are read, none of its values: no configuration is
    evaluated."""
    return (u'outputs: let value = builtins.foldl\' (value: name: '
            u'if builtins.isAttrs value && value ? ${name} then value.${name} else null) '
            u'outputs %s; in if builtins.isAttrs value then builtins.attrNames value else []'
            % nix_list(prefix))


def attribute_names(runner, ref, prefix):
    """The names of the set at ``prefix`` in the outputs of the flake
    ``ref`` (a pinned reference: the content the evaluation read), from one
    ``nix eval`` of ``runner`` (a NixCommand); None when Nix fails or takes
    too long."""
    _argv, rc, out, _err = runner.run('eval', ['--json'] + runner.outputs(ref)
                                      + ['--apply', names_expression(prefix)], flake_command=True)
    if rc != 0:
        return None
    try:
        names = json.loads(out)
    except ValueError:
        return None
    if not isinstance(names, list):
        return None
    return [n for n in names if isinstance(n, str)]


def nearest_names(prefix, name, names):
    """The sentence naming the set that lacks ``name`` and the names of
    ``names`` closest to it (up to five), or all its names when there are
    only a few and none is close; None when it has none."""
    where = attr_string(prefix) if prefix else 'the flake'
    shown = attr_string([name])
    names = sorted(set(names) - {name})
    if not names:
        return None
    near = difflib.get_close_matches(name, names, n=NEAREST, cutoff=0.6)
    # the closest first; names as close as each other in their sorted order
    near.sort(key=lambda n: (-difflib.SequenceMatcher(None, name, n).ratio(), n))
    if near:
        return u'%s has no attribute %s; the nearest names it has: %s' % (
            where, shown, ', '.join(attr_string([n]) for n in near))
    if len(names) <= LIST_ALL_UP_TO:
        return u'%s has no attribute %s; the names it has: %s' % (
            where, shown, ', '.join(attr_string([n]) for n in names))
    return u'%s has no attribute %s, nor one close to it among its %d names' % (
        where, shown, len(names))
