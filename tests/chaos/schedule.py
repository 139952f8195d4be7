"""What a round of the campaign does, drawn from random.Random((seed, round))
only: the same seed and round give the same schedule on any machine, so one
round replays alone (``python -m tests.chaos --seed S --start-round K
--rounds 1``).

A round: which configurations get a new system and how that system behaves,
each host's copy mode, and zero to three faults, each with its moment (a
delay from the run's start, or an event: the first copy under way, a host
activating).
"""

import random

from tests.chaos.fleet import HOSTS, STORE_SIZE, root_activated

# behaviour of a new system: (name, weight, which platforms can have it)
BEHAVIOURS = [
    ('healthy', 40, None),
    ('failing-activation', 10, None),
    ('breaking-network', 7, ('nixos', 'darwin')),
    ('slow', 12, None),
    ('unhealthy', 8, ('nixos',)),
    ('needing-reboot', 8, ('nixos',)),
]
# Systems that never end up active: a deploy of one fails and rolls back.
BAD = ('failing-activation', 'breaking-network', 'unhealthy')

# fault kinds: (name, weight)
FAULTS = [
    ('kill-controller', 8),
    ('cancel', 8),
    ('link-lost', 10),
    ('link-slow', 8),
    ('sshd-restart', 8),
    ('daemon-stopped', 8),
    ('gc', 10),
    ('store-full', 6),
    ('reboot', 8),
    ('second-deploy', 8),
]
MULTI_USER = [s['name'] for s in HOSTS if s['persona'] != 'nix-on-droid']
FULL_STORE = [s['name'] for s in HOSTS if s.get('store_size') == STORE_SIZE]
# cache mode: the hosts that fetch from the cache on the machine's disk as
# root (plain NixOS hosts deployed as root)
CACHE_HOSTS = [s['name'] for s in HOSTS if s['persona'] == 'nixos' and not s.get('systemd')
               and not s.get('sudo')]
COPY_MODES = ('push', 'cache', 'cascade')


def rng_for(seed, round_no):
    # a str seeds through SHA-512: the same on every Python 3 and platform
    return random.Random('nixdeploy-chaos:%s:%d' % (seed, round_no))


def _weighted(rng, items):
    total = sum(w for _n, w, *_rest in items)
    pick = rng.uniform(0, total)
    for item in items:
        pick -= item[1]
        if pick <= 0:
            return item[0]
    return items[-1][0]


class Fault:
    def __init__(self, kind, host, moment, params):
        self.kind, self.host, self.moment, self.params = kind, host, moment, params

    def describe(self):
        where = ' on %s' % self.host if self.host else ''
        extra = ''.join(' %s=%s' % (k, v) for k, v in sorted(self.params.items()))
        return '%s%s %s%s' % (self.kind, where, describe_moment(self.moment), extra)


def describe_moment(moment):
    kind = moment[0]
    if kind == 'delay':
        return 'at +%.1fs' % moment[1]
    if kind == 'activating':
        return 'when %s is activating' % moment[1]
    return 'when the first copy is under way'


class Round:
    def __init__(self, seed, number, systems, modes, faults):
        self.seed, self.number = seed, number
        self.systems = systems    # {configuration: behaviour}
        self.modes = modes        # {host: copy mode}
        self.faults = faults      # [Fault]

    def describe(self):
        lines = ['round %d (seed %s)' % (self.number, self.seed)]
        lines.append('  new systems: %s' % (', '.join(
            '%s=%s' % item for item in sorted(self.systems.items())) or 'none'))
        lines.append('  copy modes: %s' % ', '.join(
            '%s=%s' % item for item in sorted(self.modes.items())))
        lines.append('  faults: %s' % ('; '.join(f.describe() for f in self.faults) or 'none'))
        return '\n'.join(lines)


def draw(seed, number, configurations, platforms, hosts_of):
    """The schedule of round ``number`` of the campaign ``seed``.
    ``configurations``: the fleet's (sorted); ``platforms``: {configuration:
    platform}; ``hosts_of``: {configuration: [host]}."""
    rng = rng_for(seed, number)
    systems = {}
    for cfg in configurations:
        if rng.random() < 0.5:
            hosts = hosts_of[cfg]
            allowed = [b for b in BEHAVIOURS if (b[2] is None or platforms[cfg] in b[2])
                       and (b[0] != 'breaking-network' or all(root_activated(h) for h in hosts))]
            systems[cfg] = _weighted(rng, allowed)
    if not systems:
        cfg = rng.choice(configurations)
        systems[cfg] = 'healthy'
    modes = {}
    for spec in HOSTS:
        host = spec['name']
        choices = [m for m in COPY_MODES if m != 'cache' or host in CACHE_HOSTS]
        modes[host] = rng.choice(choices)
    changing = sorted(h for cfg in systems for h in hosts_of[cfg])
    faults = []
    for _index in range(rng.choice([0, 1, 1, 2, 2, 3])):
        faults.append(_draw_fault(rng, changing))
    return Round(seed, number, systems, modes, faults)


def _draw_moment(rng, changing):
    pick = rng.random()
    if pick < 0.45:
        return ('delay', round(rng.uniform(0.0, 20.0), 1))
    if pick < 0.7:
        return ('copying',)
    return ('activating', rng.choice(changing))


def _draw_fault(rng, changing):
    kind = _weighted(rng, FAULTS)
    moment = _draw_moment(rng, changing)
    # a fault on a host: most often one that gets a new system
    everyone = [s['name'] for s in HOSTS]
    pool = changing if changing and rng.random() < 0.7 else everyone
    params = {}
    host = None
    if kind in ('link-lost', 'link-slow', 'sshd-restart', 'gc', 'reboot'):
        host = rng.choice(pool)
        if kind == 'link-lost':
            params['seconds'] = round(rng.uniform(2.0, 25.0), 1)
        elif kind == 'link-slow':
            params['rate'] = rng.choice(['256kbit', '1mbit', '4mbit'])
    elif kind == 'daemon-stopped':
        host = rng.choice([h for h in pool if h in MULTI_USER] or MULTI_USER)
        params['seconds'] = round(rng.uniform(2.0, 30.0), 1)
    elif kind == 'store-full':
        host = rng.choice([h for h in pool if h in FULL_STORE] or FULL_STORE)
        params['leave_kb'] = rng.choice([0, 256, 1024])
    elif kind == 'cancel':
        params['grace'] = round(rng.uniform(0.5, 10.0), 1)
    elif kind == 'second-deploy':
        params['limit'] = ','.join(sorted(rng.sample(everyone, rng.randint(1, 4))))
    return Fault(kind, host, moment, params)
