"""The random commits: each one a small edit of the fleet's model
(``shapes.Fleet``), written to the repository's work tree and committed, so
that the tree is clean when the commit is evaluated (but with the ``dirty``
shape of issue 89, where some are left in the work tree until the next).

Most edits touch one host's file, one role, or a file nobody reads: the
reuse must actually happen for the campaign to prove anything. The rest
move, add, remove and rename hosts and files, flip an executable bit,
retarget a link, bump an input in flake.lock (``nix flake lock
--update-input`` before Nix 2.19, ``nix flake update NAME`` after), or
commit nothing at all (only ``self.rev`` and ``self.lastModified`` change).
The edits of issue 76's shapes: move the outputs (flake.nix, outputs.nix,
parts/), change a host's setting or the admins in the outputs' file, add,
edit and remove users, re-point ./site, edit and add files with odd names,
bump the input that follows another, add lines above the outputs or a host
(positions move), add and remove parts, edit the sub flake's ../lib.nix.

``draw(rng, fleet)`` edits the fleet in place and returns what it did (a
``Change``); ``Repo`` writes the model and commits it.
"""

import os
import stat
import subprocess

from tests.evaldiff import shapes

# features whose value changes with every commit
COMMIT_BOUND = ('rev', 'selfattr', 'me', 'iself', 'where')
# commit times: fixed, one minute apart, so that self.lastModified moves on
# every commit and a replay dates its commits alike
EPOCH = 1700000000
STEP = 61
NIX_CONFIG = 'experimental-features = nix-command flakes\nsubstituters =\n'
# with the ``dirty`` shape: the share of commits left in the work tree
DIRTY_SHARE = 0.2


class Change(object):
    """What one commit did: ``text`` (for the history), ``inputs`` (the
    inputs whose lock entry must be updated), ``dirty`` (its edits are left
    in the work tree, uncommitted, until the next commit)."""

    def __init__(self, text, inputs=(), dirty=False):
        self.text = text
        self.inputs = list(inputs)
        self.dirty = dirty


# ------------------------------------------------------------------ the edits
def _hosts_with(fleet, features=None):
    """[(folder, name, host)] of the hosts of either flake (with one of
    ``features`` where given)."""
    found = []
    for folder, hosts in (('hosts', fleet.hosts), ('sub/hosts', fleet.sub_hosts)):
        for name in sorted(hosts):
            if features is None or any(f in hosts[name].features for f in features):
                found.append((folder, name, hosts[name]))
    return found


def _any_host(rng, fleet):
    """(folder, name, host) of a random host of either flake (the top one
    never has fewer than MIN_HOSTS - 1)."""
    return rng.choice(_hosts_with(fleet))


def _hosts_of(fleet, folder):
    return fleet.hosts if folder == 'hosts' else fleet.sub_hosts


def edit_host(rng, fleet):
    folder, name, host = _any_host(rng, fleet)
    host.version += 1
    return Change('edit %s/%s (its tag: %s.%d)' % (folder, name, host.label, host.version))


def comment_host(rng, fleet):
    folder, name, host = _any_host(rng, fleet)
    host.comment += 1
    return Change('a comment in %s/%s/default.nix' % (folder, name))


def host_notes(rng, fleet):
    folder, name, host = _any_host(rng, fleet)
    host.notes += 'more\n'
    return Change('edit %s/%s/notes.txt (unread)' % (folder, name))


def unread(rng, fleet):
    path = rng.choice(sorted(fleet.unread) + ['unread/new-%d.md' % rng.randrange(1000)])
    fleet.unread[path] = fleet.unread.get(path, '') + 'line\n'
    return Change('edit %s (unread)' % path)


def empty(_rng, _fleet):
    return Change('an empty commit')


def role_version(rng, fleet):
    role = rng.choice(shapes.ROLES)
    fleet.roles[role]['version'] += 1
    return Change('role %s: version %d' % (role, fleet.roles[role]['version']))


def role_comment(rng, fleet):
    role = rng.choice(shapes.ROLES)
    fleet.roles[role]['comment'] += 1
    return Change('role %s: a comment' % role)


def role_banner(rng, fleet):
    role = rng.choice(shapes.ROLES)
    fleet.roles[role]['banner'] = not fleet.roles[role]['banner']
    return Change('role %s: banner %s' % (role, 'on' if fleet.roles[role]['banner'] else 'off'))


