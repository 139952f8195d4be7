"""http health checks and redirects (issue 43), without a lab: real HTTP
servers on 127.0.0.1 (the target's health endpoint) and on 127.0.0.2 (an
"internal" address the controller can reach and the target should not make
it fetch), each recording every request it gets.

A redirect is the target's answer: it is followed only with
``follow_redirects: same_host`` and then only to the check's own scheme, host
and port; otherwise the 3xx is the answer (the check fails saying where it was
sent, escaped) and the other server is never contacted."""

import http.server
import sys
import threading

import pytest

from tests.collection import collections_path
from tests.unit.local_host import local_host

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _health_kinds  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _health_checks)


class Server:
    """A real HTTP server: path -> (status, headers, body); every request's
    path is kept in ``seen``."""

    def __init__(self, address, answers):
        self.answers, self.seen, self.authorization = answers, [], []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                owner.seen.append(self.path)
                owner.authorization.append(self.headers.get('Authorization'))
                status, headers, body = owner.answers.get(self.path, (404, {}, 'no such path'))
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer((address, 0), Handler)
        self.base = 'http://%s:%d' % (address, self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    """(target, internal): the target's server and an internal one on another
    address, which no test may make the controller contact."""
    internal = Server('127.0.0.2', {'/secret': (200, {}, 'internal: the cloud metadata\n')})
    target = Server('127.0.0.1', {})
    yield target, internal
    target.close()
    internal.close()


def no_target(cmd, sudoable=False, in_data=None):
    raise AssertionError('http checks never run anything on the target')


def run(http, retries=0):
    checks = _health_checks.validate([{'name': 'web', 'retries': retries, 'interval': 0, 'http': http}])
    return _health_checks.run_checks(checks, local_host(no_target), sleep=lambda s: None)


def test_a_redirect_to_another_address_is_the_answer_and_never_followed(servers):
    target, internal = servers
    target.answers['/health'] = (302, {'Location': internal.base + '/secret'}, 'moved\n')
    summary = run({'url': target.base + '/health'}, retries=1)
    assert not summary['ok']
    failed = summary['failed']
    assert failed['detail'] == (
        "HTTP 302 (wanted 200): redirected to '%s/secret', not followed (follow_redirects: none)"
        % internal.base), failed
    assert failed['output'] == 'moved' and 'internal' not in repr(summary)
    assert target.seen == ['/health', '/health'] and internal.seen == []


def test_same_host_follows_redirects_on_the_checks_own_host_only(servers):
    target, internal = servers
    target.answers.update({
        '/moved': (301, {'Location': '/health'}, ''),          # relative: same host
        '/health': (200, {}, 'status: green\n'),
        '/away': (302, {'Location': internal.base + '/secret'}, ''),
        '/port': (302, {'Location': target.base.rsplit(':', 1)[0] + ':1/health'}, ''),
        '/tls': (302, {'Location': target.base.replace('http:', 'https:') + '/health'}, ''),
    })
    summary = run({'url': target.base + '/moved', 'follow_redirects': 'same_host',
                   'body': 'green'})
    assert summary['ok'], summary
    assert target.seen == ['/moved', '/health']
    # another address, another port, another scheme: not the check's host
    for path, where in (('/away', internal.base + '/secret'),
                        ('/port', target.base.rsplit(':', 1)[0] + ':1/health'),
                        ('/tls', target.base.replace('http:', 'https:') + '/health')):
        summary = run({'url': target.base + path, 'follow_redirects': 'same_host'})
        assert summary['failed']['detail'] == (
            "HTTP 302 (wanted 200): redirected to '%s', not followed: not %s "
            "(follow_redirects: same_host)" % (where, target.base)), summary
    assert internal.seen == []
    assert target.seen[2:] == ['/away', '/port', '/tls']


def test_a_check_that_wants_the_redirect_gets_it(servers):
    target, internal = servers
    target.answers['/login'] = (302, {'Location': internal.base + '/secret'}, '')
    for follow in ('none', 'same_host'):
        summary = run({'url': target.base + '/login', 'status': 302, 'follow_redirects': follow})
        assert summary['ok'], summary
    assert internal.seen == []


def test_a_redirect_loop_on_the_same_host_ends(servers):
    target, _internal = servers
    target.answers['/loop'] = (302, {'Location': '/loop'}, '')
    summary = run({'url': target.base + '/loop', 'follow_redirects': 'same_host'})
    assert summary['failed']['detail'].endswith(
        'not followed: more than %d redirects' % _health_kinds.MAX_REDIRECTS)
    assert len(target.seen) == _health_kinds.MAX_REDIRECTS + 1


def test_where_it_was_sent_is_shown_escaped_and_masked(servers):
    target, internal = servers
    # an escape sequence that would clear the operator's screen, and a credential
    location = internal.base.replace('http://', 'http://admin:hunter2@') + '/\x1b[2J\x1b]52;c;eA==\x07'
    target.answers['/health'] = (307, {'Location': location}, '')
    summary = run({'url': target.base + '/health'})
    detail = summary['failed']['detail']
    assert '\x1b' not in summary['msg'] and '\x07' not in summary['msg']
    assert '\\x1b[2J\\x1b]52;c;eA==\\x07' in detail
    assert 'hunter2' not in repr(summary) and 'admin:***@127.0.0.2' in detail
    assert internal.seen == []


def test_follow_redirects_takes_none_or_same_host_only():
    with pytest.raises(_health_checks.CheckError, match='follow_redirects'):
        _health_checks.validate([{'name': 'web', 'http': {'url': 'http://h/', 'follow_redirects': 'all'}}])
    assert _health_checks.validate([{'name': 'web', 'http': {'url': 'http://h/'}}])[0]['http'][
        'follow_redirects'] == 'none'


def test_the_controllers_netrc_login_is_not_sent_to_a_target(servers, tmp_path, monkeypatch):
    """open_url sends the controller's netrc login for the URL's host by
    default: a check must not hand a target the controller's credentials."""
    target, _internal = servers
    netrc = tmp_path / 'netrc'
    netrc.write_text('machine 127.0.0.1 login deployer password controller-secret\n')
    netrc.chmod(0o600)
    monkeypatch.setenv('NETRC', str(netrc))
    target.answers['/health'] = (200, {}, 'ok\n')
    summary = run({'url': target.base + '/health'})
    assert summary['ok'], summary
    assert target.authorization == [None], target.authorization
