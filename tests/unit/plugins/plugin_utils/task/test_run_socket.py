"""How a host reads the run's serving process's words on its unix socket
(plugin_utils/task/_run_socket.py, as _run_asks.py asks), for real: a
socket bound where the process binds its own, a peer that writes the
process's framed messages cut as a busy system may cut them. What a user
relies on: a host reads each word whole and in order however its bytes
arrive, a byte at a time or two words in one read, so a host whose
request was taken knows it and gets its own answer."""

import json
import os
import socket
import struct
import sys
import threading
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _run_asks, _run_socket)

# each wait's bound here; what the tests prove comes well within it
BOUND = 30
# what the process tells a host whose request a wave answered
ANSWER = {'answer': {'answer': {'out_path': '/nix/store/%032d-system-h01' % 7},
                     'opened': False}}


def _frame(data):
    text = json.dumps(data).encode('utf-8')
    return struct.pack('>I', len(text)) + text


class _Peer(object):
    """The process's side of one connection, at a socket bound in
    ``folder``: it reads the host's ask, then writes ``pieces`` (bytes),
    one write each, ``pause`` seconds apart, and closes."""

    def __init__(self, folder, pieces, pause=0.0):
        self.path = os.path.join(folder, 'run-server.sock')
        self.listening = _run_socket.listen(self.path)
        self.listening.settimeout(BOUND)
        self.pieces, self.pause = pieces, pause
        self.asked = []
        self.failed = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            connection, _address = self.listening.accept()
            with connection:
                connection.settimeout(BOUND)
                self.asked.append(_run_socket.receive(connection, BOUND))
                for piece in self.pieces:
                    connection.sendall(piece)
                    time.sleep(self.pause)
        except Exception as exc:  # pylint: disable=broad-except
            self.failed.append(repr(exc))
        finally:
            self.listening.close()

    def joined(self):
        self.thread.join(BOUND)
        assert not self.thread.is_alive(), 'the peer still writes after %ss' % BOUND
        assert not self.failed, self.failed


def _ask(peer):
    return _run_asks.ask(peer.path, 'copy', 'k', 'h01', {'path': 'p'},
                         time.monotonic() + BOUND)


def test_words_cut_into_single_bytes_are_each_read_whole(tmp_path):
    """The process's 'taken' and its answer come a byte a write, a
    moment apart (the host's reads find part of a length, part of a
    text): the host learns its request was taken and reads its answer."""
    stream = _frame({'taken': True}) + _frame(ANSWER)
    peer = _Peer(str(tmp_path), [stream[i:i + 1] for i in range(len(stream))], pause=0.002)
    told = _ask(peer)
    peer.joined()
    assert peer.asked[0]['ask']['host'] == 'h01', peer.asked
    assert (told.taken, told.answer, told.waited) == (True, ANSWER['answer'], False)


@pytest.mark.parametrize('cut', ['whole', 'mid-length', 'mid-text'])
def test_a_word_that_comes_with_the_next_ones_bytes_is_read_right(tmp_path, cut):
    """'taken' and the answer come in one write, or 'taken' with the start
    of the answer (part of its length, or part of its text) and the rest
    a moment later: the bytes read past 'taken' are the answer's, and the
    host reads it whole."""
    first, second = _frame({'taken': True}), _frame(ANSWER)
    at = {'whole': len(second), 'mid-length': 2, 'mid-text': len(second) // 2}[cut]
    pieces = [first + second[:at]] + ([second[at:]] if second[at:] else [])
    peer = _Peer(str(tmp_path), pieces, pause=0.05)
    told = _ask(peer)
    peer.joined()
    assert (told.taken, told.answer, told.waited) == (True, ANSWER['answer'], False)


def test_messages_cut_anywhere_are_read_in_order_a_large_one_too(tmp_path):
    """Three messages, the middle one past a read's usual size (a large
    batch's registration), written in pieces cut across their lengths and
    texts: each is read whole, in order, and the connection's close after
    them is told as the other side gone."""
    large = {'context': ['h%05d' % number for number in range(20000)]}
    words = [{'taken': True}, large, ANSWER]
    stream = b''.join(_frame(word) for word in words)
    cuts = [0, 3, 9, 10, 70000, 70003, 140001, len(stream) - 5, len(stream)]
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(BOUND)

        def write():
            for start, end in zip(cuts, cuts[1:]):
                left.sendall(stream[start:end])
                time.sleep(0.01)
            left.shutdown(socket.SHUT_WR)
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        reader = _run_socket.Reader(right)
        read = [reader.message(BOUND) for _word in words]
        with pytest.raises(_run_socket.SocketGone):
            reader.message(BOUND)
        writer.join(BOUND)
    assert read == words
