"""A VM execution node, as AWX 24.6.1 uses one: receptor on the node runs
``ansible-runner worker --private-data-dir=DIR --delete`` as the node's
service user (``awx``, not root; AWXReceptorJob.receptor_params), and the
worker starts the EE with that user's ROOTLESS podman, with what
BaseTask.build_execution_environment_params adds to the job's kwargs:
process isolation, the image, ``--user=root``, DEFAULT_CONTAINER_RUN_OPTIONS
(``--network slirp4netns:enable_ipv6=true``) and the EE's pull policy.

Here the node is this machine: a system user of its own (``nixdeploy-awx``,
made when missing, with a /etc/subuid and /etc/subgid range), the EE image
copied into its podman storage (``podman save | podman load``, once per image
id), and the worker run as that user by ``runuser`` with an ansible-runner of
the node's own (a venv from Debian's python3 with the tests' ansible-runner
version: the tests' venv may hang off root's home, which the user cannot read).
"""

import os
import pwd
import shutil
import subprocess
import sys
import time

from importlib.metadata import version

from tests.lab.lab import users_locked

USER = 'nixdeploy-awx'
HOME = '/var/lib/nixdeploy-awx'
SUBIDS = '300000-365535'   # beside the lab's deploy (100000) and app (165536) ranges
# what a node's podman needs to run rootless (Debian's podman recommends them)
PACKAGES = ('uidmap', 'slirp4netns')
# awx/settings/defaults.py DEFAULT_CONTAINER_RUN_OPTIONS, after BaseTask's '--user=root'
CONTAINER_OPTIONS = ['--user=root', '--network', 'slirp4netns:enable_ipv6=true']
PULL = 'missing'   # the EE's "Only pull the image if not present"
STORAGE_CONF = '[storage]\ndriver = "overlay"\n'
VENV = os.path.join(HOME, 'venv')


def _run(argv, check=False, **kwargs):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=check,
                          universal_newlines=True, stdin=subprocess.DEVNULL, **kwargs)


def _add_user():
    """The node's system user and its subordinate ids (under the users' lock)."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        _run(['useradd', '--system', '--create-home', '--home-dir', HOME, '--shell',
              '/usr/sbin/nologin', USER], check=True)
    for name in ('/etc/subuid', '/etc/subgid'):
        with open(name) as handle:
            if not any(line.startswith(USER + ':') for line in handle):
                flag = '--add-subuids' if name.endswith('uid') else '--add-subgids'
                _run(['usermod', flag, SUBIDS, USER], check=True)


def env(containers_conf):
    """The worker's environment: a service user's, with this machine's podman
    settings (ee/containers.conf: runc, no default ulimits)."""
    return {'HOME': HOME, 'USER': USER, 'LOGNAME': USER, 'LANG': 'C.UTF-8',
            'PATH': os.path.join(VENV, 'bin') + os.pathsep + '/usr/local/bin:/usr/bin:/bin',
            'CONTAINERS_CONF': containers_conf}


def as_user(argv, containers_conf):
    """``argv`` run as the node's user, in its environment only."""
    return ['runuser', '-u', USER, '--', 'env', '-i'] + [
        '%s=%s' % item for item in sorted(env(containers_conf).items())] + list(argv)


def prepare(containers_conf):
    """The node's user, its subordinate ids and podman storage; returns
    (None, seconds) or (the reason rootless podman cannot run, seconds)."""
    started = time.time()
    missing = [p for p in PACKAGES if _run(['dpkg-query', '-W', '-f=${db:Status-Status}', p])
               .stdout.strip() != 'installed']
    if missing:
        proc = _run(['apt-get', 'install', '-y', '-q'] + missing,
                    env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))
        if proc.returncode != 0:
            return 'apt-get install %s: %s' % (' '.join(missing), proc.stderr[-500:]), 0
    with users_locked():   # beside a lab's useradd or its copy of /etc
        _add_user()
    config = os.path.join(HOME, '.config', 'containers')
    os.makedirs(config, exist_ok=True)
    with open(os.path.join(config, 'storage.conf'), 'w') as handle:
        handle.write(STORAGE_CONF)   # native overlay (kernel 5.13+); podman's default here is vfs
    for path in (os.path.join(HOME, '.config'), config, os.path.join(config, 'storage.conf')):
        shutil.chown(path, USER, USER)
    proc = _run(as_user(['podman', 'info', '--format', '{{.Host.Security.Rootless}}'],
                        containers_conf))
    if proc.returncode != 0 or proc.stdout.strip() != 'true':
        return 'rootless podman as %s: %s' % (USER, proc.stderr.strip()[-800:]), 0
    return _runner_venv(), round(time.time() - started, 1)


def _runner_venv():
    """The node's ansible-runner (root's, readable by all: the worker needs
    no ansible-core, the playbook runs in the EE)."""
    wanted = version('ansible-runner')
    runner = os.path.join(VENV, 'bin', 'ansible-runner')
    if os.path.exists(runner) and _run([runner, '--version']).stdout.strip() == wanted:
        return None
    python = shutil.which('python3', path='/usr/bin:/bin') or sys.executable
    proc = _run([python, '-m', 'venv', '--clear', VENV])
    if proc.returncode == 0:
        proc = _run([os.path.join(VENV, 'bin', 'pip'), 'install', '-q', 'ansible-runner==%s' % wanted])
    return "the node's ansible-runner: %s" % proc.stderr[-800:] if proc.returncode else None


def load_image(image, containers_conf):
    """The EE in the node user's storage, copied from root's when its id
    differs (a node pulls it from a registry; this one has none). Returns
    the seconds the copy took (0 when it was there)."""
    wanted = _run(['podman', 'image', 'inspect', '--format', '{{.Id}}', image],
                  env=dict(os.environ, CONTAINERS_CONF=containers_conf)).stdout.strip()
    have = _run(as_user(['podman', 'image', 'inspect', '--format', '{{.Id}}', image],
                        containers_conf)).stdout.strip()
    if wanted and wanted == have:
        return 0.0
    started = time.time()
    save = subprocess.Popen(['podman', 'save', image], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, CONTAINERS_CONF=containers_conf))
    load = subprocess.run(as_user(['podman', 'load', '-q'], containers_conf), stdin=save.stdout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    save.stdout.close()
    save_err = save.stderr.read().decode()
    save.wait()
    if save.returncode or load.returncode:
        raise AssertionError('podman save | podman load as %s: %s %s'
                             % (USER, save_err, load.stderr.decode()))
    # the old copy (another image id) goes, not to fill the node's disk
    _run(as_user(['podman', 'image', 'prune', '-f'], containers_conf))
    return round(time.time() - started, 1)


def ee_params(image):
    """BaseTask.build_execution_environment_params for a job on a VM node."""
    return {'container_image': image, 'process_isolation': True,
            'process_isolation_executable': 'podman',
            'container_options': CONTAINER_OPTIONS + ['--pull=%s' % PULL]}


def job_dir(name):
    """Where the node's worker unpacks the job (AWX passes the control node's
    path; the node is another machine, here it is another folder)."""
    path = os.path.join(HOME, 'jobs')
    if not os.path.isdir(path):
        os.makedirs(path)
        shutil.chown(path, USER, USER)
    return os.path.join(path, name)


def worker(private_dir, containers_conf):
    """receptor's ``ansible-runner worker`` command on an execution node."""
    return as_user([os.path.join(VENV, 'bin', 'ansible-runner'), 'worker',
                    '--private-data-dir=%s' % private_dir, '--delete'], containers_conf)
