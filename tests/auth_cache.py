"""A binary cache over http that asks for a login (basic auth), for the tests
of cache credentials (tests/unit/plugins/plugin_utils/nix/test_netrc.py,
tests/integration/test_cache_credentials.py).

It serves a folder as Nix's HTTP binary cache client reads one (GET, HEAD)
and stores what Nix uploads (PUT), in a thread of the test process (so no
process's argv ever holds its password), and records every request with the
login it came with. A request without the right login gets 401.
"""

import base64
import http.server
import os
import threading


class AuthCache:
    """``with AuthCache(folder, 'user', 'PASSWORD', address) as cache:``
    ``cache.url`` (no login), ``cache.url_with_login``, ``cache.requests``
    ([(method, path, login or None, status)])."""

    def __init__(self, folder, user, password, address='127.0.0.1'):
        self.folder = folder
        self.user, self.password, self.address = user, password, address
        self.requests = []
        self._server = self._thread = None
        os.makedirs(folder, exist_ok=True)

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        return 'http://%s:%d' % (self.address, self.port)

    def url_with(self, user, password):
        return 'http://%s:%s@%s:%d' % (user, password, self.address, self.port)

    @property
    def url_with_login(self):
        return self.url_with(self.user, self.password)

    def logins(self):
        """The logins the requests came with (None: none)."""
        return set(login for _m, _p, login, _s in self.requests)

    def served(self, status=200):
        return [path for _m, path, _l, code in self.requests if code == status]

    def __enter__(self):
        cache = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def _login(self):
                header = self.headers.get('Authorization') or ''
                if not header.startswith('Basic '):
                    return None
                try:
                    return base64.b64decode(header[6:]).decode('utf-8')
                except ValueError:
                    return '(unreadable)'

            def _answer(self, body=None, status=200):
                login = self._login()
                if login != '%s:%s' % (cache.user, cache.password):
                    status, body = 401, b'login required\n'
                cache.requests.append((self.command, self.path, login, status))
                self.send_response(status)
                if status == 401:
                    self.send_header('WWW-Authenticate', 'Basic realm="cache"')
                self.send_header('Content-Length', str(len(body or b'')))
                self.end_headers()
                if body and self.command != 'HEAD':
                    self.wfile.write(body)

            def _file(self):
                name = os.path.normpath(self.path.split('?')[0].lstrip('/'))
                if name.startswith('..') or os.path.isabs(name):
                    return None
                return os.path.join(cache.folder, name)

            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self._file()
                if self._login() == '%s:%s' % (cache.user, cache.password) and (
                        not path or not os.path.isfile(path)):
                    return self._answer(b'', 404)
                body = b''
                if path and os.path.isfile(path):
                    with open(path, 'rb') as handle:
                        body = handle.read()
                return self._answer(body)

            do_HEAD = do_GET

            def do_PUT(self):  # noqa: N802
                length = int(self.headers.get('Content-Length') or 0)
                data = self.rfile.read(length)
                path = self._file()
                if path and self._login() == '%s:%s' % (cache.user, cache.password):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, 'wb') as handle:
                        handle.write(data)
                return self._answer(b'')

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer((self.address, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
