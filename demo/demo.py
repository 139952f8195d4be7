"""make demo: a real fleet, a real `ansible-playbook deploy.yml -l vps`.

1. Brings up the lab `demo`: three NixOS hosts tagged vps (vps3 also hk), a
   nix-darwin host, a nix-on-droid phone and a home-manager user, each with
   its own sshd, host key and Nix store.
2. Writes the fleet's flake to .lab/demo-flake (what inventory/fleet.nix.yml
   reads) and a signing key the hosts trust (.lab/demo-key) for the hosts
   deployed by users Nix does not trust.
3. Runs, from the repository root with its ansible.cfg and inventory/:
     ansible-playbook deploy.yml -l vps          version 1 to the vps group
     (bump every configuration to version 2)
     ansible-playbook deploy.yml -l hk --check --diff   what would change, per host
     ansible-playbook deploy.yml -l vps          each vps moves a generation
     ansible-playbook deploy.yml -l 'all:!vps'   the rest of the fleet
4. Prints what each host runs now, read from the host itself, and takes the
   lab down (--keep leaves it up: `make demo-down` removes it).

Run as root with the project venv: .venv/bin/python demo/demo.py [--keep]
"""

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.deploy_fleet import prepare  # noqa: E402
from tests.lab import Lab  # noqa: E402

HOSTS = [
    {'name': 'vps1', 'persona': 'nixos'},
    {'name': 'vps2', 'persona': 'nixos'},
    {'name': 'vps3', 'persona': 'nixos'},
    {'name': 'mac1', 'persona': 'darwin'},
    {'name': 'phone1', 'persona': 'nix-on-droid'},
    {'name': 'home1', 'persona': 'home-manager'},
]
TAGS = {'vps1': ['vps'], 'vps2': ['vps'], 'vps3': ['vps', 'hk'], 'mac1': ['laptop'],
        'phone1': ['phone'], 'home1': ['workstation']}
PROFILES = {'nixos': '/nix/var/nix/profiles/system', 'darwin': '/nix/var/nix/profiles/system',
            'nix-on-droid': '/nix/var/nix/profiles/nix-on-droid',
            'home-manager': '/home/app/.local/state/nix/profiles/home-manager'}
BIN = os.path.dirname(sys.executable)


def say(text):
    print('\n\033[1m== %s\033[0m' % text, flush=True)


def link_collection():
    """.collections/ansible_collections/nixdeploy/fleet -> this checkout
    (ansible.cfg's collections_path; the same as `make collections`)."""
    parent = os.path.join(REPO, '.collections', 'ansible_collections', 'nixdeploy')
    link = os.path.join(parent, 'fleet')
    if os.path.realpath(link) != REPO:
        os.makedirs(parent, exist_ok=True)
        if os.path.islink(link):
            os.unlink(link)
        os.symlink('../../..', link)


def playbook(*args):
    argv = [os.path.join(BIN, 'ansible-playbook'), 'deploy.yml'] + list(args)
    print('$ ansible-playbook ' + ' '.join(argv[1:]), flush=True)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    env.pop('ANSIBLE_CONFIG', None)
    env.pop('ANSIBLE_COLLECTIONS_PATH', None)
    started = time.time()
    proc = subprocess.run(argv, cwd=REPO, env=env, check=False)
    print('(%.1fs, exit %d)' % (time.time() - started, proc.returncode), flush=True)
    if proc.returncode != 0:
        raise SystemExit('demo: ansible-playbook %s failed' % ' '.join(args))


def generation(lab, name):
    """(generation number, system) the host's profile points at, read on the host."""
    host = lab.host(name)
    profile = PROFILES[host['platform']]
    link = lab.run_in(name, ['readlink', profile], check=False).stdout.strip()
    number = link.rsplit('-', 2)[-2] if link.endswith('-link') else '-'
    return number, lab.active(name) or '-'


def commit_flake(path):
    """The demo flake as a git repository of its own: it lies inside this
    checkout (in the ignored .lab), and Nix, like the inventory plugin, reads
    a folder inside a git work tree as that repository, where an ignored
    file does not exist. Later versions stay uncommitted (a dirty tree)."""
    git = ['git', '-C', path, '-c', 'user.name=demo', '-c', 'user.email=demo@localhost']
    if not os.path.isdir(os.path.join(path, '.git')):
        subprocess.run(git + ['init', '-q'], check=True)
    subprocess.run(git + ['add', '-A'], check=True)
    subprocess.run(git + ['commit', '-q', '--allow-empty', '-m', 'demo fleet'], check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--keep', action='store_true', help='leave the lab up afterwards')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit('demo: run as root (the lab uses network namespaces)')
    if not os.path.exists(os.path.join(BIN, 'ansible-playbook')):
        raise SystemExit('demo: no ansible-playbook next to %s; run it with the project venv '
                         '(make demo)' % sys.executable)
    started = time.time()
    link_collection()
    lab = Lab('demo')
    try:
        say('1. lab up: %d hosts, each its own sshd, host key and /nix' % len(HOSTS))
        lab.up(HOSTS)
        print('\n'.join(lab.status()))

        say('2. the fleet flake (.lab/demo-flake) and a signing key the hosts trust')
        flake, _secret = prepare(lab, os.path.join(REPO, '.lab', 'demo-flake'),
                                 key_dir=os.path.join(REPO, '.lab', 'demo-key'), tags=TAGS)
        commit_flake(flake.path)
        print('flake %s: %s' % (flake.ref, ', '.join(
            '%s (%s)' % (n, ','.join(TAGS[n])) for n in sorted(flake.data['hosts']))))

        say('3. deploy version 1 to the vps group')
        playbook('-l', 'vps')

        say('4. a new version of every configuration: what would change on hk?')
        flake.set_all(version='2', extra_paths=2, extra_bytes=40000, extra_seed='v2')
        playbook('-l', 'hk', '--check', '--diff')

        say('5. deploy it to vps: each host moves one generation')
        before = {name: generation(lab, name)[0] for name in lab.hosts}
        playbook('-l', 'vps')

        say('6. the rest of the fleet: darwin, nix-on-droid, home-manager')
        playbook('-l', 'all:!vps')

        say('what each host runs now (read on the host itself)')
        print('%-8s %-13s %-12s %s' % ('host', 'platform', 'generation', 'active system'))
        for name in [h['name'] for h in HOSTS]:
            number, active = generation(lab, name)
            moved = '%s -> %s' % (before[name], number) if before[name] != number else number
            print('%-8s %-13s %-12s %s' % (name, lab.host(name)['platform'], moved, active))
        print('\ndemo done in %.0fs' % (time.time() - started))
    finally:
        if args.keep:
            print('lab demo left up: ansible-playbook deploy.yml -l hk; make demo-down')
        else:
            lab.down()
            print('lab demo down')
    return 0


if __name__ == '__main__':
    sys.exit(main())
