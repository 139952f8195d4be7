# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long a real browser takes to show a nixdeploy report page.

    python -m benchmarks.report_render REPORT.html [--png OUT.png] [--full-png OUT.png] [--runs 3]

Loads the page in Debian's headless ``chromium``, driven over the DevTools
protocol on ``--remote-debugging-pipe`` (fds 3 and 4, NUL-terminated JSON:
no port, no network, no dependency beyond the standard library), in a
throwaway profile, at a desktop viewport (1400x1000 CSS pixels). Each run is
a fresh tab (a new renderer's worth of work, as a reader opening the file);
the figures are the median over the runs, in ms:

  dcl_ms        navigation start -> DOMContentLoaded (the HTML parsed)
  load_ms       navigation start -> load event
  fcp_ms        navigation start -> first contentful paint
  rendered_ms   navigation start -> two animation frames after load (the page drawn)
  layout_ms     Performance.getMetrics LayoutDuration of the load
  style_ms      RecalcStyleDuration
  script_ms     ScriptDuration (the page has no script: this is ~0)
  task_ms       TaskDuration: all the renderer's main-thread work of the load
  cpu_ms        CPU time of Chromium's processes during the load (from /proc, in
                10 ms ticks): on a busy machine the steadier figure

with the page's height and the median height of a host table row (CSS px),
its element and DOM node counts, its size in bytes, the first rows of the
host table, the console messages it caused (a blocked load, a CSP violation:
a report page must cause none) and the Chromium version. With ``png_path``
it saves the first viewport as PNG after the last run (``full_png_path``:
the whole page, which at 1,000 hosts is some 60,000 px tall).

