"""The campaign: bring the fleet up, deploy it once, then play rounds until
the count is reached or a round finds a violation; print each round's
schedule and the command that replays it, and a table of the campaign.

  python -m tests.chaos --rounds 20 --seed 7           # rounds 1..20 of seed 7
  python -m tests.chaos --seed 7 --start-round 13 --rounds 1   # round 13 alone
  python -m tests.chaos --seed 7 --rounds 5 --dry-run  # the schedules only
"""

import argparse
import collections
import os
import random
import shutil
import sys
import time

from tests.chaos.fleet import LAB_NAME, ChaosFleet, workdir
from tests.chaos.round import RUN_TIMEOUT, play
from tests.chaos.schedule import FAULTS, draw


def replay_command(seed, number):
    return 'python -m tests.chaos --seed %s --start-round %d --rounds 1' % (seed, number)


def schedules(shape, seed, start, rounds):
    for number in range(start, start + rounds):
        yield draw(seed, number, *shape)


def fleet_shape(fleet):
    configurations = fleet.configurations()
    return (configurations, dict((c, fleet.platform(c)) for c in configurations),
            dict((c, fleet.hosts_of(c)) for c in configurations))


def static_shape():
    """The fleet's configurations without a lab (for --dry-run): one per
    host, but the hosts that share one."""
    from tests.chaos.fleet import HOSTS
    hosts_of, platforms = {}, {}
    for spec in HOSTS:
        cfg = spec.get('configuration', spec['name'])
        hosts_of.setdefault(cfg, []).append(spec['name'])
        platforms[cfg] = {'nixos': 'nixos', 'darwin': 'darwin', 'nix-on-droid': 'nix-on-droid',
                          'home-manager': 'home-manager'}[spec['persona']]
    configurations = sorted(hosts_of)
    return configurations, platforms, dict((c, sorted(h)) for c, h in hosts_of.items())


def bring_up(fleet, log):
    """The fleet up and deployed once (every host has a system to go back to)."""
    fleet.up()
    log('chaos: %d hosts up (%s)' % (len(fleet.lab.hosts), 'with systemd hosts' if fleet.systemd
                                     else 'systemd hosts come up plain here'))
    first = fleet.start('first')
    first.proc.wait(timeout=RUN_TIMEOUT)
    if first.proc.returncode != 0:
        raise RuntimeError('the first deploy failed:\n%s' % first.output()[-4000:])


def play_round(fleet, seed, number, log):
    """Draw round ``number`` of ``seed`` for ``fleet``, print it and its replay
    command, play it; returns (violations, injectors)."""
    schedule = draw(seed, number, *fleet_shape(fleet))
    started = time.monotonic()
    log(schedule.describe())
    log('  replay: %s' % replay_command(seed, number))
    found, injectors = play(fleet, schedule, log)
    log('  round %d: %d violations, %.0fs' % (number, len(found), time.monotonic() - started))
    for sentence in found:
        log('  VIOLATION: %s' % sentence)
    if found:
        log('  replay: %s' % replay_command(seed, number))
    return found, injectors


class Campaign:
    def __init__(self, seed, start=1, rounds=1, name=LAB_NAME, keep=False, log=print):
        self.seed, self.start, self.rounds = seed, start, rounds
        self.name, self.keep, self.log = name, keep, log
        self.played = 0
        self.faults = collections.Counter()      # kind -> drawn
        self.applied = collections.Counter()     # kind -> applied at its moment
        self.violations = []                     # (round, [sentences])

    def run(self):
        base = workdir()
        fleet = ChaosFleet(base, name=self.name)
        self.log('chaos: seed %s, rounds %d-%d, lab %s, work folder %s'
                 % (self.seed, self.start, self.start + self.rounds - 1, self.name, base))
        failed = False
        try:
            bring_up(fleet, self.log)
            for number in range(self.start, self.start + self.rounds):
                found, injectors = play_round(fleet, self.seed, number, self.log)
                self.played += 1
                for injector in injectors:
                    self.faults[injector.fault.kind] += 1
                    if injector.applied_at is not None and injector.error is None:
                        self.applied[injector.fault.kind] += 1
                if found:
                    failed = True
                    self.violations.append((number, found))
                    break
        except BaseException:
            failed = True
            raise
        finally:
            if failed and self.keep:
                self.log('chaos: the lab is left up: python -m tests.lab down --name %s; '
                         'work folder %s' % (self.name, base))
            else:
                fleet.down()
                shutil.rmtree(base, ignore_errors=True)
            self.log(self.table())
        return not self.violations

    def table(self):
        lines = ['', '| rounds | faults drawn | applied | violations |', '|---|---|---|---|',
                 '| %d | %d | %d | %d |' % (self.played, sum(self.faults.values()),
                                            sum(self.applied.values()), len(self.violations)),
                 '', '| fault | drawn | applied at its moment |', '|---|---|---|']
        for kind, _weight in FAULTS:
            lines.append('| %s | %d | %d |' % (kind, self.faults[kind], self.applied[kind]))
        return '\n'.join(lines)


def fresh_seed():
    return random.SystemRandom().randrange(10 ** 6)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tests.chaos', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seed', default=None, help='the campaign seed (default: a fresh one)')
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--start-round', type=int, default=1)
    parser.add_argument('--name', default=LAB_NAME, help='lab name (default: %s)' % LAB_NAME)
    parser.add_argument('--keep', action='store_true',
                        help='leave the lab up after a violation, for inspection')
    parser.add_argument('--dry-run', action='store_true', help='print the schedules only')
    args = parser.parse_args(argv)
    seed = args.seed if args.seed not in (None, '') else str(fresh_seed())

    def log(text):
        print(text, flush=True)

    if args.dry_run:
        for schedule in schedules(static_shape(), seed, args.start_round, args.rounds):
            log(schedule.describe())
            log('  replay: %s' % replay_command(seed, schedule.number))
        return 0
    if os.geteuid() != 0:
        log('the chaos campaign needs root (the lab)')
        return 2
    campaign = Campaign(seed, args.start_round, args.rounds, name=args.name, keep=args.keep, log=log)
    return 0 if campaign.run() else 1


if __name__ == '__main__':
    sys.exit(main())