def role_move(rng, fleet):
    role = rng.choice(shapes.ROLES)
    spec = fleet.roles[role]
    old = spec['file']
    spec['file'] = '%s.nix' % role if old != '%s.nix' % role else 'the-%s.nix' % role
    return Change('move roles/%s to roles/%s (lib/ follows)' % (old, spec['file']))


def util_version(_rng, fleet):
    fleet.util_version += 1
    return Change('lib/util.nix: version %d' % fleet.util_version)


def util_comment(_rng, fleet):
    fleet.util_comment += 1
    return Change('lib/util.nix: a comment')


def lib_comment(_rng, fleet):
    fleet.lib_comment += 1
    return Change('lib/default.nix: a comment')


def flake_comment(rng, fleet):
    if rng.random() < 0.5:
        fleet.flake_version += 1
        return Change('flake.nix: a comment')
    fleet.sub_version += 1
    return Change('sub/flake.nix: a comment')


def data_edit(rng, fleet):
    name = rng.choice(sorted(fleet.data))
    fleet.data[name] += 'edited\n'
    return Change('edit data/%s' % name)


def data_exec(rng, fleet):
    name = rng.choice(sorted(fleet.data))
    fleet.data_exec[name] = not fleet.data_exec.get(name)
    return Change('chmod %sx data/%s' % ('+' if fleet.data_exec[name] else '-', name))


def data_move(rng, fleet):
    """A data file moves (into old/ or back); every host that reads it, or
    links its motd to it, follows."""
    old = rng.choice(sorted(fleet.data))
    new = old[len('old/'):] if old.startswith('old/') else 'old/' + old
    fleet.data[new] = fleet.data.pop(old)
    if old in fleet.data_exec:
        fleet.data_exec[new] = fleet.data_exec.pop(old)
    for host in list(fleet.hosts.values()) + list(fleet.sub_hosts.values()):
        for feature in ('read', 'hashed'):
            if host.features.get(feature) == old:
                host.features[feature] = new
        if host.motd == old:
            host.motd = new
    return Change('move data/%s to data/%s' % (old, new))


def extra_toggle(rng, fleet):
    """hosts/<n>/extra comes, goes, or becomes a link (to a file, to
    nothing), mostly beside a host that looks for it."""
    looking = _hosts_with(fleet, ['extra'])
    folder, name, host = rng.choice(looking) if looking and rng.random() < 0.8 \
        else _any_host(rng, fleet)
    old = host.extra
    host.extra = rng.choice([e for e in (None,) + shapes.EXTRAS if e != old])
    return Change('%s/%s/extra: %s instead of %s' % (folder, name, host.extra or 'absent',
                                                     old or 'absent'))


def motd(rng, fleet):
    """Retarget a host's motd link, or turn it into a file of its own (with
    the same text, sometimes) or back into a link."""
    having = _hosts_with(fleet, ['motd'])
    if not having:
        return None
    folder, name, host = rng.choice(having)
    motds = sorted(n for n in fleet.data if 'motd' in n)
    if host.motd is None:
        host.motd = rng.choice(motds)
        return Change('%s/%s/motd: a link to data/%s' % (folder, name, host.motd))
    if rng.random() < 0.5:
        old = host.motd
        host.motd_text = fleet.data[old] if rng.random() < 0.5 else host.motd_text + 'x\n'
        host.motd = None
        return Change('%s/%s/motd: a file of its own instead of the link to data/%s%s'
                      % (folder, name, old, ' (the same text)'
                         if host.motd_text == fleet.data[old] else ''))
    host.motd = rng.choice(motds)
    return Change('%s/%s/motd: retarget to data/%s' % (folder, name, host.motd))


def files_edit(rng, fleet):
    name = rng.choice(sorted(fleet.files))
    fleet.files[name][0] += 'edited\n'
    return Change('edit files/%s%s' % (name, ' (filtered out)' if name.endswith('.tmp') else ''))


def files_tmp(rng, fleet):
    """Add or remove a file the filter leaves out."""
    name = 'scratch-%d.tmp' % rng.randrange(3)
    if name in fleet.files:
        del fleet.files[name]
        return Change('remove files/%s (filtered out)' % name)
    fleet.files[name] = ['scratch\n', False]
    return Change('add files/%s (filtered out)' % name)


def files_exec(rng, fleet):
    name = rng.choice(sorted(fleet.files))
    fleet.files[name][1] = not fleet.files[name][1]
    return Change('chmod %sx files/%s' % ('+' if fleet.files[name][1] else '-', name))


