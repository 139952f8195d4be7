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

The shapes real flakes have (issue 76), each a seeded choice of the fleet:

- where the outputs are written (``style``): in ``flake.nix`` itself, in an
  imported file (``outputs = inputs: import ./outputs.nix inputs;``), or
  merged from every file of ``parts/`` by a fold over a fixpoint (the way
  flake-parts does it), forced as soon as the outputs are;
- values the outputs compute at their top and hand to every host (``top``):
  a per-host ``settings`` table and an ``admins`` list of ``users/*.nix``
  files, written in the outputs' file, and (``toplink``) the text of
  ``./site``, a link the outputs' top reads whatever host is asked;
- (``names``) files and folders whose names Nix path literals cannot hold:
  non-ASCII (``conf/café.txt``, ``keys/zoë.pub``, ``users/josé.nix``,
  hosts named ``zürich`` or ``são paulo``), spaces, quotes and backslashes,
  reached as ``../../conf + "/café.txt"``;
- (``follows``) an input that follows the root (``inputs.me.follows =
  "";``, its ``shortRev``/``lastModified`` read by a host) and an input that
  follows another one (``tools``, whose ``shared`` is the root's);
- ``inputs.self`` (the imported and parts outputs take ``inputs`` whole, and
  a host may read ``inputs.self.shortRev``);
- positions: ``builtins.unsafeGetAttrPos "nixosConfigurations" self`` and
  ``__curPos`` as line numbers in a host's value (commits add lines above);
- ``builtins.toFile "where" (toString ./.)`` in a host's derivation: the
  source's path carried through a file of the store;
- the sub flake reads ``../lib.nix`` (a file of its parent) at its top.

The shapes of issue 89, drawn last (a seed's earlier draws stay as they
were):

- (``exports``) the outputs export the names Nix's own flake call puts
  last: ``inherit inputs;``, an ``outputs`` and a ``sourceInfo`` of their
  own, which Nix's win over; hosts read ``self.inputs``'s names and what
  ``self.outputs`` and ``self.sourceInfo`` are (``callnames``), and the
  ``.inputs`` of an input flake and the names of the non-flake input
  (``depinputs``);
- (``dirty``) some commits leave their edits in the work tree, uncommitted:
  the run evaluates its snapshot; hosts read ``builtins.attrNames self``
  and ``self ? submodules`` (``selfnames``), which differ there from Nix's
  evaluation of the tree as docs/eval-cache.md's table says (the campaign
  checks that they differ only so: ``runner``).
- (``placed``) inputs whose place Nix's call derives from another node's: a
  relative flake input (``path:./kid``) with a relative input of its own
  (``path:./grand``), a relative non-flake input (``path:./raw``) and, on
  a Nix that takes ``?dir=`` on a ``path:`` input (2.25+, ``dir_input``, set
  by the runner, not drawn), a non-flake input of a folder (``nfdir``);
  hosts read their paths (``placed``: each one's ``outPath``, its source's,
  ``self.outPath`` inside the relative flakes) or only what is there
  (``placedread``: a value of the nested flake, a file of the relative
  non-flake input and of the ``?dir=`` folder, whose source's top has a
  file of the same name).

The model is plain data (``Fleet``) so a mutation is an edit of it and the
whole campaign replays from its seed. ``Fleet.entries`` is the repository's
files; ``Fleet.input_entries`` the two inputs' (outside the repository).
"""

import copy
import json
import re

# host names are drawn from small pools, so a name comes back after its host
# was removed or renamed: a new host under an old name must not be answered
# from the old one's record
HOST_POOL = ('alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel',
             'india', 'juliet', 'kilo', 'lima', 'mike', 'november')
# with the ``names`` shape: hosts whose names no path literal can hold
ODD_HOSTS = (u'z\u00fcrich', u's\u00e3o paulo')
SUB_POOL = ('sa', 'sb', 'sc', 'sd', 'se')
# drawn at first; LIMIT_*: at most this many after hosts are added
MIN_HOSTS, MAX_HOSTS, LIMIT_HOSTS = 6, 9, 11
MIN_SUB, MAX_SUB, LIMIT_SUB = 2, 3, 4
DATA_FILES = ('d1.txt', 'd2.txt', 'd3.txt', 'd4.txt')
MOTDS = ('motd-a.txt', 'motd-b.txt')
ROLES = ('web', 'db')
LISTINGS = ('readDir', 'explicit', 'file')
# where the outputs are written (see the module's docstring)
STYLES = ('inline', 'imported', 'parts')
# users/<name>.nix: names drawn for the admins list (the odd ones with ``names``)
USER_POOL = ('ann', 'bob', 'carl', 'dora')
ODD_USERS = (u'jos\u00e9', u'zo\u00eb', u'ana mar\u00eda', "o'brien", 'back\\slash')
# conf/ files with odd names (``names``): what the ``odd`` feature reads; and
# the non-ASCII folder whose listing ``oddlist`` reads
ODD_FOLDER = u'\u00fcn\u00ef'
ODD_FILES = (u'caf\u00e9.txt', 'with space.txt', 'quo"te.txt', 'back\\slash.txt',
             ODD_FOLDER + u'/na\u00efve.txt')
KEYS = (u'zo\u00eb.pub', u'\u00f3lafur.pub')
# the files ./site may link to (``toplink``)
SITES = ('sites/north.txt', 'sites/south.txt', u'sites/b\u00e4ckerei.txt')
# what a host may do besides its tag and roles, and how likely a new host does it
FEATURES = {'util': 0.5, 'read': 0.4, 'hashed': 0.3, 'extra': 0.4, 'motd': 0.4,
            'filtered': 0.3, 'plain': 0.2, 'rev': 0.3, 'selfattr': 0.1, 'shared': 0.3,
            'blob': 0.2, 'peer': 0.2, 'owndir': 0.1, 'linkdir': 0.1, 'pathstr': 0.1,
            # the shapes of issue 76
            'setting': 0.3, 'admins': 0.2, 'site': 0.3, 'odd': 0.3, 'oddlist': 0.15,
            'key': 0.15, 'me': 0.1, 'tools': 0.2, 'iself': 0.1, 'pos': 0.1, 'where': 0.05,
            'motto': 0.4,
            # the shapes of issue 89
            'callnames': 0.2, 'depinputs': 0.2, 'selfnames': 0.2, 'placed': 0.2,
            'placedread': 0.3}
# the sub flake has no inputs and leaves self's path alone
SUB_FEATURES = ('util', 'read', 'hashed', 'extra', 'motd', 'filtered', 'plain', 'rev',
                'selfattr', 'peer', 'owndir', 'linkdir', 'pathstr', 'odd', 'pos', 'where',
                'motto')
# what only the sub flake has (its top reads ../lib.nix)
SUB_ONLY = ('motto',)
# a feature that needs a shape of the fleet: {feature: Fleet attribute}
NEEDS = {'site': 'toplink', 'odd': 'names', 'oddlist': 'names', 'key': 'names',
         'me': 'follows', 'tools': 'follows',
         'callnames': 'exports', 'depinputs': 'exports', 'selfnames': 'dirty',
         'placed': 'placed', 'placedread': 'placed'}
# what ``Fleet.in_use`` names: the shapes of issue 76 a commit may have
SHAPES = ('outputs.nix', 'parts/ fold', 'inputs.self', 'top values', 'top link', 'odd names',
          'follows root', 'follows input', 'positions', 'toFile ./.', 'sub ../lib.nix')
# the features of issue 76, one host each at least with Fleet(every_shape=True)
NEW_FEATURES = ('setting', 'admins', 'site', 'odd', 'oddlist', 'key', 'me', 'tools', 'iself',
                'pos', 'where')
# the shapes of issue 89 (``Fleet.in_use``; ``dirty tree`` is a commit's,
# counted by the runner) and their features
SHAPES_89 = ('exported names', 'call names', 'input .inputs', 'self names', 'placed paths',
             'placed reads')
FEATURES_PLACED = ('placed', 'placedread')
FEATURES_89 = ('callnames', 'depinputs', 'selfnames') + FEATURES_PLACED
# what a host with each of them puts in its derivation (``names``: the
# comma-joined names of a set, in the host's file)
READS_89 = {
    'callnames': 'callnames = "${names self.inputs} ${builtins.typeOf self.outputs} '
                 '${builtins.typeOf self.sourceInfo}";',
    'depinputs': 'depinputs = "${names (inputs.tools or shared).inputs} ${names blob}";',
    'selfnames': 'selfnames = "${names self} ${if self ? submodules then "has" else "none"}";',
    'placed': 'placed = builtins.toJSON [ inputs.kid.outPath inputs.kid.sourceInfo.outPath '
              'inputs.kid.where inputs.kid.inputs.grand.where inputs.raw.outPath '
              '(inputs.raw.sourceInfo.outPath or "none") (inputs.nfdir.outPath or "none") ];',
    'placedread': 'placedread = "${inputs.kid.grandValue} ${builtins.readFile '
                  '(inputs.raw + "/file")} ${if inputs ? nfdir then builtins.readFile '
                  '(inputs.nfdir + "/file") else "none"}";',
}
# the names of self Nix gives a dirty git tree and the run's snapshot lacks
# (docs/eval-cache.md, "A dirty tree's self")
DIRTY_ONLY = ('submodules', 'dirtyRev', 'dirtyShortRev')
# Only with Fleet(path_strings=True): a value made of a path's name without
# reading it (a hash of ``toString ./.``). Its answer changes with every
# content while no read shows it and no eight characters of the source's
# store hash reach its derivation (eight or more are seen and never reused):
# not defended (docs/eval-cache.md, "A string of the source's own path")
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
        # comment lines above the host's function (move __curPos)
        self.pad = 0
        # {name: text}: more files in its folder, read by nobody (``owndir``
        # lists them)
        self.more = {}


class Fleet(object):
    """The repository as data (see the module's docstring)."""

    def __init__(self, inputs_dir, path_strings=False, without=()):
        # where the inputs live (absolute: flake.nix names them)
        self.inputs_dir = inputs_dir
        self.path_strings = path_strings
        # features and shapes left out (to tell one failure from another)
        self.without = frozenset(without)
        # the shapes of issue 76 (drawn by ``draw``)
        self.style = 'inline'
        self.toplink = False
        self.names = False
        self.follows = False
        # the shapes of issue 89: the outputs export inputs, outputs and
        # sourceInfo; some commits leave the tree dirty
        self.exports = False
        self.dirty = False
        # relative inputs; ``dir_input``: and a non-flake input with ?dir=
        # (set where the Nix in use takes one on a path: input)
        self.placed = False
        self.dir_input = False
        # comment lines above the outputs (move unsafeGetAttrPos's line)
        self.pad = 0
        # {host: number}: the outputs' settings table
        self.settings = {}
        # {user: [shell, version]} of users/; ``admins``: the ones the outputs list
        self.users = {}
        self.admins = []
        # parts/ beyond hosts.nix and settings.nix: {file name: text} of
        # parts nobody reads, and ``override``: the admins of a last part
        # (zz-admins.nix, merged after settings.nix), or None: no such part
        self.parts = {}
        self.override = None
        self.site = SITES[0]
        self.sites = dict((name, '%s, first version\n' % name) for name in SITES)
        self.odd = {}
        self.keys = {}
        self.motto_version = 0
        self.tools_version = 0
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
        """The features a host of the top flake (or the sub one) may have:
        those the fleet's shapes allow."""
        found = []
        for name in (SUB_FEATURES if sub else FEATURES):
            if name in PATH_STRINGS and not self.path_strings:
                continue
            if name in SUB_ONLY and not sub:
                continue
            if name in NEEDS and not getattr(self, NEEDS[name]):
                continue
            if name in self.without:
                continue
            found.append(name)
        return tuple(found)

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
        if name == 'odd':
            return rng.choice(sorted(self.odd))
        if name == 'key':
            return rng.choice(sorted(self.keys))
        return True

    def host_pool(self, sub=False):
        if sub:
            return SUB_POOL
        return HOST_POOL + (ODD_HOSTS if self.names else ())

    def free_name(self, rng, sub=False):
        taken = self.sub_hosts if sub else self.hosts
        names = [n for n in self.host_pool(sub) if n not in taken]
        return rng.choice(names) if names else None

    def user_pool(self):
        return USER_POOL + (ODD_USERS if self.names else ())

    def add_user(self, rng):
        """A new user file, listed among the admins; None when the pool is
        used up."""
        free = [n for n in self.user_pool() if n not in self.users]
        if not free:
            return None
        name = rng.choice(free)
        self.users[name] = [rng.choice(('bash', 'zsh', 'fish')), 0]
        self.admins.append(name)
        return name

    def in_use(self):
        """The shapes of issue 76 this commit of the fleet has (for the
        campaign's coverage figures)."""
        found = set()
        hosts = list(self.hosts.values())
        feats = set(f for h in hosts for f in h.features)
        sub_feats = set(f for h in self.sub_hosts.values() for f in h.features)
        if self.style == 'imported':
            found.add('outputs.nix')
        if self.style == 'parts':
            found.add('parts/ fold')
        if self.style != 'inline' or 'iself' in feats:
            found.add('inputs.self')
        if 'setting' in feats or 'admins' in feats:
            found.add('top values')
        if self.toplink and 'site' in feats:
            found.add('top link')
        odd_names = any(n in ODD_HOSTS for n in self.hosts) or \
            ('admins' in feats and any(u in ODD_USERS for u in self.admins))
        if feats & set(['odd', 'oddlist', 'key']) or 'odd' in sub_feats or odd_names:
            found.add('odd names')
        if 'me' in feats:
            found.add('follows root')
        if 'tools' in feats:
            found.add('follows input')
        if 'pos' in feats or 'pos' in sub_feats:
            found.add('positions')
        if 'where' in feats or 'where' in sub_feats:
            found.add('toFile ./.')
        if 'motto' in sub_feats:
            found.add('sub ../lib.nix')
        if self.exports:
            found.add('exported names')
        for feature, shape in zip(FEATURES_89, SHAPES_89[1:]):
            if feature in feats:
                found.add(shape)
        return found

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
        # issue 76: the outputs' own file(s), users/, ./site, odd names,
        # lib.nix (read by the sub flake)
        if self.style == 'imported':
            out['outputs.nix'] = _file(self.outputs_file())
        elif self.style == 'parts':
            out['parts/hosts.nix'] = _file(self.parts_hosts())
            out['parts/settings.nix'] = _file(self.parts_settings())
            if self.toplink:
                out['parts/site.nix'] = _file(PART_SITE)
            for name, text in self.parts.items():
                out['parts/%s' % name] = _file(text)
            if self.override is not None:
                out['parts/zz-admins.nix'] = _file(
                    '# merged last: its admins win\ninputs: final: {\n  fleetAdmins = %s;\n}\n'
                    % self.admins_text('../', self.override))
        for name, (shell, version) in self.users.items():
            out['users/%s.nix' % name] = _file(
                '{ name = %s; shell = "%s"; version = %d; }\n' % (nix_str(name), shell, version))
        if self.toplink:
            out['site'] = ('link', self.site)
            for name, text in self.sites.items():
                out[name] = _file(text)
        for name, text in self.odd.items():
            out['conf/%s' % name] = _file(text)
        for name, text in self.keys.items():
            out['keys/%s' % name] = _file(text)
        if self.placed:
            out['kid/flake.nix'] = _file(KID_FLAKE)
            out['kid/grand/flake.nix'] = _file(GRAND_FLAKE)
            out['raw/file'] = _file('the relative non-flake input\n')
        out['lib.nix'] = _file('# read by sub/flake.nix\n{ motto = "motto version %d"; }\n'
                               % self.motto_version)
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
                for more, text in host.more.items():
                    out[place + more] = _file(text)
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
        """{path under the inputs folder: entry} of the inputs; nfdir/ has a
        `file` at its top and in `sub`, the folder its input names."""
        return {'shared/flake.nix': _file(SHARED_FLAKE % {'version': self.shared_version}),
                'blob/blob.txt': _file('blob version %d\n' % self.blob_version),
                'tools/flake.nix': _file(TOOLS_FLAKE % {'version': self.tools_version,
                                                        'inputs': self.inputs_dir}),
                'nfdir/file': _file('the top of nfdir\n'),
                'nfdir/sub/file': _file('the folder sub of nfdir\n')}

    def flake_text(self):
        """flake.nix: its inputs, and the outputs themselves (``inline``),
        an import of outputs.nix, or the fold over parts/."""
        inputs = INPUTS % {'inputs': self.inputs_dir}
        if self.follows:
            inputs += FOLLOWS % {'inputs': self.inputs_dir}
        if self.placed:
            inputs += PLACED
        if self.placed and self.dir_input:
            inputs += DIR_INPUT % {'inputs': self.inputs_dir}
        if self.style == 'imported':
            outputs = '  outputs = inputs: import ./outputs.nix inputs;\n'
        elif self.style == 'parts':
            outputs = PARTS_OUTPUTS
        else:
            outputs = ('  outputs = { self, shared, blob, ... }@inputs:\n'
                       + _indent(self.outputs_body('./'), 4) + ';\n')
        return '%s# the fleet (edit %d)\n{\n%s%s}\n' % (
            self.padding() if self.style == 'inline' else '', self.flake_version, inputs,
            outputs)

    def padding(self):
        return ''.join('# a line added above the outputs (%d)\n' % n for n in range(self.pad))

    def names_text(self, at):
        """The host list's expression, from a file in folder ``at`` ('./'
        at the top, '../' in parts/)."""
        if self.listing == 'readDir':
            return 'lib.util.directories %shosts' % at
        if self.listing == 'explicit':
            return '[ %s ]' % ' '.join(nix_str(n) for n in sorted(self.hosts))
        return 'builtins.fromJSON (builtins.readFile %shosts.json)' % at

    def settings_text(self):
        return '{ %s}' % ''.join('%s = "setting %d"; ' % (nix_str(n), v)
                                 for n, v in sorted(self.settings.items()))

    def admins_text(self, at, admins=None):
        return 'map (n: import (%susers + "/${n}.nix")) [ %s]' % (
            at, ''.join('%s ' % nix_str(n) for n in (self.admins if admins is None else admins)))

    def outputs_body(self, at, parts=False):
        """The expression of the outputs (``nixosConfigurations``) from a
        file in folder ``at``; in parts/ the top values come from the fold's
        result (``final``)."""
        if parts:
            top = ('{ settings = final.fleetSettings; admins = final.fleetAdmins;%s }'
                   % (' site = final.fleetSite;' if self.toplink else ''))
        else:
            top = '{ settings = %s; admins = %s;%s }' % (
                self.settings_text(), self.admins_text(at),
                (' site = builtins.readFile %ssite;' % at) if self.toplink else '')
        return BODY % {'at': at, 'top': top, 'names': self.names_text(at),
                       'force': 'builtins.seq top.site ' if self.toplink else '',
                       'exports': EXPORTS if self.exports else ''}

    def outputs_file(self):
        return '%s# the fleet\'s outputs (edit %d)\ninputs:\nlet\n  inherit (inputs) self shared ' \
            'blob;\nin\n%s\n' % (self.padding(), self.flake_version, self.outputs_body('./'))

    def parts_hosts(self):
        return '%s# the hosts, a part of the outputs\ninputs: final:\nlet\n  inherit (inputs) ' \
            'self shared blob;\nin\n%s\n' % (self.padding(), self.outputs_body('../', True))

    def parts_settings(self):
        return ('# the settings, a part of the outputs (edit %d)\ninputs: final: {\n'
                '  fleetSettings = %s;\n  fleetAdmins = %s;\n}\n'
                % (self.flake_version, self.settings_text(), self.admins_text('../')))

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


def _indent(text, count):
    return '\n'.join((' ' * count + line) if line else line for line in text.split('\n'))


def nix_str(text):
    """``text`` as a Nix string literal."""
    return '"%s"' % text.replace('\\', '\\\\').replace('"', '\\"').replace('${', '\\${')


def nix_attr(name):
    """``name`` as an attribute in a Nix attribute path."""
    return name if re.match(r"^[A-Za-z_][A-Za-z0-9_'-]*$", name) else nix_str(name)


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
        env.append('peer = self.nixosConfigurations.%s.config.label or "gone";'
                   % nix_attr(feats['peer']))
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
        env.append('srcid = builtins.substring 0 12 '
                   '(builtins.hashString "sha256" (toString ./.));')
    if feats.get('self'):
        env.append('source = "${self}";')
    if feats.get('shared'):
        env.append('greeting = shared.lib.greeting name;')
    if feats.get('blob'):
        env.append('blob = builtins.readFile "${blob}/blob.txt";')
    # issue 76
    if feats.get('setting'):
        env.append('setting = top.settings.${name} or "none";')
    if feats.get('admins'):
        env.append('admins = builtins.concatStringsSep ";" '
                   '(map (u: "${u.name}:${u.shell}:${toString u.version}") top.admins);')
    if feats.get('site'):
        env.append('site = top.site;')
    if feats.get('odd'):
        env.append('odd = builtins.readFile (%sconf + %s);' % (up, nix_str('/' + feats['odd'])))
    if feats.get('oddlist'):
        env.append('oddlist = builtins.concatStringsSep "," (builtins.attrNames '
                   '(builtins.readDir (%sconf + %s)));' % (up, nix_str('/' + ODD_FOLDER)))
    if feats.get('key'):
        env.append('key = builtins.hashFile "sha256" (%skeys + %s);'
                   % (up, nix_str('/' + feats['key'])))
    if feats.get('me'):
        env.append('me = "${inputs.me.shortRev or "dirty"}-${toString inputs.me.lastModified}";')
    if feats.get('tools'):
        env.append('tools = inputs.tools.lib.describe name;')
    if feats.get('iself'):
        env.append('iself = inputs.self.shortRev or "dirty";')
    if feats.get('pos'):
        env.append('pos = "${toString ((builtins.unsafeGetAttrPos "nixosConfigurations" self).line '
                   'or 0)}:${toString __curPos.line}";')
    if feats.get('where'):
        env.append('where = builtins.toFile "where" (toString ./.);')
    if feats.get('motto'):
        env.append('motto = top.motto;')
    env.extend(READS_89[f] for f in FEATURES_89 if feats.get(f))
    return HOST % {'label': host.label, 'comment': host.comment, 'version': host.version,
                   'pad': ''.join('# a line added above (%d)\n' % n for n in range(host.pad)),
                   'roles': ''.join(' roles.%s' % r for r in host.roles),
                   'env': ''.join('\n    %s' % line for line in env)}


INPUTS = '''  inputs.shared.url = "path:%(inputs)s/shared";
  inputs.blob = { url = "path:%(inputs)s/blob"; flake = false; };
'''

# an input that is this flake itself, and one whose own input is ours
FOLLOWS = '''  inputs.me.follows = "";
  inputs.tools = { url = "path:%(inputs)s/tools"; inputs.shared.follows = "shared"; };
'''

# the outputs as an expression of self, shared, blob and inputs, from a
# file in folder %(at)s; what every host is handed from the outputs' top
# (``top``) is computed here
BODY = '''let
  top = %(top)s;
  lib = import %(at)slib { inherit self shared blob inputs top; };
  names = %(names)s;
in {
%(exports)s  nixosConfigurations = %(force)s(builtins.listToAttrs (map
    (name: { inherit name; value = lib.mkHost (%(at)shosts + "/${name}") name; }) names));
}'''

# issue 89: the names Nix's own flake call puts last, exported by the
# outputs (Nix's win: self.inputs, self.outputs and self.sourceInfo are its)
EXPORTS = '''  inherit inputs;
  outputs = "the outputs' own";
  sourceInfo = { narHash = "the outputs' own"; };
'''

# flake-parts style: every file of parts/ is a function of the inputs and
# of the merged result; the fold runs as soon as the outputs are asked for
PARTS_OUTPUTS = '''  outputs = inputs:
    let
      modules = map (n: import (./parts + "/${n}") inputs)
        (builtins.attrNames (builtins.readDir ./parts));
      final = builtins.foldl' (acc: m: acc // m final) { } modules;
    in final;
'''

PART_SITE = '''# the text of ../site (a link), a part of the outputs
inputs: final: { fleetSite = builtins.readFile ../site; }
'''

# a second flake in sub/ that shares the top's lib/ (a folder above its own)
# and reads ../lib.nix (a file above it) at its top
SUB_FLAKE = '''# the sub fleet (edit %(version)d)
{
  outputs = { self }:
    let
      top = { motto = (import ../lib.nix).motto; };
      lib = import ../lib {
        inherit self top; shared = null; blob = null; inputs = { inherit self; };
      };
    in {
      nixosConfigurations = builtins.listToAttrs (map
        (name: { inherit name; value = lib.mkHost (./hosts + "/${name}") name; })
        (lib.util.directories ./hosts));
    };
}
'''

# each role is imported lazily: a host without it does not read it
LIB = '''# the fleet's library (edit %(comment)d)
{ self, shared, blob, inputs, top }:
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
        inherit util roles name self shared blob inputs top;
        # system.configurationRevision as people write it
        rev = self.rev or "dirty";
      };
      roleEnv = builtins.foldl' (acc: role: acc // role.env) { } host.roles;
    in {
      config.label = host.label;
      config.system.build.toplevel = derivation (roleEnv // host.env // {
        # a store path's name takes no space nor non-ASCII byte
        name = "nixos-system-${util.safe name}";
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
  # every byte a store path's name may not hold becomes "_"
  safe = s: builtins.concatStringsSep "" (builtins.genList (i:
    let c = builtins.substring i 1 s;
    in if builtins.match "[a-zA-Z0-9._+-]" c != null then c else "_")
    (builtins.stringLength s));
}
'''

HOST = '''%(pad)s# host %(label)s (edit %(comment)d)
{ util, roles, rev, self, shared, blob, name, inputs, top, ... }:
let names = set: builtins.concatStringsSep "," (builtins.attrNames set); in
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

# relative inputs (the nested one is kid's), and a non-flake input of a
# folder of another source
PLACED = '''  inputs.kid.url = "path:./kid";
  inputs.raw = { url = "path:./raw"; flake = false; };
'''
DIR_INPUT = '''  inputs.nfdir = { url = "path:%(inputs)s/nfdir?dir=sub"; flake = false; };
'''
KID_FLAKE = '''{
  inputs.grand.url = "path:./grand";
  outputs = { self, grand }: { grandValue = grand.value; where = self.outPath; };
}
'''
GRAND_FLAKE = '''{ outputs = { self }: { value = "grand"; where = self.outPath; }; }
'''

# an input of its own with an input (shared) that the root's follows
TOOLS_FLAKE = '''{
  inputs.shared.url = "path:%(inputs)s/shared";
  outputs = { self, shared }: {
    lib.describe = name: "tools version %(version)d: ${shared.lib.greeting name}";
  };
}
'''


def draw(rng, inputs_dir, path_strings=False, every_shape=False, without=()):
    """A new fleet of MIN_HOSTS..MAX_HOSTS hosts and MIN_SUB..MAX_SUB sub
    hosts; ``every_shape``: every shape of issue 76 in it from the first
    commit (the outputs in outputs.nix or parts/, each new feature on one
    host at least); ``without``: features (``pos``...) and shapes
    (``imported``, ``parts``, ``toplink``, ``names``, ``follows``) it never
    has (the same draws otherwise)."""
    fleet = Fleet(inputs_dir, path_strings, without)
    fleet.listing = rng.choice(LISTINGS)
    # the shapes first: which features a host may draw depends on them
    fleet.style = rng.choice(STYLES[1:] if every_shape else STYLES)
    if fleet.style in fleet.without:
        fleet.style = ([s for s in STYLES[1:] if s not in fleet.without] + ['inline'])[0] \
            if every_shape else 'inline'
    for shape in ('toplink', 'names', 'follows'):
        setattr(fleet, shape, (every_shape or rng.random() < 0.4) and shape not in fleet.without)
    if fleet.names:
        fleet.odd = dict((n, u'%s, first version\n' % n) for n in ODD_FILES)
        fleet.keys = dict((n, u'ssh-ed25519 AAAA%d %s\n' % (i, n)) for i, n in enumerate(KEYS))
    for _number in range(rng.randint(1, 3)):
        fleet.add_user(rng)
    if every_shape and fleet.names and not any(u in ODD_USERS for u in fleet.admins):
        fleet.users[ODD_USERS[0]] = ['bash', 0]
        fleet.admins.append(ODD_USERS[0])
    for _number in range(rng.randint(MIN_HOSTS, MAX_HOSTS)):
        fleet.hosts[fleet.free_name(rng)] = fleet.new_host(rng)
    if every_shape and fleet.names and not any(n in ODD_HOSTS for n in fleet.hosts):
        fleet.hosts[ODD_HOSTS[0]] = fleet.hosts.pop(rng.choice(sorted(fleet.hosts)))
    for _number in range(rng.randint(MIN_SUB, MAX_SUB)):
        fleet.sub_hosts[fleet.free_name(rng, sub=True)] = fleet.new_host(rng, sub=True)
    for name in sorted(fleet.hosts):
        if rng.random() < 0.5:
            fleet.settings[name] = rng.randrange(10)
    if every_shape:
        for hosts, wanted in ((fleet.hosts, NEW_FEATURES), (fleet.sub_hosts, SUB_ONLY)):
            for feature in fleet.allowed(hosts is fleet.sub_hosts):
                if feature not in wanted:
                    continue
                if not any(feature in h.features for h in hosts.values()):
                    host = hosts[rng.choice(sorted(hosts))]
                    host.features[feature] = fleet.feature_value(rng, feature)
    if rng.random() < 0.7:
        fleet.hosts[rng.choice(sorted(fleet.hosts))].features['self'] = True
    for hosts in (fleet.hosts, fleet.sub_hosts):
        if rng.random() < 0.5:
            name, other = rng.sample(sorted(hosts), 2)
            hosts[name].link_to = other
    _draw_89(rng, fleet, every_shape)
    return fleet


def _draw_89(rng, fleet, every_shape):
    """The shapes of issue 89, drawn after every other draw of the fleet."""
    for shape in ('exports', 'dirty'):
        setattr(fleet, shape, (every_shape or rng.random() < 0.3) and shape not in fleet.without)
    _draw_features(rng, fleet, every_shape, FEATURES_89[:3])
    # drawn after the others: a seed's earlier draws stay as they were
    fleet.placed = (every_shape or rng.random() < 0.3) and 'placed' not in fleet.without
    _draw_features(rng, fleet, every_shape, FEATURES_PLACED)


def _draw_features(rng, fleet, every_shape, features):
    """Each of ``features`` the fleet's shapes allow, on hosts drawn by its
    rate (on one host at least with ``every_shape``)."""
    for feature in features:
        if feature not in fleet.allowed(False):
            continue
        for name in sorted(fleet.hosts):
            if rng.random() < FEATURES[feature]:
                fleet.hosts[name].features[feature] = True
        if every_shape and not any(feature in h.features for h in fleet.hosts.values()):
            fleet.hosts[rng.choice(sorted(fleet.hosts))].features[feature] = True
