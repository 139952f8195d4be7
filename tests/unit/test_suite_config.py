"""The tests' ansible.cfg (tests/suite-ansible.cfg, for runs in a folder with
no ansible.cfg of their own) holds what the repository's ansible.cfg and the
quickstart's recommend, the same values: the suite runs as users are told to
run, and saves the CPU that setting saves them."""

import configparser
import os

from tests.collection import REPO, SUITE_CONFIG, ansible_env
from tests.deploy_fleet import PROJECT_ANSIBLE_CFG
from tests.new_user_fleet import USER_ANSIBLE_CFG


def _defaults(path=None, text=None):
    parser = configparser.ConfigParser()
    if text is None:
        parser.read(path)
    else:
        parser.read_string(text)
    return dict(parser['defaults'])


def test_the_suite_config_says_what_the_shipped_ones_say():
    suite = _defaults(SUITE_CONFIG)
    assert suite, SUITE_CONFIG
    for shipped in (os.path.join(REPO, 'ansible.cfg'), os.path.join(REPO, 'examples', 'ansible.cfg')):
        found = _defaults(shipped)
        assert dict((k, found.get(k)) for k in suite) == suite, shipped
    # the projects the tests make as users do (a new user's, an AWX project's)
    for name, text in (('USER_ANSIBLE_CFG', USER_ANSIBLE_CFG),
                       ('PROJECT_ANSIBLE_CFG', PROJECT_ANSIBLE_CFG)):
        found = _defaults(text=text)
        assert dict((k, found.get(k)) for k in suite) == suite, name


def test_a_folder_with_its_own_ansible_cfg_keeps_it(tmp_path):
    assert ansible_env(cwd=str(tmp_path))['ANSIBLE_CONFIG'] == SUITE_CONFIG
    (tmp_path / 'ansible.cfg').write_text('[defaults]\n')
    assert 'ANSIBLE_CONFIG' not in ansible_env(cwd=str(tmp_path))
    named = ansible_env({'ANSIBLE_CONFIG': '/elsewhere.cfg'}, cwd=str(tmp_path / 'none'))
    assert named['ANSIBLE_CONFIG'] == '/elsewhere.cfg'
