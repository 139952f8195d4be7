"""Health checks without a lab: validation, retries, time limits and
output. ``command`` and ``unit`` checks run their real sh script here, with
the real ``Host.sh`` over a local shell (what a target does with it);
``http`` checks ask a real HTTP (and HTTPS) server on 127.0.0.1, ``tcp``
checks connect to real sockets on 127.0.0.1."""

import http.server
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
from ansible.errors import AnsibleConnectionFailure

from tests.collection import collections_path
from tests.unit.local_host import local_host, run_here

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _health_kinds  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _health_checks)


class Clock:
    """A clock the checks' sleeps move: no real waiting, no timing."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class Watch(_health_checks.Watch):
    """Keeps what the checks tell: each try, each lost connection."""

    def __init__(self):
        self.tries, self.losses = [], []

    def tried(self, check, number, ok, detail):
        self.tries.append((check['name'], number, ok, detail))

    def lost(self, exc):
        self.losses.append(exc)


def no_target(cmd, sudoable=False, in_data=None):
    raise AssertionError('this check runs nothing on the target')


def checks(*items):
    return _health_checks.validate(list(items))


def run(items, host=None, **kwargs):
    clock = Clock()
    summary = _health_checks.run_checks(checks(*items), host or local_host(),
                                        sleep=clock.sleep, clock=clock.time, **kwargs)
    return summary, clock


# ------------------------------------------------------------------ validation
def test_defaults_are_filled_in():
    valid = checks({'name': 'web', 'http': {'url': 'http://10.0.0.1/health'}},
                   {'name': 'db', 'unit': 'postgresql.service', 'retries': 0},
                   {'name': 'disk', 'command': 'test -w /var', 'interval': 0.5})
    assert valid[0]['http'] == {'url': 'http://10.0.0.1/health', 'status': 200, 'body': None,
                                'validate_certs': True, 'follow_redirects': 'none'}
    assert (valid[0]['retries'], valid[0]['interval'], valid[0]['timeout']) == (3, 2, 10)
    assert valid[1]['retries'] == 0 and valid[2]['interval'] == 0.5
    assert [_health_checks.kind_of(c) for c in valid] == ['http', 'unit', 'command']
    assert _health_checks.validate(None) == []


@pytest.mark.parametrize('items,words', [
    ([{'name': 'x'}], 'one of the following is required: command, http, tcp, unit'),
    ([{'name': 'x', 'command': 'true', 'unit': 'a'}],
     "health check 'x': parameters are mutually exclusive: command|http|tcp|unit"),
    ([{'name': 'x', 'tcp': {'port': 22}, 'http': {'url': 'http://h/'}}],
     "health check 'x': parameters are mutually exclusive: command|http|tcp|unit"),
    ([{'command': 'true'}], 'health check #1: missing required arguments: name'),
    ([{'name': 'x', 'command': 'true', 'retry': 2}], "health check 'x': unknown option retry"),
    ([{'name': 'x', 'http': {'status': 200}}], 'missing required arguments: url'),
    ([{'name': 'x', 'command': 'true', 'retries': 'many'}], 'retries'),
    ([{'name': 'x', 'command': 'true'}, {'name': 'x', 'unit': 'a'}],
     "health check 'x': names must be unique"),
    ([{'name': 'x', 'command': 'true', 'retries': -1}], 'retries must be 0 or more'),
    ([{'name': 'x', 'command': 'true', 'timeout': 0}], 'timeout must be more than 0'),
    ([{'name': 'x', 'command': '  '}], 'command must not be empty'),
    ([{'name': 'x', 'unit': 'a b'}], 'unit must be one unit name'),
    ([{'name': 'x', 'http': {'url': 'ftp://h/'}}], 'http:// or https://'),
    ([{'name': 'x', 'http': {'url': 'http://h/', 'status': 99}}], 'HTTP status code'),
    ([{'name': 'x', 'http': {'url': 'http://h/', 'body': '('}}], 'not a valid regular expression'),
    ([{'name': 'x', 'tcp': {'host': 'db1'}}], 'missing required arguments: port'),
    ([{'name': 'x', 'tcp': {'port': 'ssh'}}], 'port'),
    ([{'name': 'x', 'tcp': {'port': 0}}],
     "health check 'x': tcp.port must be a port number (1 to 65535), got 0"),
    ([{'name': 'x', 'tcp': {'port': 65536}}], 'tcp.port must be a port number'),
    ([{'name': 'x', 'tcp': {'port': 22, 'host': 'db1 -p 23'}}],
     "health check 'x': tcp.host must be a host name or an address, got 'db1 -p 23'"),
    ([{'name': 'x', 'tcp': {'port': 22, 'host': ''}}], 'tcp.host must be a host name'),
    ([{'name': 'x', 'tcp': {'port': 22, 'url': 'http://h/'}}], 'unknown option'),
    ([{'name': ' ', 'command': 'true'}], 'health check #1: name must not be empty'),
    (['true'], 'health check #1 must be a dict'),
    ({'name': 'x'}, 'must be a list'),
])
def test_invalid_checks_are_named(items, words):
    with pytest.raises(_health_checks.CheckError) as info:
        _health_checks.validate(items)
    assert words in str(info.value)


def test_budget_covers_every_try_of_every_check():
    valid = checks({'name': 'a', 'command': 'true'},
                   {'name': 'b', 'unit': 'x', 'retries': 0, 'timeout': 5})
    grace = _health_checks.SESSION_GRACE
    assert _health_checks.budget(valid) == 4 * (10 + grace) + 3 * 2 + (5 + grace)
    assert _health_checks.budget([]) == 0


# ------------------------------------------------------------------ command checks
@pytest.mark.parametrize('shell', ['sh', 'busybox'])
def test_command_check_passes_and_keeps_its_output(shell):
    if not shutil.which(shell):
        pytest.skip('no %s here' % shell)
    host = local_host(run_here(['sh'] if shell == 'sh' else ['busybox', 'sh']))
    summary, clock = run([{'name': 'quoting', 'command': "printf '%s|' \"a'b\" '$HOME' \"c d\""}],
                         host)
    assert summary['ok'] and summary['failed'] is None and summary['not_run'] == []
    result = summary['checks'][0]
    assert result['ok'] and result['tries'] == 1 and result['kind'] == 'command'
    assert result['output'] == "a'b|$HOME|c d|"
    assert clock.sleeps == [] and summary['msg'] == '1 health check passed'


def test_failing_command_is_retried_then_fails_with_its_last_output(tmp_path):
    counter = tmp_path / 'tries'
    command = 'echo try >>%s; n=$(wc -l <%s); echo "attempt $n" >&2; exit 3' % (counter, counter)
    summary, clock = run([{'name': 'app', 'command': command, 'retries': 2, 'interval': 1.5},
                          {'name': 'later', 'command': 'true'}])
    failed = summary['failed']
    assert not summary['ok'] and failed['name'] == 'app' and failed['tries'] == 3
    assert failed['detail'] == 'exit code 3' and failed['output'] == 'attempt 3'
    assert clock.sleeps == [1.5, 1.5]
    assert summary['not_run'] == ['later'] and len(summary['checks']) == 1
    assert summary['msg'] == ("health check 'app' failed after 3 tries: exit code 3 "
                              "(last output: attempt 3)")


def test_command_that_recovers_passes_on_a_later_try(tmp_path):
    flag = tmp_path / 'tries'
    command = 'echo x >>%s; [ "$(wc -l <%s)" -ge 2 ]' % (flag, flag)
    summary, clock = run([{'name': 'warmup', 'command': command}])
    assert summary['ok'] and summary['checks'][0]['tries'] == 2 and clock.sleeps == [2]


def test_a_command_past_its_timeout_is_stopped_with_its_children(tmp_path):
    pids = tmp_path / 'pids'
    command = 'sleep 300 & echo $! >%s; echo $$ >>%s; echo started; wait' % (pids, pids)
    summary, _clock = run([{'name': 'slow', 'command': command, 'retries': 0, 'timeout': 0.4}])
    failed = summary['failed']
    assert failed['detail'] == 'timed out after 0.4s' and failed['output'] == 'started'
    for pid in pids.read_text().split():
        assert not os.path.exists('/proc/%s' % pid) or \
            open('/proc/%s/stat' % pid).read().rsplit(')', 1)[1].split()[0] == 'Z'


def test_long_output_keeps_its_end():
    summary, _clock = run([{'name': 'noisy', 'command': 'seq 1 500; exit 1', 'retries': 0}])
    output = summary['failed']['output'].splitlines()
    assert output == [str(n) for n in range(481, 501)]


def test_an_unreachable_host_fails_the_try_not_the_run():
    def unreachable(cmd, sudoable=False, in_data=None):
        raise AnsibleConnectionFailure('ssh: connect to host 10.0.0.9 port 22: No route to host')

    watch = Watch()
    summary, clock = run([{'name': 'cmd', 'command': 'true', 'retries': 1}],
                         local_host(unreachable), watch=watch)
    failed = summary['failed']
    assert failed['tries'] == 2 and failed['detail'].startswith('no answer from the host: ssh:')
    assert clock.sleeps == [2]
    # each try's lost connection is told: the caller logs in anew
    assert [str(exc) for exc in watch.losses] == [
        'ssh: connect to host 10.0.0.9 port 22: No route to host'] * 2


def test_a_session_past_its_limit_is_a_lost_connection(monkeypatch):
    monkeypatch.setattr(_health_checks, 'SESSION_GRACE', 0)
    watch = Watch()
    summary, _clock = run([{'name': 'cmd', 'command': 'true', 'retries': 0, 'timeout': 0.2}],
                          local_host(lambda cmd, sudoable, in_data: time.sleep(2)), watch=watch)
    assert summary['failed']['detail'] == 'no answer from the host: no answer from the host ' \
        'within 0.2s'
    assert len(watch.losses) == 1


def test_the_session_gets_the_check_timeout_plus_grace():
    host = local_host()
    run([{'name': 'cmd', 'command': 'true', 'timeout': 3}], host)
    assert host.timeouts == [3 + _health_checks.SESSION_GRACE]


# ------------------------------------------------------------------ unit checks
def test_unit_check_asks_systemctl_is_active(tmp_path):
    fake = tmp_path / 'bin' / 'systemctl'
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n[ "$1 $2" = "is-active --" ] || exit 64\n'
                    'case $3 in bad.service) echo failed; exit 3 ;; esac\necho active\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH='%s:%s' % (fake.parent, os.environ['PATH']))
    summary, _clock = run([{'name': 'ok', 'unit': 'sshd.service'},
                           {'name': 'broken', 'unit': 'bad.service', 'retries': 1}],
                          local_host(run_here(env=env)))
    assert [c['ok'] for c in summary['checks']] == [True, False]
    failed = summary['failed']
    assert failed['kind'] == 'unit' and failed['detail'] == 'exit code 3'
    assert failed['output'] == 'failed' and failed['tries'] == 2
    assert _health_kinds.unit_command("x'; reboot") == "systemctl is-active -- 'x'\"'\"'; reboot'"


# ------------------------------------------------------------------ http checks
class Server:
    """A real HTTP server on 127.0.0.1: path -> list of (status, body), the
    last one repeated."""

    def __init__(self, answers, tls=None):
        self.answers, self.seen = answers, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                owner.seen.append((self.path, self.headers.get('User-Agent')))
                queue = owner.answers.get(self.path, [(404, 'no such path')])
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
                data = body.encode()
                self.send_response(status)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(('127.0.0.1', 0), Handler)
        scheme = 'http'
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = 'https'
        self.base = '%s://127.0.0.1:%d' % (scheme, self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def factory(answers, tls=None):
        servers.append(Server(answers, tls))
        return servers[-1]

    yield factory
    for one in servers:
        one.close()


def test_http_status_and_body(server):
    srv = server({'/ok': [(200, 'status: green\n')], '/down': [(500, 'database gone\n')],
                  '/maint': [(503, 'maintenance')]})
    summary, clock = run([
        {'name': 'ok', 'http': {'url': srv.base + '/ok', 'body': 'status: (green|yellow)'}},
        {'name': 'maint', 'http': {'url': srv.base + '/maint', 'status': 503}},
        {'name': 'down', 'http': {'url': srv.base + '/down'}, 'retries': 1, 'interval': 0.1},
    ], local_host(no_target))
    assert [c['ok'] for c in summary['checks']] == [True, True, False]
    failed = summary['failed']
    assert failed['detail'] == 'HTTP 500 (wanted 200)' and failed['output'] == 'database gone'
    assert failed['tries'] == 2 and clock.sleeps == [0.1]
    assert "health check 'down' failed after 2 tries: HTTP 500 (wanted 200)" in summary['msg']
    assert srv.seen[0] == ('/ok', 'nixdeploy.fleet')


def test_http_body_that_does_not_match(server):
    srv = server({'/': [(200, 'status: red')]})
    summary, _clock = run([{'name': 'web', 'retries': 0,
                            'http': {'url': srv.base + '/', 'body': 'green'}}], local_host(no_target))
    assert summary['failed']['detail'] == "HTTP 200 but the body does not match 'green'"


def test_http_that_recovers(server):
    srv = server({'/h': [(502, 'starting'), (502, 'starting'), (200, 'ok')]})
    summary, clock = run([{'name': 'web', 'http': {'url': srv.base + '/h'}}], local_host(no_target))
    assert summary['ok'] and summary['checks'][0]['tries'] == 3 and clock.sleeps == [2, 2]


def test_http_without_a_server_is_no_answer(server):
    srv = server({})
    url = srv.base + '/'
    srv.close()
    summary, _clock = run([{'name': 'web', 'retries': 0, 'http': {'url': url}}], local_host(no_target))
    assert summary['failed']['detail'].startswith('no answer from %s: ' % url)


def test_https_certificates_are_checked_unless_told_otherwise(server, tmp_path):
    cert, key = str(tmp_path / 'cert.pem'), str(tmp_path / 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
                    '-subj', '/CN=127.0.0.1', '-keyout', key, '-out', cert],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    srv = server({'/': [(200, 'ok')]}, tls=(cert, key))
    summary, _clock = run([{'name': 'strict', 'retries': 0, 'http': {'url': srv.base + '/'}}],
                          local_host(no_target))
    assert not summary['ok'] and 'certificate' in summary['failed']['detail'].lower()
    summary, _clock = run([{'name': 'lax', 'retries': 0,
                            'http': {'url': srv.base + '/', 'validate_certs': False}}], local_host(no_target))
    assert summary['ok'], summary


# ------------------------------------------------------------------ tcp checks
class Listener:
    """A port on 127.0.0.1 that accepts connections (and counts them)."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(('127.0.0.1', 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _peer = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def wait_accepted(self, count):
        for _wait in range(50):
            if self.accepted >= count:
                break
            time.sleep(0.05)
        return self.accepted


