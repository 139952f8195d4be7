"""Store URIs and ssh options from connection vars (pure mapping, no ssh)."""

import sys

import pytest

from tests.collection import collections_path

# _store imports its rules (_host_key_rules) as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (  # noqa: E402
    _host, _host_ssh, _store)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (  # noqa: E402
    AddressError, Host as Target)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (  # noqa: E402
    StorePathError)

KH = '-o UserKnownHostsFile=/lab/known_hosts -o StrictHostKeyChecking=yes'


def test_store_uri_and_env_from_plain_vars():
    target = Target('10.0.0.5', 2222, 'deploy', '/keys/id', KH, '-o Compression=no', name='web1')
    assert target.store_uri() == 'ssh-ng://deploy@10.0.0.5'
    opts = target.nix_env()['NIX_SSHOPTS'].split(' ')
    assert opts[:4] == ['-p', '2222', '-i', '/keys/id']
    # the inventory's own options come before our defaults: ssh keeps the first value
    assert opts.index('UserKnownHostsFile=/lab/known_hosts') < opts.index('BatchMode=yes')
    assert 'Compression=no' in opts and 'StrictHostKeyChecking=yes' in opts
    assert not any('StrictHostKeyChecking=no' in o for o in opts)


def test_remote_program_is_shell_quoted_and_url_encoded():
    target = Target('h', user='app')
    uri = target.store_uri(['sudo', '-n', '--', '/nix/var/nix/profiles/default/bin/nix-daemon'],
                           compress=True)
    assert uri == ('ssh-ng://app@h?remote-program=sudo%20-n%20--%20'
                   '/nix/var/nix/profiles/default/bin/nix-daemon&compress=true')
    odd = Target('h').store_uri(["/opt/my nix/bin/nix-daemon"])
    # a space in the folder survives the remote shell as one word
    assert odd == "ssh-ng://h?remote-program=%27/opt/my%20nix/bin/nix-daemon%27"
    assert Target('h').store_uri('/x;rm -rf /').endswith("%27/x%3Brm%20-rf%20/%27")


@pytest.mark.parametrize('given,bare', [
    ('[2001:db8::7]', '2001:db8::7'), ('2001:db8::7', '2001:db8::7'),
    ('fe80::1%eth0', 'fe80::1%eth0'), ('web1.example.org', 'web1.example.org')])
def test_ipv6_hosts_lose_their_brackets(given, bare):
    # ssh takes "[::1]" literally as a host name; Nix 2.8 passes the URI host to ssh as is
    assert Target(given, user='root').store_uri() == 'ssh-ng://root@%s' % bare


@pytest.mark.parametrize('host', ['-oProxyCommand=x', 'a b', 'h?x=1', 'h/../x', '', 'u@h'])
def test_unsafe_hosts_are_refused(host):
    with pytest.raises(AddressError):
        Target(host, name='bad')


def test_unsafe_user_is_refused():
    with pytest.raises(AddressError, match='unsafe ssh user'):
        Target('h', user='root -oProxyCommand=x')


def test_whitespace_in_ssh_args_is_refused_with_the_reason():
    target = Target('h', ssh_common_args='-o ProxyCommand="ssh -W %h:%p bastion"', name='web1')
    with pytest.raises(AddressError) as err:
        target.nix_env()
    text = str(err.value)
    assert text.startswith('web1:') and 'NIX_SSHOPTS' in text and 'ProxyJump' in text


@pytest.mark.parametrize('args', [
    '-o StrictHostKeyChecking=no', '-oStrictHostKeyChecking=off',
    '-o UserKnownHostsFile=/dev/null', '-o stricthostkeychecking=No',
    '-o StrictHostKeyChecking=false', '-o UserKnownHostsFile=/dev//null',
    '-o UserKnownHostsFile=/dev/./null', '-CoStrictHostKeyChecking=no'])
def test_host_key_checking_cannot_be_turned_off(args):
    with pytest.raises(AddressError, match='host key checking'):
        Target('h', ssh_extra_args=args, name='web1').nix_env()


def test_the_hosts_opt_out_lets_its_own_options_through():
    """nix_host_key_unchecked: the action judged the host and warned; its
    copy's ssh takes the options that leave the key unchecked."""
    args = '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'
    env = Target('h', ssh_extra_args=args, host_key_unchecked=True).nix_env()
    assert 'StrictHostKeyChecking=no' in env['NIX_SSHOPTS']
    conn = FakeConnection({'host': 'h', 'ssh_extra_args': args})
    with pytest.raises(AddressError, match='host key checking'):
        Target.from_connection(conn, {'nix_host_key_unchecked': True},
                               host_key_unchecked=False).nix_env()


