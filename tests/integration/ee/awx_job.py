"""A job's private data dir and ansible-runner kwargs, made as AWX 24.6.1
makes them on its control node (awx/main/tasks/jobs.py: BaseTask.run,
RunJob, RunInventoryUpdate; awx/main/models/credential/__init__.py
CredentialType.inject_credential; awx/main/utils/safe_yaml.py safe_dump;
awx/settings/defaults.py), before ``transmit`` sends them (receptor.py).

    awx_<id>_XXXXXXXX/          (0700, tempfile.mkdtemp in AWX_ISOLATION_BASE_PATH)
      project/                  the project's checkout copied WITHOUT .git
                                (RunProjectUpdate.make_local_copy, AWX 21.5+)
      inventory/hosts           a script printing what the last inventory sync stored
      env/extravars             the template's extra vars, then AWX's awx_*/tower_*
                                variables (strings !unsafe)
      env/cmdline               -u root ... -e @/runner/env/tmpXXXX (the injector's file)
      env/tmpXXXX               files of custom credential types (0600), their
                                extra vars (0400, !unsafe)
      env/settings              job_timeout, suppress_ansible_output, suppress_output_file
      cp/                       ANSIBLE_SSH_CONTROL_PATH_DIR=/runner/cp

The machine credential's key is no file here: it travels in the kwargs
(``ssh_key``) and the worker hands it to ssh-agent through a fifo.
"""

import json
import os
import shutil
import tempfile

import yaml
from ansible_runner.utils import args2cmdline

CONTAINER_ROOT = '/runner'
# awx/settings/defaults.py: every ANSIBLE_* setting goes into each job's
# environment (BaseTask.build_env; django-ansible-base's ANSIBLE_BASE_* too,
# which nothing in a job reads)
SETTINGS_ENV = {'ANSIBLE_HOST_KEY_CHECKING': 'False', 'ANSIBLE_PARAMIKO_RECORD_HOST_KEYS': 'False',
                'ANSIBLE_FORCE_COLOR': 'True', 'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True'}
# awx/main/constants.py
STANDARD_INVENTORY_UPDATE_ENV = {'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True',
                                 'ANSIBLE_INVENTORY_EXPORT': 'True',
                                 'ANSIBLE_VERBOSE_TO_STDERR': 'True',
                                 'ANSIBLE_HOST_PATTERN_MISMATCH': 'error'}
# RunJob.get_password_prompts: a machine credential without passwords answers ''
PASSWORD_PROMPTS = (r'Enter passphrase for .*:\s*?$', r'Bad passphrase, try again for .*:\s*?$',
                    r'BECOME password.*:\s*?$', r'SSH password:\s*?$', r'Password:\s*?$',
                    r'Vault password:\s*?$')
COLLECTION_PATHS = '/runner/requirements_collections:~/.ansible/collections:/usr/share/ansible/collections'


class SafeStringDumper(yaml.SafeDumper):   # awx/main/utils/safe_yaml.py
    def represent_data(self, data):
        if isinstance(data, str):
            return self.represent_scalar('!unsafe', data)
        return super().represent_data(data)


def safe_dump(variables, safe_dict=None):
    """AWX's extra vars YAML: a top-level variable not set, with that value,
    by the job template is written ``!unsafe`` (ALLOW_JINJA_IN_EXTRA_VARS =
    'template'), keys and string values alike."""
    safe_dict = safe_dict or {}
    out = []
    for key, value in variables.items():
        dumper = yaml.SafeDumper if key in safe_dict and safe_dict[key] == value else SafeStringDumper
        out.append(yaml.dump_all([{key: value}], None, Dumper=dumper, default_flow_style=False))
    return ''.join(out)


def write_private_file(private, name, data, sub_dir=None, mode=0o600):
    """BaseTask.write_private_data_file: ``name`` None makes a tempfile."""
    base = os.path.join(private, sub_dir) if sub_dir else private
    os.makedirs(base, mode=0o700, exist_ok=True)
    if name:
        path = os.path.join(base, name)
    else:
        handle, path = tempfile.mkstemp(dir=base)
        os.close(handle)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'w') as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


def to_container_path(path, private):
    return os.path.join(CONTAINER_ROOT, os.path.relpath(path, private))


def new_private_dir(base, job_id, checkout):
    """BaseTask.build_private_data_dir, then the project copied in as
    RunProjectUpdate.make_local_copy copies it since AWX 21.5 (before that,
    a depth-1 clone of the revision on a branch awx_internal/<uuid>): every
    file of the project's checkout, symlinks kept, ``.git`` left out, so Nix
    reads ``flake: ..`` there as ``path:/runner/project``."""
    os.makedirs(base, exist_ok=True)
    private = tempfile.mkdtemp(prefix='awx_%s_' % job_id, dir=base)
    os.chmod(private, 0o700)
    for sub in ('inventory', 'env'):
        os.mkdir(os.path.join(private, sub))
    shutil.copytree(checkout, os.path.join(private, 'project'),
                    ignore=shutil.ignore_patterns('.git'), symlinks=True)
    return private


def inventory_script(stored, host_ids):
    """RunJob's inventory/hosts: a script printing Inventory.get_script_data
    (hostvars and towervars): what the sync stored, as it printed it, plus
    remote_host_*/remote_tower_* of each enabled host."""
    data = json.loads(json.dumps(stored))
    for name, hostvars in data.get('_meta', {}).get('hostvars', {}).items():
        for prefix in ('host', 'tower'):
            hostvars['remote_%s_enabled' % prefix] = 'true'
            hostvars['remote_%s_id' % prefix] = host_ids[name]
    return '#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n' % json.dumps(data)


