"""CLI: python -m tests.lab up|status|inventory|leftovers|down|try --name NAME [--hosts N].

try --dir DIR [--hosts N] [--mac]: brings up the lab (default name try, 2 NixOS
hosts web1, web2; --mac adds a nix-darwin host mac) and writes into DIR a fleet
folder laid out as docs/quickstart.md's, ready for `ansible-playbook
nixdeploy.fleet.deploy -l vps` (DIR/README.txt says how; tests/lab/try_folder.py)."""

import argparse
import json
import signal
import sys

from .lab import Lab, LabError, PERSONAS
from .try_folder import try_fleet


def main(argv=None):
    # Ctrl-C (SIGINT) stops an `up` and takes down what it made. A command
    # started in the background of a shell without job control (`cmd &` in
    # a script, a CI step) inherits SIGINT ignored, and Python then leaves
    # it ignored: the lab could not be stopped that way. Handle it always.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(prog='python -m tests.lab', description=__doc__)
    parser.add_argument('command',
                        choices=['up', 'status', 'down', 'inventory', 'leftovers', 'try'])
    parser.add_argument('--name', default=None, help='lab name (default: lab; try: try)')
    parser.add_argument('--hosts', type=int, default=None,
                        help='number of hosts (up: default 8; try: NixOS hosts, default 2)')
    parser.add_argument('--dir', default=None, metavar='DIR',
                        help='try: the folder to write (new, empty, or an earlier try\'s)')
    parser.add_argument('--mac', action='store_true',
                        help="try: also the quickstart's nix-darwin host mac")
    parser.add_argument('--personas', default='nixos',
                        help='comma list cycled over the hosts: %s' % ', '.join(PERSONAS))
    parser.add_argument('--other-nix', default='', metavar='HOST,HOST',
                        help="hosts (h1, h2, ...) that run the other stack's Nix (up)")
    parser.add_argument('--systemd', default='', metavar='HOST,HOST',
                        help='NixOS hosts (h1, h2, ...) that boot a real systemd as PID 1 (up)')
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = 'try' if args.command == 'try' else 'lab'
    if args.command == 'try' and not args.dir:
        parser.error('try needs --dir DIR')
    try:
        lab = Lab(args.name)
        if args.command == 'try':
            try_fleet(args.dir, name=args.name, hosts=2 if args.hosts is None else args.hosts,
                      mac=args.mac)
        elif args.command == 'up':
            if args.hosts is None:
                args.hosts = 8
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
              if args.command in ('up', 'try') else 'lab %s: stopped' % args.name, file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
