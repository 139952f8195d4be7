"""CLI: python -m tests.lab up|status|down|ssh-config --name NAME [--hosts N]."""

import argparse
import json
import sys

from .lab import Lab, LabError, PERSONAS


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tests.lab', description=__doc__)
    parser.add_argument('command', choices=['up', 'status', 'down', 'inventory', 'leftovers'])
    parser.add_argument('--name', default='lab', help='lab name (default: lab)')
    parser.add_argument('--hosts', type=int, default=8, help='number of hosts (up)')
    parser.add_argument('--personas', default='nixos',
                        help='comma list cycled over the hosts: %s' % ', '.join(PERSONAS))
    parser.add_argument('--other-nix', default='', metavar='HOST,HOST',
                        help="hosts (h1, h2, ...) that run the other stack's Nix (up)")
    parser.add_argument('--systemd', default='', metavar='HOST,HOST',
                        help='NixOS hosts (h1, h2, ...) that boot a real systemd as PID 1 (up)')
    args = parser.parse_args(argv)
    lab = Lab(args.name)
    try:
        if args.command == 'up':
            other = set(h for h in args.other_nix.split(',') if h)
            systemd = set(h for h in args.systemd.split(',') if h)
            hosts = [{'name': 'h%d' % i, 'nix': 'other' if 'h%d' % i in other else 'own',
                      'systemd': 'h%d' % i in systemd}
                     for i in range(1, args.hosts + 1)]
            for option, named in (('--other-nix', other), ('--systemd', systemd)):
                unknown = named - set(h['name'] for h in hosts)
                if unknown:
                    raise LabError('%s names no host of this lab: %s'
                                   % (option, ', '.join(sorted(unknown))))
            lab.up(hosts, personas=args.personas.split(','))
            print('lab %s up in %.1fs: %d hosts on %s (state in %s)' % (
                lab.name, lab.state['up_seconds'], len(lab.hosts), lab.state['bridge'], lab.dir))
            print('\n'.join(lab.status()))
        elif args.command == 'status':
            if not lab.state:
                print('lab %s is down' % lab.name)
                return 1
            print('\n'.join(lab.status()))
        elif args.command == 'inventory':
            print(json.dumps(lab.ansible_inventory(), indent=2))
        elif args.command == 'leftovers':
            if not lab.state:
                print('lab %s has no state: nothing recorded to look for' % lab.name)
                return 0
            left = lab.leftovers()
            print('\n'.join(left) or 'nothing left')
            return 1 if left else 0
        else:
            lab.down()
            print('lab %s down' % args.name)
    except LabError as exc:
        print('lab: %s' % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Lab.up took down what it had made before this reached here
        print('lab %s: stopped while it came up; what it had made is gone' % args.name
              if args.command == 'up' else 'lab %s: stopped' % args.name, file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