def inject_file_credential(private, files, extra_vars):
    """A custom credential type's file and extra_vars injectors: each file
    ``{label: content}`` written to env/ (0600); the extra vars (``{name:
    label}``, pointing at a file's path in the container) written !unsafe to
    another env/ file (0400) that the command line loads. Returns the
    ``-e @file`` arguments."""
    paths = {}
    for label, content in files.items():
        path = write_private_file(private, None, content, sub_dir='env')
        paths[label] = to_container_path(path, private)
    variables = dict((name, paths[label]) for name, label in extra_vars.items())
    path = write_private_file(private, None, safe_dump(variables), sub_dir='env', mode=0o400)
    return ['-e', '@%s' % to_container_path(path, private)]


def meta_vars(job_id, template, inventory, project_revision, execution_node=None):
    """UnifiedJob.awx_meta_vars and Job.awx_meta_vars, for both prefixes."""
    meta = {'job_id': job_id, 'job_launch_type': 'manual', 'user_id': 1, 'user_name': 'admin',
            'user_email': '', 'user_first_name': '', 'user_last_name': '',
            'inventory_id': inventory['id'], 'inventory_name': inventory['name'],
            'project_revision': project_revision, 'project_scm_branch': 'main',
            'job_template_id': template['id'], 'job_template_name': template['name']}
    if execution_node:
        meta['execution_node'] = execution_node
    return dict(('%s_%s' % (prefix, key), value) for prefix in ('awx', 'tower')
                for key, value in meta.items())


def settings(private):
    write_private_file(private, 'settings', json.dumps(
        {'job_timeout': 0, 'suppress_ansible_output': True, 'suppress_output_file': True}),
        sub_dir='env')


def job_params(private, job_id, template, inventory, project_revision, stored_inventory, ssh_key,
               credential_args=(), execution_node=None, limit=None):
    """RunJob: the private data dir's files and the kwargs for transmit.
    ``template``'s ``job_type`` (*Run*, or *Check*: ``--check`` first, as
    RunJob.build_args puts it) and ``use_fact_cache`` (*Enable Fact
    Storage*: ansible-runner's ``fact_cache_type='jsonfile'``, the cache in
    ``artifacts/<job id>/fact_cache``) default to a Run job without one."""
    extra = dict(template['extra_vars'])
    extra.update(meta_vars(job_id, template, inventory, project_revision, execution_node))
    write_private_file(private, 'extravars', safe_dump(extra, template['extra_vars']), sub_dir='env')
    args = (['--check'] if template.get('job_type') == 'check' else []) + ['-u', 'root'] + \
        (['-l', limit] if limit else []) + list(credential_args)
    write_private_file(private, 'cmdline', args2cmdline(*args), sub_dir='env')
    os.mkdir(os.path.join(private, 'cp'), 0o700)
    env = dict(SETTINGS_ENV, AWX_PRIVATE_DATA_DIR=private, JOB_ID=str(job_id),
               INVENTORY_ID=str(inventory['id']), PROJECT_REVISION=project_revision,
               ANSIBLE_RETRY_FILES_ENABLED='False', MAX_EVENT_RES='700000',
               AWX_HOST='https://towerhost', ANSIBLE_SSH_CONTROL_PATH_DIR='/runner/cp',
               ANSIBLE_COLLECTIONS_PATHS=COLLECTION_PATHS, ANSIBLE_COLLECTIONS_PATH=COLLECTION_PATHS,
               ANSIBLE_ROLES_PATH='/runner/requirements_roles:~/.ansible/roles:'
                                  '/usr/share/ansible/roles:/etc/ansible/roles')
    hosts = write_private_file(private, 'hosts', inventory_script(stored_inventory, inventory['host_ids']),
                               sub_dir='inventory', mode=0o700)
    settings(private)
    return {'ident': job_id, 'private_data_dir': private, 'playbook': template['playbook'],
            'inventory': hosts, 'passwords': dict.fromkeys(PASSWORD_PROMPTS, ''),
            'suppress_env_files': True, 'envvars': env, 'ssh_key': ssh_key,
            'fact_cache_type': 'jsonfile' if template.get('use_fact_cache') else ''}


def inventory_update_params(private, update_id, source_id, source_path):
    """RunInventoryUpdate for a source "Sourced from a Project": its command
    in the private data dir's ``args`` file (ansible-runner runs it as is)."""
    output = os.path.join(CONTAINER_ROOT, 'artifacts', str(update_id), 'output.json')
    location = os.path.join(CONTAINER_ROOT, 'project', source_path)
    args = ['ansible-inventory', '--list', '--export', '-i', location, '--output', output,
            '--playbook-dir', os.path.dirname(location)]
    write_private_file(private, 'args', ' '.join(args))
    env = dict(SETTINGS_ENV, AWX_PRIVATE_DATA_DIR=private, INVENTORY_SOURCE_ID=str(source_id),
               INVENTORY_UPDATE_ID=str(update_id), **STANDARD_INVENTORY_UPDATE_ENV)
    env['ANSIBLE_COLLECTIONS_PATHS'] = COLLECTION_PATHS + ':/usr/share/automation-controller/collections'
    settings(private)
    return {'ident': update_id, 'private_data_dir': private, 'suppress_env_files': True,
            'envvars': env, 'fact_cache_type': ''}
