"""Host key checking on, as a user of AWX, ansible-runner, ansible-navigator or
Semaphore turns it on: ``ansible_host_key_checking: true`` in the inventory's
group_vars, a host variable, which beats the ``ANSIBLE_HOST_KEY_CHECKING=False``
that ansible-runner puts into every job's environment (AWX users cannot change
that environment; ansible.cfg loses to it). The collection refuses a host whose
key ssh does not check, so these jobs deploy only with it.
"""

import json
import os

CHECKING_ON = {'ansible_host_key_checking': True}


def check_host_keys(group_vars_file):
    """Add ``ansible_host_key_checking: true`` to a group_vars file (JSON,
    as tests/deploy_fleet.py writes them); returns its variables."""
    with open(group_vars_file) as handle:
        variables = json.load(handle)
    variables.update(CHECKING_ON)
    with open(group_vars_file, 'w') as handle:
        json.dump(variables, handle, indent=2)
    return variables


def runner_env_as_awx(private):
    """An ansible-runner private data dir's env/envvars without
    ANSIBLE_HOST_KEY_CHECKING, as AWX writes it: ansible-runner then sets it
    to False for the job."""
    path = os.path.join(private, 'env', 'envvars')
    with open(path) as handle:
        env = json.load(handle)
    env.pop('ANSIBLE_HOST_KEY_CHECKING', None)
    with open(path, 'w') as handle:
        json.dump(env, handle)
    return env