@pytest.fixture
def listener():
    found = Listener()
    yield found
    found.server.close()


def closed_port():
    """A port on 127.0.0.1 that nothing listens on."""
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_tcp_connects_to_the_hosts_address_by_default(listener):
    port = listener.port
    # the host's address is where Ansible's connection reaches it; nothing runs there
    summary, clock = run([{'name': 'db', 'tcp': {'port': port}}],
                         local_host(no_target, address='127.0.0.1'))
    assert summary['ok'], summary
    result = summary['checks'][0]
    assert result['kind'] == 'tcp' and result['tries'] == 1 and result['output'] == ''
    assert clock.sleeps == [] and listener.wait_accepted(1) == 1


def test_tcp_to_a_closed_port_fails_every_try_then_the_checks():
    port = closed_port()
    summary, clock = run([{'name': 'db', 'retries': 2, 'interval': 0.5,
                           'tcp': {'port': port}},
                          {'name': 'later', 'command': 'true'}],
                         local_host(no_target, address='127.0.0.1'))
    failed = summary['failed']
    assert failed['kind'] == 'tcp' and failed['tries'] == 3 and clock.sleeps == [0.5, 0.5]
    assert failed['detail'] == 'no connection to 127.0.0.1:%d: [Errno 111] Connection refused' \
        % port, failed
    assert summary['not_run'] == ['later']
    assert summary['msg'] == "health check 'db' failed after 3 tries: %s" % failed['detail']


