"""The flake generator: a fleet of the shapes people write, as a model that
renders to files.

One git repository holds a flake whose hosts are ``nixosConfigurations.<n>``
with a ``config.system.build.toplevel`` that is a plain ``derivation`` (only
evaluated, never built), and a second flake in ``sub/`` (evaluated as
``git+file://REPO?dir=sub``) that shares the top's ``lib/``. Every host
puts what it read into its derivation's environment, so any change of what
it reads shows in its drvPath, and nothing else does. What is drawn:

- the host list: ``builtins.readDir ./hosts``, a list written in
  ``flake.nix``, or ``hosts.json`` read with ``builtins.readFile``;
- per host (``hosts/<n>/default.nix``, a function of the library's
  arguments, or a link to another host's): the roles it imports
  (``roles/web.nix``, ``roles/db.nix``, through ``lib/``), and each of: the
  library's ``util`` helper, a ``builtins.readFile`` and a
  ``builtins.hashFile`` of ``data/``, a ``builtins.pathExists ./extra``
  toggle (``extra`` a file, a link, a dangling link), a ``./motd`` that is a
  link to a ``data/`` file or a file of its own, ``files/`` copied to the
  store with ``builtins.path { filter = ...; }`` and as plain
  ``"${./files}"``, a link to ``files/nested`` copied or read through,
  a ``builtins.readDir ./.`` of its own folder, ``self.rev or "dirty"``
  given as an argument (``rev``), another attribute of ``self``
  (``lastModified``, ``narHash``...), ``"${self}"`` (one host at most), a
  peer's label read through ``self.nixosConfigurations``, the ``shared``
  flake input and the ``blob`` non-flake input;
- files nobody reads (``README.md``, ``unread/``, a ``notes.txt`` beside a
  host's file), so that a commit may leave every answer as it was.

The model is plain data (``Fleet``) so a mutation is an edit of it and the
whole campaign replays from its seed. ``Fleet.entries`` is the repository's
files; ``Fleet.input_entries`` the two inputs' (outside the repository).
"""

import copy
import json

# host names are drawn from small pools, so a name comes back after its host
# was removed or renamed: a new host under an old name must not be answered
# from the old one's record
HOST_POOL = ('alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel',
             'india', 'juliet', 'kilo', 'lima', 'mike', 'november')
SUB_POOL = ('sa', 'sb', 'sc', 'sd', 'se')
# drawn at first; LIMIT_*: at most this many after hosts are added
MIN_HOSTS, MAX_HOSTS, LIMIT_HOSTS = 6, 9, 11
MIN_SUB, MAX_SUB, LIMIT_SUB = 2, 3, 4
DATA_FILES = ('d1.txt', 'd2.txt', 'd3.txt', 'd4.txt')
MOTDS = ('motd-a.txt', 'motd-b.txt')
ROLES = ('web', 'db')
LISTINGS = ('readDir', 'explicit', 'file')
# what a host may do besides its tag and roles, and how likely a new host does it
FEATURES = {'util': 0.5, 'read': 0.4, 'hashed': 0.3, 'extra': 0.4, 'motd': 0.4,
            'filtered': 0.3, 'plain': 0.2, 'rev': 0.3, 'selfattr': 0.1, 'shared': 0.3,
            'blob': 0.2, 'peer': 0.2, 'owndir': 0.1, 'linkdir': 0.1, 'pathstr': 0.1}
# the sub flake has no inputs and leaves self's path alone
SUB_FEATURES = ('util', 'read', 'hashed', 'extra', 'motd', 'filtered', 'plain', 'rev',
                'selfattr', 'peer', 'owndir', 'linkdir', 'pathstr')
# Only with Fleet(path_strings=True): a string made of a path's name without
# reading it (part of its store hash). Its answer changes with every content
# while no read and no whole store path in its derivation shows it: the
# reuse of Nov 2025 answers it wrongly (see the campaign's report)
PATH_STRINGS = ('pathstr',)
# attributes of self a host may read (each changes with the commit or its content)
SELF_ATTRS = ('lastModified', 'lastModifiedDate', 'shortRev', 'revCount', 'narHash')
# what hosts/<n>/extra may be: a file, a link to a data file, a link to nothing
EXTRAS = ('file', 'link', 'dangling')


class Host(object):
    """One host's own file: ``label`` (its tag, kept through a rename),
    ``version`` (bumped by an edit), ``roles``, ``features`` ({name: value}:
    ``read``/``hashed`` name a data file, ``selfattr`` an attribute of
    self, ``peer`` another host of its flake whose label it reads through
    ``self.nixosConfigurations``, the others are True), and the files
    beside it: ``extra`` (None: absent, or one of EXTRAS), ``motd`` (a data
    file it links to, or None: a file of its own with ``motd_text``),
    ``notes`` (a file nobody reads), ``conf`` (a link to ``files/nested``,
    copied to the store or read through by ``linkdir``); ``link_to``:
    another host of its flake whose ``default.nix`` its own is a link to
    (where that host's file is one to link to: ``link_target``)."""

    def __init__(self, label):
        self.label = label
        self.version = 0
        self.roles = []
        self.features = {}
        self.extra = None
        self.motd = None
        self.motd_text = 'motd of %s' % label
        self.notes = 'notes of %s' % label
        self.comment = 0
        self.link_to = None