def test_the_opt_out_is_the_judgement_on_the_connection_not_the_variable():
    """One read of nix_host_key_unchecked: the action base's judgement
    (judge_host_keys, the option or the templated variable), kept on the
    connection. The variable itself opens nothing; a Target made before the
    judgement (nix_build's) reads it when its options are made."""
    args = '-o StrictHostKeyChecking=no'
    conn = FakeConnection({'host': 'h', 'ssh_extra_args': args})
    early = Target.from_connection(conn, {'nix_host_key_unchecked': True})
    assert not early.host_key_unchecked  # not judged yet: no opt-out
    with pytest.raises(AddressError, match='host key checking'):
        early.nix_env()
    setattr(conn, _host.JUDGED, True)  # judged: unchecked, and the opt-out let it go on
    assert early.host_key_unchecked and 'StrictHostKeyChecking=no' in early.nix_env()['NIX_SSHOPTS']
    assert Target.from_connection(conn, {}).host_key_unchecked
    setattr(conn, _host.JUDGED, False)  # judged checked: the options are checked again
    with pytest.raises(AddressError, match='host key checking'):
        early.nix_env()


def test_an_ssh_config_file_is_read_by_ssh_G(tmp_path):
    """-F names a file that can say anything: what ssh -G reads from it
    for this host decides."""
    config = tmp_path / 'ssh_config'
    config.write_text('Host 10.0.0.*\n  StrictHostKeyChecking no\n')
    with pytest.raises(AddressError, match='host key checking') as err:
        Target('10.0.0.5', ssh_common_args='-F %s' % config, name='web1').nix_env()
    assert str(config) in str(err.value) and 'StrictHostKeyChecking=false' in str(err.value)
    # the same file does not match this host: checked
    Target('10.1.0.5', ssh_common_args='-F %s' % config, name='web2').nix_env()


def test_accept_new_is_allowed():
    env = Target('h', ssh_common_args='-o StrictHostKeyChecking=accept-new').nix_env()
    assert 'StrictHostKeyChecking=accept-new' in env['NIX_SSHOPTS']


class FakeTemplar:
    """Renders '{{ name }}' from a dict: enough to see templar is applied."""

    def __init__(self, variables):
        self.variables = variables

    def template(self, value):
        if isinstance(value, str) and value.startswith('{{'):
            return self.variables[value.strip('{} ')]
        return value


def test_from_hostvars_uses_ansible_names_and_templates():
    hostvars = {'inventory_hostname': 'mac1', 'ansible_host': '{{ addr }}',
                'ansible_ssh_port': 2200, 'ansible_user': 'deploy',
                'ansible_private_key_file': '/k', 'ansible_ssh_common_args': KH,
                'ansible_become': 'yes'}
    target = Target.from_hostvars(hostvars, FakeTemplar({'addr': '192.0.2.4'}))
    assert (target.name, target.address, target.port) == ('mac1', '192.0.2.4', 2200)
    assert target.user == 'deploy'
    assert target.become is True and target.become_user == 'root'
    assert target.private_key_file == '/k'
    assert target.store_uri() == 'ssh-ng://deploy@192.0.2.4'


def test_from_hostvars_defaults_to_inventory_name_and_ssh_config_user():
    target = Target.from_hostvars({'inventory_hostname': 'web2'})
    assert target.store_uri() == 'ssh-ng://web2'
    assert target.nix_env()['NIX_SSHOPTS'].startswith(
        '-o ControlMaster=no -o ControlPath=none -o BatchMode=yes')
    assert target.become is False


class FakeConnection:
    transport = 'ssh'

    def __init__(self, options, become=None):
        self.options = options
        self.become = become
        self._play_context = None

    def get_option(self, name):
        if name not in self.options:
            raise KeyError(name)
        return self.options[name]


class FakeBecome:
    name = 'sudo'

    def get_option(self, name):
        return {'become_user': 'root'}[name]


def test_from_connection_reads_the_ssh_plugin_options():
    conn = FakeConnection({'host': '10.1.1.1', 'port': 22, 'remote_user': 'deploy',
                           'private_key_file': '/k', 'ssh_common_args': KH,
                           'ssh_extra_args': ''}, become=FakeBecome())
    target = Target.from_connection(conn, {'inventory_hostname': 'mac1'})
    assert target.store_uri() == 'ssh-ng://deploy@10.1.1.1'
    assert target.become and target.become_method == 'sudo' and target.name == 'mac1'