def test_tcp_host_says_where_to_connect_instead(listener):
    port = listener.port
    # the host's own address has nothing on that port; the check's host has
    summary, _clock = run([{'name': 'db', 'retries': 0,
                            'tcp': {'port': port, 'host': '127.0.0.1'}}],
                          local_host(no_target, address='127.0.0.2'))
    assert summary['ok'], summary


def test_tcp_that_is_not_accepted_in_time_fails_with_the_timeout():
    # a listener whose backlog is full: the kernel drops further connections
    # unanswered, so they are never accepted (all on 127.0.0.1)
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(0)
    port = server.getsockname()[1]
    waiting = []
    try:
        for _n in range(8):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(('127.0.0.1', port))
            waiting.append(client)
        time.sleep(0.2)
        summary, _clock = run([{'name': 'db', 'retries': 0, 'timeout': 0.5,
                                'tcp': {'port': port}}], local_host(no_target))
    finally:
        for client in waiting:
            client.close()
        server.close()
    assert summary['failed']['detail'] == 'no connection to 127.0.0.1:%d within 0.5s' % port


def test_tcp_to_an_ipv6_address_shows_it_in_brackets():
    if not socket.has_ipv6:
        pytest.skip('no IPv6 here')
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(('::1', 0))
    except OSError as exc:
        pytest.skip('no ::1 here: %s' % exc)
    port = probe.getsockname()[1]
    probe.close()
    summary, _clock = run([{'name': 'db', 'retries': 0, 'tcp': {'port': port}}],
                          local_host(no_target, address='::1'))
    assert summary['failed']['detail'].startswith('no connection to [::1]:%d: ' % port)