def files_link(rng, fleet):
    targets = sorted(n for n in fleet.files if '/' not in n)
    name = 'link-to-conf'
    fleet.file_links[name] = rng.choice(targets)
    return Change('files/%s -> %s' % (name, fleet.file_links[name]))


def files_move(rng, fleet):
    name = rng.choice(sorted(fleet.files))
    new = name.split('/')[-1] if '/' in name else 'nested/' + name
    if new in fleet.files:
        return None
    fleet.files[new] = fleet.files.pop(name)
    return Change('move files/%s to files/%s' % (name, new))


def feature(rng, fleet):
    """One host starts or stops doing one thing (its own file only)."""
    folder, name, host = _any_host(rng, fleet)
    what = rng.choice(fleet.allowed(folder == 'sub/hosts'))
    if what in COMMIT_BOUND and what not in host.features and rng.random() < 0.7:
        # a host that reads the commit is never reused: not too many of them
        return None
    if what in host.features and (what not in ('read', 'hashed') or rng.random() < 0.5):
        del host.features[what]
        return Change('%s/%s stops %s' % (folder, name, what))
    host.features[what] = fleet.feature_value(rng, what, folder == 'sub/hosts')
    if what == 'motd' and host.motd is None and rng.random() < 0.5:
        host.motd = rng.choice(sorted(n for n in fleet.data if 'motd' in n))
    value = host.features[what]
    shown = what if value is True else '%s of data/%s' % (what, value) \
        if what in ('read', 'hashed') else '%s %s' % (what, value)
    return Change('%s/%s uses %s' % (folder, name, shown))


def self_move(rng, fleet):
    """The one host that uses "${self}" changes (or none does)."""
    current = fleet.self_host()
    if current is not None:
        del fleet.hosts[current].features['self']
    if rng.random() < 0.2:
        return Change('no host uses "${self}" (was %s)' % current)
    name = rng.choice(sorted(fleet.hosts))
    fleet.hosts[name].features['self'] = True
    return Change('hosts/%s uses "${self}" (was %s)' % (name, current))


def roles(rng, fleet):
    folder, name, host = _any_host(rng, fleet)
    role = rng.choice(shapes.ROLES)
    if role in host.roles:
        host.roles.remove(role)
        return Change('%s/%s drops role %s' % (folder, name, role))
    host.roles.append(role)
    return Change('%s/%s takes role %s' % (folder, name, role))


def relink(rng, fleet):
    """A host's default.nix becomes a link to another host's (or its own
    file again)."""
    folder, name, host = _any_host(rng, fleet)
    others = [n for n in sorted(_hosts_of(fleet, folder)) if n != name]
    old = host.link_to
    host.link_to = None if old or not others else rng.choice(others)
    if host.link_to:
        return Change('%s/%s/default.nix: a link to %s/default.nix (where that is a file)'
                      % (folder, name, host.link_to))
    return Change('%s/%s/default.nix: its own file (was a link to %s)' % (folder, name, old))


def _flake_of(rng, fleet):
    sub = rng.random() < 0.3
    return sub, 'sub/hosts' if sub else 'hosts', fleet.sub_hosts if sub else fleet.hosts


def host_add(rng, fleet):
    sub, folder, hosts = _flake_of(rng, fleet)
    limit = shapes.LIMIT_SUB if sub else shapes.LIMIT_HOSTS
    name = fleet.free_name(rng, sub)
    if len(hosts) >= limit or name is None:
        return None
    hosts[name] = fleet.new_host(rng, sub)
    return Change('add %s/%s (%s)' % (folder, name, hosts[name].label))


def host_remove(rng, fleet):
    sub, folder, hosts = _flake_of(rng, fleet)
    if len(hosts) <= (1 if sub else shapes.MIN_HOSTS - 1):
        return None
    name = rng.choice(sorted(hosts))
    del hosts[name]
    return Change('remove %s/%s' % (folder, name))


def host_rename(rng, fleet):
    sub, folder, hosts = _flake_of(rng, fleet)
    old = rng.choice(sorted(hosts))
    new = fleet.free_name(rng, sub)
    if new is None:
        return None
    hosts[new] = hosts.pop(old)
    return Change('rename %s/%s to %s/%s' % (folder, old, folder, new))


def listing(rng, fleet):
    old = fleet.listing
    fleet.listing = rng.choice([n for n in shapes.LISTINGS if n != old])
    return Change('the host list: %s instead of %s' % (fleet.listing, old))