def test_from_connection_refuses_non_ssh():
    conn = FakeConnection({})
    conn.transport = 'local'
    with pytest.raises(AddressError, match='not ssh'):
        Target.from_connection(conn, {'inventory_hostname': 'localhost'})


def test_store_paths():
    good = '/nix/store/yp65nwcm3qq6n5j1ccmpgvgxhlxbn14m-nixos-system-h1-1'
    assert _store.is_store_path(good)
    assert _store.store_path_of(good + '/bin/switch-to-configuration') == good
    for bad in ('/nix/store/short-x', good + '/bin', '/tmp/' + good[11:],
                '/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-e', good + ' x',
                good + '\n', good + '\r\n', '\n' + good):
        assert not _store.is_store_path(bad)
    for bad in ('/etc/passwd', good + '\n'):
        with pytest.raises(StorePathError):
            _store.store_path_of(bad)


def test_a_key_path_with_spaces_travels_in_the_uri():
    target = Target('h', user='me', private_key_file='/Users/me/Library/Application Support/k')
    assert target.store_uri() == ('ssh-ng://me@h?ssh-key=/Users/me/Library/'
                                  'Application%20Support/k')
    assert '-i' not in target.nix_env()['NIX_SSHOPTS'].split()
    assert target.ssh_options()[:2] == ['-i', '/Users/me/Library/Application Support/k']


def test_nix_rides_an_open_ssh_master_first():
    target = Target('h', port=2222, ssh_common_args='-o ControlMaster=auto')
    opts = target.nix_env(master='/root/.ansible/cp/0123456789')['NIX_SSHOPTS'].split(' ')
    # ssh keeps the first value of an option: the master's come first
    assert opts[:4] == ['-o', 'ControlPath=/root/.ansible/cp/0123456789', '-o', 'ControlMaster=no']
    assert '-o ControlMaster=auto' in ' '.join(opts[4:])
    # ssh expands % in a ControlPath: a % of the folder's name stays one
    assert target.nix_env(master='/cp/50%x/0123456789')['NIX_SSHOPTS'].startswith(
        '-o ControlPath=/cp/50%%x/0123456789 ')
    # a socket path NIX_SSHOPTS cannot carry: Nix logs in by itself
    assert 'ControlPath=/tmp' not in target.nix_env(master='/tmp/a b/cp')['NIX_SSHOPTS']


def test_the_collections_own_ssh_rides_no_master_it_was_not_given():
    """Without a master the action judged, the copy's, builders' and
    cascade probes' ssh ride none (not one an earlier play opened unchecked,
    not one of the user's ssh config) and leave none: before the inventory's
    own args, since ssh keeps the first value."""
    target = Target('h', port=2222,
                    ssh_common_args='-o ControlPath=/tmp/cm-%C -o ControlMaster=auto')
    opts = target.nix_env()['NIX_SSHOPTS'].split(' ')
    assert opts[2:6] == ['-o', 'ControlMaster=no', '-o', 'ControlPath=none']
    assert opts.index('ControlPath=none') < opts.index('ControlPath=/tmp/cm-%C')
    assert target.ssh_options()[2:6] == list(_host_ssh.NO_MASTER)


@pytest.mark.parametrize('name,expected', [
    ('web1', 'web1'),
    ('../evil', '%2E.%2Fevil'),
    ('a/b', 'a%2Fb'),
    ('.hidden', '%2Ehidden'),
    ('host name', 'host%20name'),
])
def test_file_name_keeps_a_host_name_in_one_file(name, expected):
    assert _store.file_name(name) == expected


def test_file_name_of_a_long_name_stays_short_and_apart():
    one, two = _store.file_name('x' * 300), _store.file_name('x' * 299 + 'y')
    assert len(one) <= _store.MAX_NAME and one != two


def test_remote_program():
    assert _store.remote_program('/nix/var/nix/profiles/default/bin/') == [
        '/nix/var/nix/profiles/default/bin/nix-daemon']
    assert _store.remote_program('/d', True, 'root') == ['sudo', '-n', '--', '/d/nix-daemon']
    assert _store.remote_program('/d', True, 'nix') == ['sudo', '-n', '-u', 'nix', '--',
                                                        '/d/nix-daemon']


def test_a_bad_address_and_a_bad_store_path_are_two_errors():
    # a caller skips a host whose system is no store path (a cascade request);
    # catching that must not also swallow a host whose address is unsafe
    with pytest.raises(AddressError) as err:
        Target('a b', name='bad')
    assert not isinstance(err.value, StorePathError)
    with pytest.raises(StorePathError) as err:
        _store.store_path_of('/etc/passwd')
    assert not isinstance(err.value, AddressError)
