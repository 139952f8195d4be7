"""A page in a real headless Chromium (Debian's ``chromium``): its DOM after
rendering, a screenshot, and every console message the page caused.

Chromium logs each console message (a script error, a blocked load, a
Content-Security-Policy violation) as an ``INFO:CONSOLE`` line on stderr with
``--enable-logging=stderr``; its own D-Bus and GPU chatter is not such a line.
"""

import os
import re
import shutil
import subprocess
import tempfile

CONSOLE = re.compile(r':CONSOLE[:(]')
BINARIES = ('chromium', 'chromium-browser')


def binary():
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    def __init__(self, dom, console, screenshot):
        self.dom, self.console, self.screenshot = dom, console, screenshot


def _run(args, profile, timeout):
    argv = [binary(), '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
            '--disable-extensions', '--hide-scrollbars', '--user-data-dir=%s' % profile,
            '--enable-logging=stderr', '--v=0'] + args
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError('chromium failed (%s): %s' % (proc.returncode, proc.stderr[-2000:]))
    return proc.stdout, [line for line in proc.stderr.splitlines() if CONSOLE.search(line)]


def render(html_path, screenshot, width=1280, height=1600, timeout=120):
    """Load ``html_path`` twice (DOM, then screenshot) in a throwaway profile."""
    url = 'file://' + os.path.abspath(html_path)
    profile = tempfile.mkdtemp(prefix='nixdeploy-chromium-')
    try:
        dom, console = _run(['--dump-dom', url], profile, timeout)
        _out, more = _run(['--window-size=%d,%d' % (width, height),
                           '--screenshot=%s' % os.path.abspath(screenshot), url], profile, timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return Page(dom, console + more, screenshot)