def bump_shared(_rng, fleet):
    fleet.shared_version += 1
    return Change('input shared: version %d (flake.lock)' % fleet.shared_version, ['shared'])


def bump_blob(_rng, fleet):
    fleet.blob_version += 1
    return Change('input blob (flake = false): version %d (flake.lock)' % fleet.blob_version,
                  ['blob'])


# ------------------------------------------------------------------ issue 76's shapes
def _outputs_file(fleet):
    return {'inline': 'flake.nix', 'imported': 'outputs.nix',
            'parts': 'parts/settings.nix'}[fleet.style]


def outputs_style(rng, fleet):
    """The outputs move: into flake.nix, outputs.nix, or parts/."""
    old = fleet.style
    fleet.style = rng.choice([s for s in shapes.STYLES if s != old])
    if fleet.style in fleet.without:
        fleet.style = old
        return None
    return Change('the outputs: %s instead of %s' % (fleet.style, old))


def setting(rng, fleet):
    """A host's value in the outputs' settings table changes, comes or
    goes, mostly one that reads it."""
    reading = [n for n in sorted(fleet.hosts) if 'setting' in fleet.hosts[n].features]
    name = rng.choice(reading if reading and rng.random() < 0.8 else sorted(fleet.hosts))
    where = _outputs_file(fleet)
    if name in fleet.settings and rng.random() < 0.3:
        del fleet.settings[name]
        return Change('%s: no setting for %s' % (where, name))
    fleet.settings[name] = fleet.settings.get(name, 0) + 1
    return Change('%s: setting %d for %s' % (where, fleet.settings[name], name))


def user_add(rng, fleet):
    name = fleet.add_user(rng)
    if name is None:
        return None
    return Change('add users/%s.nix, an admin in %s' % (name, _outputs_file(fleet)))


def user_remove(rng, fleet):
    if len(fleet.users) <= 1:
        return None
    name = rng.choice(sorted(fleet.users))
    del fleet.users[name]
    if name in fleet.admins:
        fleet.admins.remove(name)
    if fleet.override and name in fleet.override:
        fleet.override.remove(name)
    return Change('remove users/%s.nix and its admin entry' % name)


def user_edit(rng, fleet):
    name = rng.choice(sorted(fleet.users))
    fleet.users[name][1] += 1
    if rng.random() < 0.3:
        fleet.users[name][0] = rng.choice(('bash', 'zsh', 'fish', 'nu'))
    return Change('edit users/%s.nix%s' % (name, '' if name in fleet.admins else ' (unread)'))


def site_link(rng, fleet):
    """./site (read by the outputs' top) points to another file."""
    if not fleet.toplink:
        return None
    old = fleet.site
    fleet.site = rng.choice([s for s in sorted(fleet.sites) if s != old])
    return Change('./site -> %s (was %s)' % (fleet.site, old))


def site_edit(rng, fleet):
    if not fleet.toplink:
        return None
    name = rng.choice(sorted(fleet.sites))
    fleet.sites[name] += 'edited\n'
    return Change('edit %s%s' % (name, ' (what ./site points to)' if name == fleet.site else ''))


def odd_edit(rng, fleet):
    """Edit a file whose name no path literal holds."""
    if not fleet.names:
        return None
    files = [('conf', n) for n in sorted(fleet.odd)] + [('keys', n) for n in sorted(fleet.keys)]
    folder, name = rng.choice(files)
    (fleet.odd if folder == 'conf' else fleet.keys)[name] += 'edited\n'
    return Change('edit %s/%s' % (folder, name))


def odd_add(rng, fleet):
    """A file comes or goes in a non-ASCII folder: conf/\u00fcn\u00ef/ (its
    listing is read by ``oddlist``) or a host's folder with an odd name."""
    if not fleet.names:
        return None
    odd_hosts = [n for n in sorted(fleet.hosts) if n in shapes.ODD_HOSTS]
    name = u'n\u00f6te %d.txt' % rng.randrange(3)
    if odd_hosts and rng.random() < 0.4:
        host_name = rng.choice(odd_hosts)
        more = fleet.hosts[host_name].more
        if name in more:
            del more[name]
            return Change(u'remove hosts/%s/%s' % (host_name, name))
        more[name] = 'a note\n'
        return Change(u'add hosts/%s/%s' % (host_name, name))
    path = u'%s/%s' % (shapes.ODD_FOLDER, name)
    if any(host.features.get('odd') == path for _f, _n, host in _hosts_with(fleet, ['odd'])):
        # a host reads it: Nix would fail that host, reference and stage alike
        return None
    if path in fleet.odd:
        del fleet.odd[path]
        return Change(u'remove conf/%s' % path)
    fleet.odd[path] = 'new\n'
    return Change(u'add conf/%s' % path)