class Fleet(object):
    """The repository as data (see the module's docstring)."""

    def __init__(self, inputs_dir, path_strings=False):
        # where the two inputs live (absolute: flake.nix names them)
        self.inputs_dir = inputs_dir
        self.path_strings = path_strings
        self.hosts = {}
        self.sub_hosts = {}
        self.listing = 'readDir'
        self.flake_version = 0
        self.sub_version = 0
        self.data = dict((name, '%s, first version\n' % name) for name in DATA_FILES + MOTDS)
        # {data file: executable} (readFile does not care; a record may)
        self.data_exec = {}
        # {path under files/: [text, executable]}; *.tmp is what the filter leaves out
        self.files = {'run.sh': ['#!/bin/sh\necho run\n', True],
                      'conf.txt': ['setting = 1\n', False],
                      'cache.tmp': ['scratch\n', False],
                      'nested/deep.txt': ['deep\n', False]}
        # {path under files/: target} links copied with the folder
        self.file_links = {'link-to-conf': 'conf.txt'}
        self.roles = dict((role, {'file': '%s.nix' % role, 'version': 0, 'banner': role == 'web',
                                  'comment': 0}) for role in ROLES)
        self.util_version = 0
        self.util_comment = 0
        self.lib_comment = 0
        self.unread = {'README.md': '# the fleet\n', 'unread/notes.md': 'nothing\n'}
        self.shared_version = 0
        self.blob_version = 0
        self.labels = 0

    def copy(self):
        return copy.deepcopy(self)

    # ------------------------------------------------------------ drawing
    def new_host(self, rng, sub=False):
        """A new host (not yet placed): drawn roles and features."""
        self.labels += 1
        host = Host('h%d' % self.labels)
        host.roles = [r for r in ROLES if rng.random() < 0.5]
        for name in self.allowed(sub):
            if rng.random() < FEATURES[name]:
                host.features[name] = self.feature_value(rng, name, sub)
        host.extra = rng.choice(EXTRAS) if 'extra' in host.features and rng.random() < 0.5 \
            else None
        if 'motd' in host.features and rng.random() < 0.7:
            host.motd = rng.choice(sorted(n for n in self.data if 'motd' in n))
        return host

    def allowed(self, sub):
        """The features a host of the top flake (or the sub one) may have."""
        return tuple(f for f in (SUB_FEATURES if sub else FEATURES)
                     if self.path_strings or f not in PATH_STRINGS)

    def feature_value(self, rng, name, sub=False):
        """A data file (wherever it was moved) for a read, an attribute of
        self, a peer (a host of the flake, or a name that is not one), else
        True."""
        if name in ('read', 'hashed'):
            return rng.choice(sorted(n for n in self.data if 'motd' not in n))
        if name == 'selfattr':
            return rng.choice(SELF_ATTRS)
        if name == 'linkdir':
            return rng.choice(('copy', 'read'))
        if name == 'peer':
            pool = SUB_POOL if sub else HOST_POOL
            return rng.choice(sorted(self.sub_hosts if sub else self.hosts) or pool[:1]) \
                if rng.random() < 0.8 else rng.choice(pool)
        return True

    def free_name(self, rng, sub=False):
        taken = self.sub_hosts if sub else self.hosts
        names = [n for n in (SUB_POOL if sub else HOST_POOL) if n not in taken]
        return rng.choice(names) if names else None

    def self_host(self):
        """The one host that uses ``"${self}"``, or None."""
        for name, host in sorted(self.hosts.items()):
            if host.features.get('self'):
                return name
        return None

    # ------------------------------------------------------------ rendering
    def entries(self):
        """{path in the repository: ('file', text, executable) or ('link',
        target)}; flake.lock files are Nix's and not in here."""
        out = {'flake.nix': _file(self.flake_text()),
               'lib/default.nix': _file(self.lib_text()),
               'lib/util.nix': _file(self.util_text()),
               'sub/flake.nix': _file(self.sub_text())}
        for role, spec in self.roles.items():
            out['roles/%s' % spec['file']] = _file(role_text(role, spec))
        for name, text in self.data.items():
            out['data/%s' % name] = _file(text, self.data_exec.get(name, False))
        for name, (text, executable) in self.files.items():
            out['files/%s' % name] = _file(text, executable)
        for name, target in self.file_links.items():
            out['files/%s' % name] = ('link', target)
        for path, text in self.unread.items():
            out[path] = _file(text)
        if self.listing == 'file':
            out['hosts.json'] = _file(json.dumps(sorted(self.hosts)) + '\n')
        for folder, hosts, up in (('hosts', self.hosts, '../../'),
                                  ('sub/hosts', self.sub_hosts, '../../../')):
            for name, host in hosts.items():
                place = '%s/%s/' % (folder, name)
                target = link_target(hosts, host)
                out[place + 'default.nix'] = ('link', '../%s/default.nix' % target) \
                    if target else _file(host_text(host, up))
                out[place + 'notes.txt'] = _file(host.notes)
                if host.extra == 'file':
                    out[place + 'extra'] = _file('on\n')
                elif host.extra == 'link':
                    out[place + 'extra'] = ('link', '%sdata/%s' % (up, sorted(self.data)[0]))
                elif host.extra == 'dangling':
                    out[place + 'extra'] = ('link', 'no-such-file')
                if 'linkdir' in host.features:
                    out[place + 'conf'] = ('link', '%sfiles/nested' % up)
                if 'motd' in host.features:
                    out[place + 'motd'] = ('link', '%sdata/%s' % (up, host.motd)) \
                        if host.motd else _file(host.motd_text)
        return out

    def input_entries(self):
        """{path under the inputs folder: entry} of the two inputs."""
        return {'shared/flake.nix': _file(SHARED_FLAKE % {'version': self.shared_version}),
                'blob/blob.txt': _file('blob version %d\n' % self.blob_version)}

    def flake_text(self):
        if self.listing == 'readDir':
            names = 'lib.util.directories ./hosts'
        elif self.listing == 'explicit':
            names = '[ %s ]' % ' '.join('"%s"' % n for n in sorted(self.hosts))
        else:
            names = 'builtins.fromJSON (builtins.readFile ./hosts.json)'
        return FLAKE % {'version': self.flake_version, 'inputs': self.inputs_dir,
                        'names': names}

    def sub_text(self):
        return SUB_FLAKE % {'version': self.sub_version}

    def lib_text(self):
        imports = '\n'.join('    %s = import ../roles/%s { inherit util; };' % (role, spec['file'])
                            for role, spec in sorted(self.roles.items()))
        return LIB % {'comment': self.lib_comment, 'roles': imports}

    def util_text(self):
        return UTIL % {'version': self.util_version, 'comment': self.util_comment}


