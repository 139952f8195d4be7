"""task/_stream.Service for real: a forked serving process, real files."""

import sys

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stream import Service  # noqa: E402


def echo(requests, put):
    """A wave that answers each host with its request."""
    for host, request in requests.items():
        put(host, {'request': request, 'answer': request})


def test_a_hosts_next_request_gets_its_own_answer_not_the_last_one(tmp_path):
    """The same task asks again for a host (a loop's next item, a host
    whose own request follows the batch's): the answer its previous
    request left must not be taken for this one's, while another host's
    answer stays."""
    service = Service(str(tmp_path), 'eval-own', 'k')
    service.request('h1', 'first', echo)
    service.request('h2', 'other', echo)
    assert service.answer('h1', echo, timeout=60)['answer'] == 'first'
    assert service.answer('h2', echo, timeout=60)['answer'] == 'other'
    again = Service(str(tmp_path), 'eval-own', 'k')
    again.request('h1', 'second', echo)
    assert again.answer('h1', echo, timeout=60)['answer'] == 'second'
    assert again.answer('h2', echo, timeout=60)['answer'] == 'other'