def bump_tools(_rng, fleet):
    if not fleet.follows:
        return None
    fleet.tools_version += 1
    return Change('input tools (its shared follows ours): version %d (flake.lock)'
                  % fleet.tools_version, ['tools'])


def pad_outputs(_rng, fleet):
    """A line above the outputs: the line of nixosConfigurations moves."""
    fleet.pad += 1
    return Change('a line above the outputs (%s)' % {
        'inline': 'flake.nix', 'imported': 'outputs.nix', 'parts': 'parts/hosts.nix'}[fleet.style])


def pad_host(rng, fleet):
    folder, name, host = _any_host(rng, fleet)
    host.pad += 1
    return Change('a line above %s/%s/default.nix\'s function' % (folder, name))


def part(rng, fleet):
    """parts/: a part nobody reads comes or goes, or a last part that
    overrides the admins."""
    if fleet.style != 'parts':
        return None
    if rng.random() < 0.5:
        if fleet.override is None:
            fleet.override = fleet.admins[:1]
            return Change('add parts/zz-admins.nix (admins: %s)' % ', '.join(fleet.override))
        fleet.override = None
        return Change('remove parts/zz-admins.nix')
    name = 'extra-%d.nix' % rng.randrange(3)
    if name in fleet.parts:
        del fleet.parts[name]
        return Change('remove parts/%s' % name)
    fleet.parts[name] = 'inputs: final: { fleetExtra%d = "unread"; }\n' % len(fleet.parts)
    return Change('add parts/%s' % name)


def motto(_rng, fleet):
    fleet.motto_version += 1
    return Change('lib.nix (read by the sub flake): version %d' % fleet.motto_version)


# (edit, weight): most touch one host, one role or nothing read
EDITS = (
    (edit_host, 16), (comment_host, 3), (host_notes, 6), (unread, 8), (empty, 5),
    (role_version, 5), (role_comment, 2), (role_banner, 1), (role_move, 1),
    (util_version, 2), (util_comment, 1), (lib_comment, 1), (flake_comment, 1),
    (data_edit, 8), (data_exec, 2), (data_move, 2), (extra_toggle, 5), (motd, 4),
    (files_edit, 3), (files_tmp, 3), (files_exec, 3), (files_link, 1), (files_move, 1),
    (feature, 6), (self_move, 1), (roles, 3), (relink, 2),
    (host_add, 3), (host_remove, 2), (host_rename, 2), (listing, 1),
    (bump_shared, 2), (bump_blob, 2),
    # issue 76 (each is redrawn where the fleet lacks its shape)
    (outputs_style, 1), (setting, 4), (user_add, 1), (user_remove, 1), (user_edit, 2),
    (site_link, 3), (site_edit, 1), (odd_edit, 4), (odd_add, 3), (bump_tools, 1),
    (pad_outputs, 1), (pad_host, 1), (part, 2), (motto, 2),
)


def _one(rng, fleet, edits=None):
    table = [(e, w) for e, w in EDITS if edits is None or e.__name__ in edits]
    total = sum(weight for _edit, weight in table)
    for _attempt in range(1000):
        pick = rng.uniform(0, total)
        for edit, weight in table:
            pick -= weight
            if pick <= 0:
                break
        change = edit(rng, fleet)
        if change is not None:
            return change
    raise RuntimeError('no edit of %s applies to this fleet' % ', '.join(
        e.__name__ for e, _w in table))


def draw(rng, fleet, edits=None):
    """One commit's edits (one, sometimes two or three at once); ``edits``:
    the names of the only edits drawn (None: all of EDITS)."""
    count = 1 if rng.random() < 0.85 else rng.randint(2, 3)
    changes = [_one(rng, fleet, edits) for _number in range(count)]
    inputs = sorted(set(i for c in changes for i in c.inputs))
    # issue 89, drawn last: a fleet with the ``dirty`` shape leaves some
    # commits' edits in the work tree
    dirty = fleet.dirty and rng.random() < DIRTY_SHARE
    return Change('; '.join(c.text for c in changes) + (' (left uncommitted)' if dirty else ''),
                  inputs, dirty)


