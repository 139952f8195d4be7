# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one ``main()`` of the collection's modules.

Each module runs on the controller as the action plugin of the same name;
the module file holds the documentation and hands its argument spec (the one
the action plugin validates against) to ``AnsibleModule`` here, so
ansible-test compares the documentation with the real spec.
"""

from ansible.module_utils.basic import AnsibleModule


def controller_only(name, argument_spec, **validation):
    """Refuse to run as a module: ``name`` is an action plugin (whose base,
    plugin_utils/task/_action.py, validates against the same spec)."""
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **validation)
    module.fail_json(msg='nixdeploy.fleet.%s runs on the controller as an action plugin' % name)