# ------------------------------------------------------------------ reporting
def test_every_try_is_told_and_skipped_says_why():
    watch = Watch()
    run([{'name': 'a', 'command': 'exit 1', 'retries': 1, 'interval': 0}], watch=watch)
    assert watch.tries == [('a', 1, False, 'exit code 1'), ('a', 2, False, 'exit code 1')]
    assert watch.losses == []
    skipped = _health_checks.skipped(checks({'name': 'a', 'command': 'true'},
                                     {'name': 'b', 'unit': 'x'}), 'check mode')
    assert skipped['skipped'] and skipped['ok'] and skipped['not_run'] == ['a', 'b']
    assert skipped['msg'] == '2 health checks not run: check mode'


def test_what_a_try_says_is_shown_escaped_and_masked():
    def lost(cmd, sudoable=False, in_data=None):
        raise AnsibleConnectionFailure('ssh https://admin:hunter2@jump\x1b[2J: refused')

    summary, _clock = run([{'name': 'a', 'command': 'true', 'retries': 0}], local_host(lost))
    assert summary['failed']['detail'] == \
        'no answer from the host: ssh https://admin:***@jump\\x1b[2J: refused'


def test_every_kind_is_a_row_of_the_table():
    """A kind is one row (module_utils/_health_kinds.py): the spec of the
    option and the code that runs the checks take every kind from it."""
    assert _health_kinds.HEALTH_KINDS == ('command', 'http', 'tcp', 'unit')
    for name, kind in _health_kinds.KINDS.items():
        assert _health_kinds.HEALTH_CHECK_SPEC[name] is kind.option
        assert (kind.command is None) != (kind.attempt is None), name
    with open(_health_checks.__file__) as handle:
        source = handle.read()
    assert not [name for name in _health_kinds.HEALTH_KINDS if "'%s'" % name in source]


