"""plugin_utils/host/_host_identity.py: at an address that is not its own, a
host is reached only where its own key answers (``HostKeyAlias`` set to the
name known_hosts holds its key under, ``StrictHostKeyChecking=yes``), on
every path (the probe's ssh, Nix's, Ansible's connection); a key that is not
its own is named. The name is asked of the real ``ssh -G`` and read from
real known_hosts files; the logins themselves are
tests/integration/lab/test_host_identity.py."""

import base64
import hashlib
import hmac
import sys

from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (  # noqa: E402
    _host_identity, _probe, _reached)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (  # noqa: E402
    Host, inventory_places)

LAPTOP_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBqV0tqYLsxrhNwB2qh5Q5x0N4jsGJm4y7mG1oAq3s9K'
DESKTOP_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm5sH8bUm9y1L0hX0b3oZr0M0g7kVQz2eJ3qG5d6n1P'


def known(tmp_path, text):
    path = tmp_path / 'known_hosts'
    path.write_text(text)
    return path


def laptop(path, address='10.0.0.5', port=None, args=''):
    return Host(address, port=port, name='laptop', ssh_common_args=(
        '-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=none -o StrictHostKeyChecking=accept-new'
        ' %s' % (path, args)).strip())


def hashed(name, salt=b'0123456789abcdefghij'):
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return '|1|%s|%s' % (base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def test_the_key_name_is_the_first_address_as_ssh_keys_it(tmp_path):
    path = known(tmp_path, '10.0.0.5 %s\n10.0.0.9 %s\n' % (LAPTOP_KEY, DESKTOP_KEY))
    assert _host_identity.key_name(laptop(path)) == '10.0.0.5'
    # off port 22, ssh keys it with its port
    assert _host_identity.key_name(laptop(path, port=2222)) == '[10.0.0.5]:2222'
    # a HostKeyAlias of the user's wins
    assert _host_identity.key_name(laptop(path, args='-o HostKeyAlias=lap')) == 'lap'


def test_a_key_known_under_the_host_s_name_is_the_one_it_must_answer_with(tmp_path):
    for line in ('laptop %s\n' % LAPTOP_KEY, '%s %s\n' % (hashed('laptop'), LAPTOP_KEY),
                 'other,laptop %s\n' % LAPTOP_KEY):
        assert _host_identity.key_name(laptop(known(tmp_path, line))) == 'laptop', line
    # a pattern is no name; a revoked or CA line holds no key of its own
    for line in ('lap* %s\n' % LAPTOP_KEY, '@revoked laptop %s\n' % LAPTOP_KEY):
        assert _host_identity.key_name(laptop(known(tmp_path, line))) == '10.0.0.5', line


def test_at_a_fallback_address_every_ssh_takes_the_host_s_own_key_first(tmp_path):
    path = known(tmp_path, '10.0.0.5 %s\n' % LAPTOP_KEY)
    home = laptop(path)
    assert home.at('10.0.0.5').key_alias is None
    assert '-o' in home.at('10.0.0.5').ssh_options()
    assert 'HostKeyAlias=10.0.0.5' not in home.at('10.0.0.5').ssh_options()
    fallback = home.at('10.0.0.9')
    proven = ['-o', 'HostKeyAlias=10.0.0.5', '-o', 'StrictHostKeyChecking=yes']
    # first: ssh keeps the first value, the inventory's accept-new loses
    assert fallback.ssh_options()[:4] == proven
    assert fallback.ssh_argv()[1:5] == proven and fallback.ssh_argv()[-2] == '10.0.0.9'
    assert fallback.nix_env()['NIX_SSHOPTS'].startswith(' '.join(proven) + ' ')
    # as ssh reads it: the fallback address is checked as the laptop's own
    conf = fallback.ssh_config()
    assert conf['hostkeyalias'] == ['10.0.0.5'] and conf['stricthostkeychecking'] == ['true']
    # the next hop after a fallback keeps the same alias
    assert fallback.at('10.0.0.7').key_alias == '10.0.0.5'
    assert fallback.at('10.0.0.5').key_alias == '10.0.0.5'


def test_a_refused_key_is_named_by_the_host_known_hosts_says_it_is(tmp_path):
    path = known(tmp_path, '10.0.0.9 %s\nlaptop %s\n' % (DESKTOP_KEY, LAPTOP_KEY))
    said = _host_identity.fingerprint(DESKTOP_KEY)
    # ssh's words at LogLevel DEBUG1 (the last key: a jump host's comes first)
    stderr = ('debug1: Server host key: ssh-ed25519 SHA256:jump\r\n'
              'debug1: Server host key: ssh-ed25519 %s\r\n'
              'No ED25519 host key is known for laptop and you have requested strict checking.\r\n'
              'Host key verification failed.\r\n' % said)
    assert _host_identity.answered_key(stderr) == said
    assert 'debug1' not in _host_identity.without_debug(stderr)
    names = _host_identity.names_of(said, [str(path)])
    assert names == ['10.0.0.9']
    hostvars = {'desktop': {'ansible_host': '10.0.0.9'}, 'laptop': {'ansible_host': '10.0.0.5'},
                'nas': {'ansible_host': '10.0.0.9', 'ansible_port': 2222}}
    places = inventory_places(hostvars)
    assert places['nas'] == ('10.0.0.9', 2222)
    assert _host_identity.owners(places, names) == ['desktop']
    assert _host_identity.refusal('10.0.0.9', 'laptop', names, ['desktop']) == \
        '10.0.0.9 answered with the key of `desktop`, not `laptop`'
    assert _host_identity.refusal('10.0.0.9', 'laptop', names, []) == \
        '10.0.0.9 answered with the key known for 10.0.0.9, not `laptop`'
    assert _host_identity.refusal('10.0.0.9', 'laptop', [], []) == \
        '10.0.0.9 answered with a key not known for `laptop`'
    # the probe's line says it so, and whose it is once the inventory is read
    tried = [_probe.Tried('10.0.0.9', _probe.NOT_ITS_KEY,
                          _host_identity.refusal('10.0.0.9', 'laptop', names, []), 1.0, names)]
    _probe.name_owners('laptop', tried, lambda: places)
    assert _probe.unreachable_message('laptop', tried) == \
        'laptop is unreachable at 10.0.0.9 answered with the key of `desktop`, not `laptop`'
    # known_hosts hashed (Debian's HashKnownHosts yes): the inventory's
    # names and addresses are tried against it
    hashed_file = known(tmp_path, '%s %s\n' % (hashed('10.0.0.9'), DESKTOP_KEY))
    names = _host_identity.names_of(said, [str(hashed_file)])
    assert _host_identity.owners(places, names) == ['desktop']
    assert _host_identity.refusal('10.0.0.9', 'laptop', names, []) == \
        '10.0.0.9 answered with a key known_hosts holds for another host, not `laptop`'
    # a changed key's warning gives the fingerprint without debug lines
    changed = ('@@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n'
               'The fingerprint for the ED25519 key sent by the remote host is\r\n%s.\r\n' % said)
    assert _host_identity.answered_key(changed) == said


def test_the_alias_is_kept_for_the_run_beside_the_address(tmp_path):
    _reached.keep_reached(str(tmp_path), 'laptop', '10.0.0.7', '10.0.0.5')
    assert _reached.reached_as(str(tmp_path), 'laptop') == ('10.0.0.7', '10.0.0.5')
    assert _reached.reached(str(tmp_path), 'laptop') == '10.0.0.7'
    _reached.keep_reached(str(tmp_path), 'm1', '10.0.0.8')
    assert _reached.reached_as(str(tmp_path), 'm1') == ('10.0.0.8', None)
    assert _reached.reached_as(str(tmp_path), 'nobody') == (None, None)


def test_ansible_s_connection_at_a_fallback_checks_the_host_s_own_key(tmp_path):
    context = PlayContext()
    context.remote_addr = '10.0.0.5'
    connection = connection_loader.get('ssh', context, None)
    connection.set_options(var_options={'ansible_host': '10.0.0.5'},
                           direct={'ssh_args': '-o ControlMaster=auto -o ControlPersist=60s',
                                   'host_key_checking': False,
                                   'control_path_dir': str(tmp_path / 'cp')})
    _reached.use_reached(connection, '10.0.0.7', '10.0.0.5')
    _reached.use_reached(connection, '10.0.0.7', '10.0.0.5')  # a later task: once
    command = [c.decode() if isinstance(c, bytes) else c for c in
               connection._build_command('ssh', 'ssh', '10.0.0.7', 'true')]  # pylint: disable=protected-access
    # before Ansible's own StrictHostKeyChecking=no (host_key_checking off)
    assert command[1:5] == ['-o', 'HostKeyAlias=10.0.0.5', '-o', 'StrictHostKeyChecking=yes']
    assert command.count('HostKeyAlias=10.0.0.5') == 1
    assert command.index('StrictHostKeyChecking=yes') < command.index('StrictHostKeyChecking=no')
    # the task's own Host (Nix's ssh, the confirmation's) reads it there
    target = Host.from_connection(connection, {'inventory_hostname': 'laptop'})
    assert target.address == '10.0.0.7' and target.key_alias == '10.0.0.5'