# ------------------------------------------------------------------ the repository
class Repo(object):
    """The fleet's git repository at ``root`` and its inputs' folder
    ``inputs``; ``nix_version``: (major, minor) of the Nix that locks."""

    def __init__(self, root, inputs, nix_version, environ):
        self.root = root
        self.inputs = inputs
        self.nix_version = nix_version
        self.environ = environ
        self.commits = 0

    def git(self, *args):
        return subprocess.run(
            ['git', '-C', self.root, '-c', 'user.name=x', '-c', 'user.email=x@x',
             '-c', 'safe.directory=*', '-c', 'commit.gpgsign=false'] + list(args),
            check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self._git_env(),
            universal_newlines=True).stdout

    def _git_env(self):
        when = '@%d +0000' % (EPOCH + STEP * self.commits)
        return dict(self.environ, GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)

    def nix(self, *args):
        proc = subprocess.run(['nix'] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=self.environ,
                              universal_newlines=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError('nix %s failed: %s' % (' '.join(args), proc.stderr[-3000:]))
        return proc.stdout

    def create(self, fleet):
        """The first commit: the fleet, both flakes locked."""
        os.makedirs(self.root)
        sync(self.inputs, fleet.input_entries())
        sync(self.root, fleet.entries())
        self.git('init', '-q')
        self.git('add', '-A')
        self.nix('flake', 'lock', 'git+file://%s' % self.root)
        self.nix('flake', 'lock', 'git+file://%s?dir=sub' % self.root)
        return self._commit('the fleet')

    def commit(self, fleet, change):
        """Write ``fleet``, update the lock of ``change.inputs``, commit (or,
        for a ``dirty`` change, leave it all in the work tree and the index:
        Nix reads a dirty tree's files as git lists them); the HEAD commit."""
        sync(self.inputs, fleet.input_entries())
        sync(self.root, fleet.entries())
        self.git('add', '-A')
        if change.inputs:
            if self.nix_version >= (2, 19):
                self.nix('flake', 'update', '--flake', 'git+file://%s' % self.root,
                         *change.inputs)
            else:
                args = []
                for name in change.inputs:
                    args += ['--update-input', name]
                self.nix('flake', 'lock', 'git+file://%s' % self.root, *args)
        if change.dirty:
            self.git('add', '-A')
            # an edit that changed no file leaves the tree clean: a commit
            # to Nix, whatever was drawn
            change.dirty = bool(self.git('status', '--porcelain').strip())
            if change.dirty:
                return self.git('rev-parse', 'HEAD').strip()
            change.text = change.text.replace(' (left uncommitted)', ' (no file changed)')
        return self._commit(change.text)

    def _commit(self, text):
        self.git('add', '-A')
        self.git('commit', '-q', '--allow-empty', '-m', text)
        self.commits += 1
        left = self.git('status', '--porcelain', '--ignored')
        if left.strip():
            raise RuntimeError('the tree is not clean after the commit:\n%s' % left)
        return self.git('rev-parse', 'HEAD').strip()


def sync(root, entries):
    """Make the files under ``root`` (but .git and flake.lock files) exactly
    ``entries`` ({path: ('file', text, executable) or ('link', target)})."""
    present = {}
    for top, folders, files in os.walk(root):
        folders[:] = [f for f in folders if f != '.git' or top != root]
        for name in files + [f for f in folders if os.path.islink(os.path.join(top, f))]:
            rel = os.path.relpath(os.path.join(top, name), root)
            if os.path.basename(rel) != 'flake.lock':
                present[rel] = os.path.join(top, name)
    for rel, path in present.items():
        if rel not in entries:
            os.unlink(path)
    for rel, entry in entries.items():
        path = os.path.join(root, rel)
        if _matches(path, entry):
            continue
        if os.path.lexists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if entry[0] == 'link':
            os.symlink(entry[1], path)
        else:
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(entry[1])
            os.chmod(path, 0o755 if entry[2] else 0o644)
    # folders left empty go (git would not keep them; a readDir would see them)
    for top, folders, files in os.walk(root, topdown=False):
        if top != root and '.git' not in os.path.relpath(top, root).split(os.sep) \
                and not os.listdir(top):
            os.rmdir(top)


def _matches(path, entry):
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if entry[0] == 'link':
        return stat.S_ISLNK(info.st_mode) and os.readlink(path) == entry[1]
    if not stat.S_ISREG(info.st_mode) or bool(info.st_mode & 0o100) != entry[2]:
        return False
    with open(path, encoding='utf-8') as handle:
        return handle.read() == entry[1]
