# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What people and programs read of a host's status: the fact
``nixdeploy_status`` (``status_fact``), the console line (``line``), the
totals by class (``totals``) and node_exporter's textfile (``metrics``).
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._reboot_rules import short
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._sizes import human_bytes
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import _status_class

FACT = 'nixdeploy_status'
# the metric names of the textfile (node_exporter's collector.textfile)
METRIC_CLASS = 'nixdeploy_status_class'
METRIC_GENERATION = 'nixdeploy_status_generation'
METRIC_LAST_DEPLOY = 'nixdeploy_status_last_deploy_timestamp_seconds'
# the role variable that turns the gate on (and off again)
GATE_VARIABLE = 'nix_status_fail_unless_in_sync'


def _deploy(run):
    """The last deploy's record, as the fact keeps it."""
    if run is None:
        return None
    return {'run': run.id, 'when': run.updated or run.started, 'state': run.state,
            'system': run.new, 'previous': run.prev, 'rolled_back': run.rolled_back}


def status_fact(look, platform, desired, name, reasons, closure_diff=None):
    """The fact ``nixdeploy_status`` of a host read as ``look``
    (``closure_diff``: the host's difference from ``_status_closure``, or None)."""
    return {
        'class': name,
        'words': _status_class.WORDS[name],
        'reasons': list(reasons),
        'platform': platform,
        'desired': desired,
        'current': look.current(),
        'booted': look.get('booted'),
        'boot_default': look.get('generation_path'),
        'generation': look.get('generation'),
        'profile': look.get('profile'),
        'last_deploy': _deploy(_status_class.last_deploy(look.runs)),
        'closure_diff': closure_diff,
    }


def counted(number, word):
    """'1 path', '3 paths', '0 paths'."""
    return '%d %s%s' % (number, word, '' if number == 1 else 's')


def closure_words(change):
    """'+12 paths, -1 path, +34.5 MiB' of a closure difference."""
    return '+%s, -%s, %s' % (counted(change['paths_added'], 'path'),
                             counted(change['paths_removed'], 'path'),
                             human_bytes(change['size_change_bytes'], signed=True))


def line(host, fact):
    """One console line: class, words, generation and short paths."""
    parts = ['%s: %s (%s)' % (host, fact['class'], fact['words'])]
    if fact.get('generation') is not None:
        parts.append('generation %s' % fact['generation'])
    parts.append('runs %s' % short(fact.get('current')))
    if fact.get('current') != fact.get('desired'):
        parts.append('flake gives %s' % short(fact.get('desired')))
        # where the controller's store holds both systems
        if fact.get('closure_diff'):
            parts.append(closure_words(fact['closure_diff']))
    if fact.get('booted') and fact.get('booted') != fact.get('current'):
        parts.append('booted %s' % short(fact['booted']))
    text = ', '.join(parts)
    # the line says what differs from the flake already
    if fact.get('reasons') and fact['class'] not in _status_class.SAID_BY_LINE:
        text += ': %s' % '; '.join(fact['reasons'])
    return text


def gate_line(host, fact):
    """The one line of a host the gate fails: its class, why, and the way
    out (what brings it in sync, or the variable that turns the gate off)."""
    return '%s: %s (%s), not in sync: %s; to pass: %s, or %s=false' % (
        host, fact['class'], fact['words'], '; '.join(fact.get('reasons') or ()),
        _status_class.WAY_OUT.get(fact['class'], 'deploy it'), GATE_VARIABLE)


def totals(classes):
    """[(class, count)] of ``classes`` (a host's class each), worst first,
    the classes no host has left out."""
    counts = {}
    for name in classes:
        counts[name] = counts.get(name, 0) + 1
    return [(name, counts[name]) for name in _status_class.NAMES if counts.get(name)]


def _label(value):
    """A label value as the text format writes it (\\, " and newline escaped)."""
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def metrics(hosts):
    """node_exporter's textfile (Prometheus text format 0.0.4) for
    ``hosts``: {host: fact or None (not reached)}. One gauge per host and
    class (1 for its class, 0 for the others), its profile generation and
    the time of its last deploy where known."""
    out = ['# HELP %s 1 for the class of the host, 0 for the others (nixdeploy.fleet.status).'
           % METRIC_CLASS, '# TYPE %s gauge' % METRIC_CLASS]
    for host in sorted(hosts):
        fact = hosts[host] or {}
        own = fact.get('class') or _status_class.UNREACHABLE
        for name in _status_class.NAMES:
            value = 1 if name == own else 0
            out.append('%s{host="%s",class="%s"} %d' % (METRIC_CLASS, _label(host), name, value))
    out += ['# HELP %s The current generation of the host\'s profile.' % METRIC_GENERATION,
            '# TYPE %s gauge' % METRIC_GENERATION]
    for host in sorted(hosts):
        generation = (hosts[host] or {}).get('generation')
        if generation is not None:
            out.append('%s{host="%s"} %d' % (METRIC_GENERATION, _label(host), int(generation)))
    out += ['# HELP %s When nixdeploy last deployed to the host (Unix time).' % METRIC_LAST_DEPLOY,
            '# TYPE %s gauge' % METRIC_LAST_DEPLOY]
    for host in sorted(hosts):
        deploy = (hosts[host] or {}).get('last_deploy') or {}
        if deploy.get('when') is not None:
            out.append('%s{host="%s"} %d' % (METRIC_LAST_DEPLOY, _label(host), int(deploy['when'])))
    return '\n'.join(out) + '\n'


class StatusRun:
    """The status a run's nix_status tasks found, as the summary callback
    shows it: ``take`` each task result; ``batch_lines`` once a batch is
    over (its hosts' lines, those the login probe did not reach among
    them), ``totals_line`` at the run's end."""

    ACTION = 'nix_status'

    def __init__(self):
        self.batch = {}     # host -> fact, or None (not reached), this batch
        self.counts = {}    # class -> hosts, every batch

    def take(self, action, host, status, result):
        """Keep ``result`` when it is nix_status's; whether it was."""
        if str(action or '').rpartition('.')[2] != self.ACTION:
            return False
        fact = (result or {}).get('status')
        # a host the gate failed was read: its status is known
        if status in ('ok', 'failed') and isinstance(fact, dict) \
                and fact.get('class') in _status_class.WORDS:
            self.batch[host] = fact
        elif status == 'unreachable':
            self.batch[host] = None
        return True

    def batch_lines(self, unreached=()):
        """The lines of this batch's hosts (``unreached``: hosts of the
        batch the login probe found off, which nix_status never read), and
        their classes counted; [] when no host was read."""
        if not self.batch:
            return []
        batch, self.batch = self.batch, {}
        for host in unreached:
            batch.setdefault(host, None)
        lines = []
        for host in sorted(batch):
            fact = batch[host]
            name = fact['class'] if fact else _status_class.UNREACHABLE
            self.counts[name] = self.counts.get(name, 0) + 1
            lines.append(line(host, fact) if fact else '%s: %s (%s)' % (
                host, name, _status_class.WORDS[name]))
        return lines

    def totals_line(self):
        """'nixdeploy status: 1 pending, 3 in_sync', worst first, or None."""
        counted = totals(name for name, n in self.counts.items() for _i in range(n))
        if not counted:
            return None
        return 'nixdeploy status: %s' % ', '.join('%d %s' % (n, name) for name, n in counted)