def link_target(hosts, host):
    """The host whose default.nix ``host``'s is a link to, or None: one
    that is a file itself, and reads no file beside it that may be missing
    beside the link (Nix 2.8 reads ./x of a linked file beside its target,
    Nix 2.34 beside the link)."""
    target = hosts.get(host.link_to)
    if target is None or target is host or target.link_to is not None \
            or 'motd' in target.features or target.features.get('linkdir') == 'copy':
        return None
    return host.link_to


def _file(text, executable=False):
    return ('file', text, executable)


def role_text(role, spec):
    banner = '\n    %sBanner = util.banner "%s";' % (role, role) if spec['banner'] else ''
    return ('# role %s (edit %d)\n{ util }:\n{\n  env = {\n    %s = "%s version %d";%s\n  };\n}\n'
            % (role, spec['comment'], role, role, spec['version'], banner))


def host_text(host, up):
    """hosts/<n>/default.nix: ``up`` leads from its folder to the top."""
    feats = host.features
    env = ['tag = "%s.%d";' % (host.label, host.version)]
    if feats.get('util'):
        env.append('banner = util.banner name;')
    if feats.get('read'):
        env.append('data = builtins.readFile %sdata/%s;' % (up, feats['read']))
    if feats.get('hashed'):
        env.append('hash = builtins.hashFile "sha256" %sdata/%s;' % (up, feats['hashed']))
    if feats.get('extra'):
        env.append('extra = if builtins.pathExists ./extra then "on" else "off";')
    if feats.get('motd'):
        env.append('motd = builtins.readFile ./motd;')
    if feats.get('filtered'):
        env.append('files = "${builtins.path { path = %sfiles; name = "files"; '
                   'filter = path: type: !(util.hasSuffix ".tmp" path); }}";' % up)
    if feats.get('plain'):
        env.append('plain = "${%sfiles}";' % up)
    if feats.get('rev'):
        env.append('configurationRevision = rev;')
    if feats.get('selfattr'):
        env.append('%s = toString (self.%s or "none");' % (feats['selfattr'], feats['selfattr']))
    if feats.get('peer'):
        env.append('peer = self.nixosConfigurations.%s.config.label or "gone";' % feats['peer'])
    if feats.get('owndir'):
        env.append('own = builtins.concatStringsSep "," '
                   '(builtins.attrNames (builtins.readDir ./.));')
    if feats.get('linkdir') == 'copy':
        # files/nested may have been moved away (Nix 2.8 copies the folder
        # the link names, Nix 2.34 the link itself)
        env.append('conf = if builtins.pathExists ./conf then "${./conf}" else "gone";')
    elif feats.get('linkdir'):
        env.append('deep = if builtins.pathExists ./conf/deep.txt '
                   'then builtins.readFile ./conf/deep.txt else "moved";')
    if feats.get('pathstr'):
        env.append('srcid = builtins.substring 11 8 (toString ./.);')
    if feats.get('self'):
        env.append('source = "${self}";')
    if feats.get('shared'):
        env.append('greeting = shared.lib.greeting name;')
    if feats.get('blob'):
        env.append('blob = builtins.readFile "${blob}/blob.txt";')
    return HOST % {'label': host.label, 'comment': host.comment, 'version': host.version,
                   'roles': ''.join(' roles.%s' % r for r in host.roles),
                   'env': ''.join('\n    %s' % line for line in env)}


