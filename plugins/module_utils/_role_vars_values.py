# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A role variable's value judged: what is wrong with it, in messages that
name the variable and what it must be (``value_problems``, with ansible's
own argument-spec validation of the option table's row), and what is said
of one whose template fails (``template_message``).
"""

import difflib
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import ArgumentTypeError


def unset(value):
    return value is None or value == ''


def template_message(row, name, text, origins=()):
    """What is said of ``name`` (row's variable), whose template fails:
    ansible-core's words (``text``), where it says the value comes from
    (``origins``, ``file:line:column`` each) and the fix."""
    secret = bool(row.spec.get('no_log'))
    if secret:
        text = 'the value given cannot be templated'
    where = ' (Origin: %s)' % '; '.join(origins) if origins else ''
    fix = 'fix its template where it is set'
    if not unset(row.default) and row.default not in ([], {}):
        fix += ', or remove it to use the default (%s)' % (row.default,)
    else:
        fix += ', or remove it'
    return '%s: %s%s; %s' % (name, text, where, fix)


def maybe_template(value):
    """Whether ``value`` holds Jinja (only then is it templated: a plain
    value costs no template)."""
    if isinstance(value, str):
        return '{{' in value or '{%' in value
    if isinstance(value, dict):
        return any(maybe_template(k) or maybe_template(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(maybe_template(v) for v in value)
    return False


def nearest(word, candidates):
    """The candidate closest to ``word`` (a typo's fix), or None."""
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _shown(value, secret):
    """A value as a message shows it: quoted, short (a secret never)."""
    if secret:
        return 'the value given'
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 60:
        text = text[:57] + '...'
    return "'%s'" % text if isinstance(value, str) else text


# ansible's words for a value it could not convert
_TYPE_ERROR = re.compile(r"^argument '[^']*' is of type \S+ and we were unable to convert to (\w+)")
_A = {'int': 'an integer', 'bool': 'a boolean (true or false)', 'float': 'a number',
      'list': 'a list', 'dict': 'a mapping', 'str': 'a string', 'path': 'a path',
      'raw': 'a value'}


def value_problems(row, name, value):
    """What is wrong with ``value`` as row's variable ``name`` (the
    role variable, or its deprecated name): messages naming the variable
    and what it must be, [] when it is good. The same argument-spec
    validation ansible runs on the option (types, choices, elements,
    sub-options)."""
    spec = dict(row.spec)
    spec.pop('default', None)
    secret = bool(spec.get('no_log'))
    # a key no sub-option knows (nix_health_checks' `comand:`): said with the
    # nearest known key, instead of ansible's list of the supported ones
    # (what else ansible says of such an item follows from the typo)
    unknown = unknown_keys(spec, value, name)
    if unknown:
        return unknown
    # (iterated: the error list of ansible has no length of its own)
    errors = list(ArgumentSpecValidator({name: spec}).validate({name: value}).errors)
    if not errors:
        return []
    choices = spec.get('choices')
    if choices and spec.get('type', 'str') == 'str' and isinstance(value, (str, int, float)) \
            and not isinstance(value, bool):
        # what ansible refused is not one of the choices: said with the nearest
        text = '%s' % value
        problem = '%s: %s is not one of %s' % (name, _shown(text, secret), ', '.join(choices))
        near = nearest(text, choices)
        return [problem + (' (did you mean %s?)' % near if near else '')]
    problems = []
    for error in errors:
        text = '%s' % error
        found = _TYPE_ERROR.match(text)
        if found and isinstance(error, ArgumentTypeError):
            problems.append('%s: %s is not %s' % (
                name, _shown(value, secret), _A.get(found.group(1), found.group(1))))
        elif secret:
            problems.append('%s: the value given is not valid' % name)
        else:
            problems.append('%s: %s' % (name, text))
    return problems


def unknown_keys(spec, value, path):
    """Messages for each key of ``value`` (at ``path``, the variable's
    name) that its spec's sub-options do not know, with the nearest known
    key: ``unknown key 'comand' in nix_health_checks[0]: did you mean
    'command'?``. Only keys are looked at; values are ansible's to judge."""
    options = spec.get('options')
    if not options:
        return []
    if spec.get('type') == 'list':
        if not isinstance(value, (list, tuple)):
            return []
        items = [('%s[%d]' % (path, index), item) for index, item in enumerate(value)]
    else:
        items = [(path, value)]
    known = set(options)
    for option in options.values():
        known.update(option.get('aliases') or ())
    problems = []
    for where, item in items:
        if not isinstance(item, dict):
            continue
        for key in sorted(item, key=str):
            if key in known:
                sub = options.get(key)
                if sub is not None:
                    problems.extend(unknown_keys(sub, item[key], '%s.%s' % (where, key)))
                continue
            near = nearest('%s' % key, known)
            problems.append("unknown key '%s' in %s%s" % (
                key, where, ": did you mean '%s'?" % near if near else
                ' (known keys: %s)' % ', '.join(sorted(options))))
    return problems
