"""CLI: python -m tests.lab.scale up|status|down|leftovers|memory [--name NAME] [--hosts N]."""

import argparse
import json
import sys

from tests.lab.lab import LabError
from tests.lab.scale.lab import ScaleLab


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tests.lab.scale', description=__doc__)
    parser.add_argument('command', choices=['up', 'status', 'down', 'leftovers', 'memory'])
    parser.add_argument('--name', default='scale', help='lab name (default: scale)')
    parser.add_argument('--hosts', type=int, default=100, help='number of hosts (up)')
    args = parser.parse_args(argv)
    lab = ScaleLab(args.name)
    try:
        if args.command == 'up':
            lab.up(args.hosts)
            print('scale lab %s up in %.1fs: %d hosts; steps %s' % (
                lab.name, lab.state['up_seconds'], len(lab.hosts),
                json.dumps(lab.state['timings'], sort_keys=True)))
        elif args.command == 'down':
            lab.down()
            print('scale lab %s down in %.1fs' % (args.name, getattr(lab, 'down_seconds', 0)))
        elif args.command == 'leftovers':
            left = lab.leftovers()
            print('\n'.join(left) or 'nothing left')
            return 1 if left else 0
        elif not lab.state:
            print('scale lab %s is down' % lab.name)
            return 1
        elif args.command == 'memory':
            print(json.dumps(lab.memory()))
        else:
            print('\n'.join(lab.status()))
    except LabError as exc:
        print('scale lab: %s' % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # ScaleLab.up took down what it had made before this reached here
        print('scale lab %s: stopped while it came up; what it had made is gone' % args.name
              if args.command == 'up' else 'scale lab %s: stopped' % args.name, file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