# ------------------------------------------------------------------ docs = spec
def _same(doc, spec, where):
    assert doc.get('type', 'str') == spec.get('type', 'str'), where
    for key in ('default', 'choices', 'elements'):
        assert doc.get(key) == spec.get(key), (where, key)
    assert bool(doc.get('required')) == bool(spec.get('required')), where
    assert sorted(doc.get('suboptions') or {}) == sorted(spec.get('options') or {}), where
    for name, sub in (spec.get('options') or {}).items():
        _same(doc['suboptions'][name], sub, '%s.%s' % (where, name))


def test_nix_activate_documents_checks_and_reboots_as_its_spec_has_them():
    import yaml
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _specs
    from ansible_collections.nixdeploy.fleet.plugins.modules import nix_activate
    options = yaml.safe_load(nix_activate.DOCUMENTATION)['options']
    for name in ('health_checks', 'reboot', 'reboot_timeout', 'pre_switch_checks'):
        _same(options[name], _specs.ACTIVATE_SPEC[name], name)


def test_a_failed_checks_message_shows_its_last_lines_each_bounded():
    """The message shows the last few lines of the failed try's output,
    escaped, each cut: never a page of a check's output on one line."""
    long_line = 'x' * 500
    output = _health_checks.truncate('first\nsecond\x1b[31m\n%s\nlast\n' % long_line)
    summary = {'failed': {'name': 'web', 'tries': 2, 'detail': 'exit code 1', 'output': output}}
    msg = _health_checks.failure_message(summary)
    shown = msg.split('(last output: ', 1)[1].rstrip(')').split(' | ')
    assert shown[0].startswith('second') and '\x1b' not in msg, msg
    assert shown[1] == 'x' * (_health_checks.SHOWN_CHARS - 3) + '...', shown[1]
    assert shown[2] == 'last' and len(shown) == _health_checks.SHOWN_LINES, shown
