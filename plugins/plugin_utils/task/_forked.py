# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A forked process leaves the heap it inherited to its parent.

Every task of every host runs in a process forked from ansible-playbook (an
Ansible worker), and a batch's detached process is forked from a worker.
The fork shares the parent's pages until it writes to them. Python's cyclic
collector writes to every object it walks, so a full collection in a fork
copies every page of the inherited heap, and ansible-playbook's heap grows
with the fleet (its inventory, variables and results): the collections our
actions ran cost 0.6 ms a host at 100 hosts and 3.1 ms at 400 (benchmark
10's deploy, four workers a host). Frozen, the inherited objects are never
walked again; what the fork allocates itself is still collected, and the
frozen objects go with the process when it exits.
"""

import gc
import multiprocessing


def in_forked_worker():
    """Whether this process was started by ``multiprocessing`` (an Ansible
    worker is one of its processes); False in ansible-playbook itself and
    in a test that calls an action directly."""
    return multiprocessing.parent_process() is not None


def freeze_inherited():
    """Move every object this process has now into the collector's
    permanent generation. Only for a process that was just forked and ends
    soon after its work: a long-lived process would keep its garbage."""
    gc.freeze()