Every ``*_ms`` figure but ``cpu_ms`` is wall-clock time, the renderer's
waits for a core included: on a busy machine they move with its load.
"""

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BINARIES = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')
WIDTH, HEIGHT = 1400, 1000
FIGURES = ('dcl_ms', 'load_ms', 'fcp_ms', 'rendered_ms', 'layout_ms', 'style_ms', 'script_ms',
           'task_ms', 'cpu_ms')
METRICS = {'LayoutDuration': 'layout_ms', 'RecalcStyleDuration': 'style_ms',
           'ScriptDuration': 'script_ms', 'TaskDuration': 'task_ms'}
# what the page says of itself once drawn: navigation timing, paint timing, size
PAGE_FIGURES = r'''
const median = values => values.length ? values.sort((a, b) => a - b)[values.length >> 1] : null;
const frames = new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now()))));
// the paint entry arrives once the frame is presented, after the frames above at times
const paint = new Promise(done => {
  new PerformanceObserver(list => {
    const fcp = list.getEntriesByName('first-contentful-paint')[0];
    if (fcp) done(fcp.startTime);
  }).observe({type: 'paint', buffered: true});
  setTimeout(() => done(null), 10000);
});
Promise.all([frames, paint]).then(([rendered, fcp]) => {
  const nav = performance.getEntriesByType('navigation')[0] || {};
  const rows = Array.from(document.querySelectorAll('#hosts tr[data-host]'));
  return JSON.stringify({
    dcl_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd, fcp_ms: fcp, rendered_ms: rendered,
    height: document.documentElement.scrollHeight, elements: document.getElementsByTagName('*').length,
    rows: rows.length, row_px: median(rows.map(row => row.getBoundingClientRect().height)),
    first_rows: rows.slice(0, 5).map(row => [row.dataset.host, (row.querySelector('.badge') || {}).textContent]),
    first_heading: (document.querySelector('#attention h2') || {}).textContent,
  });
})
'''


class ChromiumMissing(RuntimeError):
    """No Chromium on this machine: the render cannot be measured."""


class ChromiumError(RuntimeError):
    """Chromium failed, or did not answer in time."""


def binary():
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumMissing('no chromium on PATH (looked for %s): install Debian\'s chromium '
                          '(apt-get install chromium) to measure the report render'
                          % ', '.join(BINARIES))


def _high_fd(fd):
    """A copy of ``fd`` numbered 10 or above, so the ``3<&R 4>&W`` of the
    launcher below never overwrites one end with the other."""
    out = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return out


class Browser:
    """One headless Chromium and its DevTools pipe: ``call`` sends a command
    and returns its result; events seen meanwhile are kept in ``events``."""

    def __init__(self, path=None, timeout=120):
        path = path or binary()
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix='nixdeploy-render-')
        self.stderr = tempfile.TemporaryFile()
        to_child, self._to_browser = os.pipe()
        self._from_browser, from_child = os.pipe()
        to_child, from_child = _high_fd(to_child), _high_fd(from_child)
        argv = [path, '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
                '--no-default-browser-check', '--disable-extensions', '--disable-sync',
                '--disable-background-networking', '--disable-component-update',
                '--disable-default-apps', '--mute-audio', '--hide-scrollbars',
                '--user-data-dir=%s' % self.profile, '--window-size=%d,%d' % (WIDTH, HEIGHT),
                '--remote-debugging-pipe', 'about:blank']
        # Chromium reads the protocol on fd 3 and writes it on fd 4; bash puts the
        # pipe ends there (dash takes no fd above 9; only fd numbers are in the
        # script, the argv follows it)
        script = 'exec "$@" 3<&%d 4>&%d %d<&- %d>&-' % (to_child, from_child, to_child, from_child)
        try:
            # its crash database and caches in the throwaway profile, not ~/.config
            env = dict(os.environ, XDG_CONFIG_HOME=self.profile, XDG_CACHE_HOME=self.profile)
            self.proc = subprocess.Popen(['bash', '-c', script, 'bash'] + argv, env=env,
                                         stdin=subprocess.DEVNULL, stdout=self.stderr,
                                         stderr=self.stderr, pass_fds=(to_child, from_child))
        finally:
            os.close(to_child)
            os.close(from_child)
        self._buffer = b''
        self._next_id = 0
        self.events = []

    def call(self, method, session=None, **params):
        self._next_id += 1
        message = {'id': self._next_id, 'method': method, 'params': params}
        if session:
            message['sessionId'] = session
        data = json.dumps(message).encode('utf-8') + b'\0'
        try:
            while data:
                data = data[os.write(self._to_browser, data):]
        except BrokenPipeError:
            raise ChromiumError('chromium exited (%s)%s' % (self.proc.poll(), self._tail())) from None
        while True:
            reply = self._read()
            if reply.get('id') == self._next_id:
                if 'error' in reply:
                    raise ChromiumError('%s: %s' % (method, reply['error'].get('message')))
                return reply.get('result') or {}
            if 'method' in reply:
                self.events.append(reply)

    def wait_event(self, method, session=None):
        """The first event ``method`` (of ``session``) not yet consumed."""
        while True:
            for idx, event in enumerate(self.events):
                if event['method'] == method and (session is None or event.get('sessionId') == session):
                    return self.events.pop(idx)
            reply = self._read()
            if 'method' in reply:
                self.events.append(reply)

    def _read(self):
        deadline = time.monotonic() + self.timeout
        while b'\0' not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise ChromiumError('chromium did not answer within %ds%s' % (self.timeout, self._tail()))
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ChromiumError('chromium closed its DevTools pipe (exit %s)%s'
                                    % (self.proc.poll(), self._tail()))
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b'\0', 1)
        return json.loads(message.decode('utf-8'))

    def _tail(self):
        self.stderr.seek(0)
        text = self.stderr.read().decode('utf-8', 'replace').strip()
        return ': ' + text[-1500:] if text else ''

    def cpu_ticks(self):
        """{pid: user + system CPU ticks} of the browser's processes alive now."""
        used, children = {}, {}
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % entry) as handle:
                    fields = handle.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            # after the command: state, ppid, ... utime and stime are the 12th and 13th
            children.setdefault(int(fields[1]), []).append(int(entry))
            used[int(entry)] = int(fields[11]) + int(fields[12])
        out, todo = {}, [self.proc.pid]
        while todo:
            pid = todo.pop()
            out[pid] = used.get(pid, 0)
            todo.extend(children.get(pid, []))
        return out

    def cpu_ms_since(self, before):
        """CPU the browser's processes used since the ``cpu_ticks()`` ``before``,
        per process: a process that ended meanwhile (the last tab's renderer)
        neither counts nor takes its past from the sum."""
        after = self.cpu_ticks()
        ticks = sum(used - before.get(pid, 0) for pid, used in after.items())
        return ticks * 1000.0 / os.sysconf('SC_CLK_TCK')

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.call('Browser.close')
                except (ChromiumError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            for fd in (self._to_browser, self._from_browser):
                os.close(fd)
            self.stderr.close()
            shutil.rmtree(self.profile, ignore_errors=True)


def _load(browser, url, png_path=None, full_png_path=None):
    """One load of ``url`` in a fresh tab: its figures (and screenshots)."""
    target = browser.call('Target.createTarget', url='about:blank')['targetId']
    session = browser.call('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
    try:
        browser.call('Emulation.setDeviceMetricsOverride', session, width=WIDTH, height=HEIGHT,
                     deviceScaleFactor=1, mobile=False)
        for domain in ('Page', 'Runtime', 'Log'):
            browser.call(domain + '.enable', session)
        browser.call('Performance.enable', session, timeDomain='timeTicks')
        before, cpu = _metrics(browser, session), browser.cpu_ticks()
        navigated = browser.call('Page.navigate', session, url=url)
        if navigated.get('errorText'):
            raise ChromiumError('%s: %s' % (url, navigated['errorText']))
        browser.wait_event('Page.loadEventFired', session)
        figures = json.loads(browser.call('Runtime.evaluate', session, expression=PAGE_FIGURES,
                                          awaitPromise=True, returnByValue=True)['result']['value'])
        after = _metrics(browser, session)
        figures['cpu_ms'] = browser.cpu_ms_since(cpu)
        for name, key in METRICS.items():
            figures[key] = (after.get(name, 0) - before.get(name, 0)) * 1000
        for key in FIGURES:
            figures[key] = None if figures[key] is None else round(figures[key], 1)
        figures['nodes'] = after.get('Nodes')
        figures['console'] = _console(browser, session)
        if png_path:
            _save(browser.call('Page.captureScreenshot', session, format='png')['data'], png_path)
        if full_png_path:
            size = browser.call('Page.getLayoutMetrics', session)['cssContentSize']
            shot = browser.call('Page.captureScreenshot', session, format='png', captureBeyondViewport=True,
                                clip={'x': 0, 'y': 0, 'width': size['width'], 'height': size['height'],
                                      'scale': 1})
            _save(shot['data'], full_png_path)
        return figures
    finally:
        browser.call('Target.closeTarget', targetId=target)
        # events of the closed tab are of no further use
        browser.events = [e for e in browser.events if e.get('sessionId') != session]


def _metrics(browser, session):
    return dict((m['name'], m['value']) for m in browser.call('Performance.getMetrics', session)['metrics'])


def _console(browser, session):
    """Console messages, script errors and Log entries (a CSP violation is one)."""
    out = []
    for event in browser.events:
        if event.get('sessionId') != session:
            continue
        params = event.get('params') or {}
        if event['method'] == 'Log.entryAdded':
            out.append(params['entry'].get('text'))
        elif event['method'] == 'Runtime.consoleAPICalled':
            out.append(' '.join(str(a.get('value')) for a in params.get('args') or []))
        elif event['method'] == 'Runtime.exceptionThrown':
            out.append(params['exceptionDetails'].get('text'))
    return out


def _save(data, path):
    with open(path, 'wb') as handle:
        handle.write(base64.b64decode(data))


def render(html_path, png_path=None, runs=3, full_png_path=None, chromium=None, timeout=120):
    """Load ``html_path`` ``runs`` times; the median figures (ms) and the page's facts.

    Raises ChromiumMissing when no Chromium is installed."""
    if runs < 1:
        raise ValueError('runs must be at least 1')
    path = os.path.abspath(html_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    browser = Browser(chromium, timeout=timeout)
    try:
        version = browser.call('Browser.getVersion')
        # one load not counted: the browser's own start (GPU process, fonts) is not the page's
        _load(browser, 'file://' + path)
        loads = [_load(browser, 'file://' + path,
                       png_path if idx == runs - 1 else None,
                       full_png_path if idx == runs - 1 else None) for idx in range(runs)]
    finally:
        browser.close()
    out = dict((key, _median([load[key] for load in loads])) for key in FIGURES)
    last = loads[-1]
    out.update(runs=runs, loads=[dict((key, load[key]) for key in FIGURES) for load in loads],
               height=last['height'], row_px=last['row_px'], elements=last['elements'],
               nodes=last['nodes'], rows=last['rows'], first_rows=last['first_rows'], first_heading=last['first_heading'],
               console=sorted(set(m for load in loads for m in load['console'])),
               bytes=os.path.getsize(path), viewport='%dx%d' % (WIDTH, HEIGHT),
               chromium=version.get('product'), png=png_path, full_png=full_png_path)
    return out


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.report_render', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('html', help='a nixdeploy-report.html')
    parser.add_argument('--png', help='save the first viewport (%dx%d) as this PNG' % (WIDTH, HEIGHT))
    parser.add_argument('--full-png', help='save the whole page as this PNG')
    parser.add_argument('--runs', type=int, default=3, help='loads to take the median of (3)')
    parser.add_argument('--json', action='store_true', help='print the result as JSON')
    args = parser.parse_args(argv)
    try:
        result = render(args.html, args.png, runs=args.runs, full_png_path=args.full_png)
    except ChromiumMissing as exc:
        sys.exit('report_render: %s' % exc)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print('%s: %d bytes, %d host rows of %s px, %d px tall, %d elements, %s DOM nodes'
          % (args.html, result['bytes'], result['rows'], result['row_px'], result['height'],
             result['elements'], result['nodes']))
    print('%s, viewport %s, median of %d loads:' % (result['chromium'], result['viewport'], result['runs']))
    for key in FIGURES:
        print('  %-12s %8s   (%s)' % (key, result[key],
                                      ', '.join('%s' % load[key] for load in result['loads'])))
    print('first in the host table: %s' % ', '.join('%s (%s)' % tuple(row) for row in result['first_rows']))
    print('console messages: %d%s' % (len(result['console']), ''.join('\n  ' + m for m in result['console'])))
    for label, path in (('screenshot', result['png']), ('full page', result['full_png'])):
        if path:
            print('%s: %s' % (label, path))


if __name__ == '__main__':
    main()