FLAKE = '''# the fleet (edit %(version)d)
{
  inputs.shared.url = "path:%(inputs)s/shared";
  inputs.blob = { url = "path:%(inputs)s/blob"; flake = false; };
  outputs = { self, shared, blob }:
    let
      lib = import ./lib { inherit self shared blob; };
      names = %(names)s;
    in {
      nixosConfigurations = builtins.listToAttrs (map
        (name: { inherit name; value = lib.mkHost (./hosts + "/${name}") name; }) names);
    };
}
'''

# a second flake in sub/ that shares the top's lib/ (a folder above its own)
SUB_FLAKE = '''# the sub fleet (edit %(version)d)
{
  outputs = { self }:
    let
      lib = import ../lib { inherit self; shared = null; blob = null; };
    in {
      nixosConfigurations = builtins.listToAttrs (map
        (name: { inherit name; value = lib.mkHost (./hosts + "/${name}") name; })
        (lib.util.directories ./hosts));
    };
}
'''

# each role is imported lazily: a host without it does not read it
LIB = '''# the fleet's library (edit %(comment)d)
{ self, shared, blob }:
let
  util = import ./util.nix;
  roles = {
%(roles)s
  };
in {
  inherit util;
  mkHost = dir: name:
    let
      host = import dir {
        inherit util roles name self shared blob;
        # system.configurationRevision as people write it
        rev = self.rev or "dirty";
      };
      roleEnv = builtins.foldl' (acc: role: acc // role.env) { } host.roles;
    in {
      config.label = host.label;
      config.system.build.toplevel = derivation (roleEnv // host.env // {
        name = "nixos-system-${name}";
        system = "x86_64-linux";
        builder = "/bin/sh";
        args = [ "-c" "exit 1" ];
      });
    };
}
'''

UTIL = '''# helpers (edit %(comment)d)
{
  banner = s: "== ${s} (util version %(version)d) ==";
  hasSuffix = suffix: s:
    let ls = builtins.stringLength s; lx = builtins.stringLength suffix;
    in ls >= lx && builtins.substring (ls - lx) lx s == suffix;
  directories = dir:
    let found = builtins.readDir dir;
    in builtins.filter (n: found.${n} == "directory") (builtins.attrNames found);
}
'''

HOST = '''# host %(label)s (edit %(comment)d)
{ util, roles, rev, self, shared, blob, name, ... }:
{
  # what a peer reads of this host (its own file only: no cycle)
  label = "%(label)s.%(version)d";
  roles = [%(roles)s ];
  env = {%(env)s
  };
}
'''

SHARED_FLAKE = '''{
  outputs = { self }: {
    lib.greeting = name: "hello ${name} (shared version %(version)d)";
  };
}
'''


def draw(rng, inputs_dir, path_strings=False):
    """A new fleet of MIN_HOSTS..MAX_HOSTS hosts and MIN_SUB..MAX_SUB sub hosts."""
    fleet = Fleet(inputs_dir, path_strings)
    fleet.listing = rng.choice(LISTINGS)
    for _number in range(rng.randint(MIN_HOSTS, MAX_HOSTS)):
        fleet.hosts[fleet.free_name(rng)] = fleet.new_host(rng)
    for _number in range(rng.randint(MIN_SUB, MAX_SUB)):
        fleet.sub_hosts[fleet.free_name(rng, sub=True)] = fleet.new_host(rng, sub=True)
    if rng.random() < 0.7:
        fleet.hosts[rng.choice(sorted(fleet.hosts))].features['self'] = True
    for hosts in (fleet.hosts, fleet.sub_hosts):
        if rng.random() < 0.5:
            name, other = rng.sample(sorted(hosts), 2)
            hosts[name].link_to = other
    return fleet
