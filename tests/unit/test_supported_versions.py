"""The supported ansible-core versions have one source, requires_ansible in
meta/runtime.yml, and the tested ones one each: the two stacks of `make
test` (this machine's Python 3.11 takes the oldest supported release; the
current stack's pin is tests/stack/constraints-current.txt). Every other
place that states them is read here against those, so that none drifts."""

import os
import re

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(*path):
    with open(os.path.join(REPO, *path)) as handle:
        return handle.read()


def minor(version):
    """'2.19.0' or '2.19' -> '2.19'."""
    return '.'.join(version.split('.')[:2])


def supported():
    requires = yaml.safe_load(read('meta', 'runtime.yml'))['requires_ansible']
    match = re.fullmatch(r'>=\s*([\d.]+)', requires.strip())
    assert match, 'requires_ansible is not a plain lower bound: %r' % requires
    return minor(match.group(1))


def current_pin():
    pins = re.findall(r'^ansible-core==([\d.]+)$', read('tests', 'stack', 'constraints-current.txt'),
                      re.M)
    assert len(pins) == 1, pins
    return pins[0]


def requirements_range():
    found = re.findall(r'^ansible-core>=([\d.]+),<([\d.]+)$', read('requirements.txt'), re.M)
    assert len(found) == 1, 'requirements.txt: one line ansible-core>=LOW,<CAP'
    return found[0]


def test_requirements_take_what_is_supported_and_what_is_tested():
    low, cap = requirements_range()
    assert minor(low) == supported()
    tested = tuple(int(x) for x in minor(current_pin()).split('.'))
    assert tested < tuple(int(x) for x in cap.split('.')), (current_pin(), cap)


def test_the_readme_says_what_is_supported_tested_and_capped():
    readme = re.sub(r'\s+', ' ', read('README.md'))
    assert 'Supported: ansible-core %s or later, as `requires_ansible`' % supported() in readme
    assert 'keeps pip below ansible-core %s' % requirements_range()[1] in readme
    tested = re.search(r'Tested: ansible-core ([\d.]+) on Python [\d.]+ with Nix [\d.]+, and '
                       r'ansible-core ([\d.]+) on Python', readme)
    assert tested, 'README.md: no "Tested: ansible-core A on Python ... and ansible-core B"'
    assert tested.groups() == (supported(), minor(current_pin()))


def test_the_docs_that_name_versions_follow_the_sources():
    trouble = re.sub(r'\s+', ' ', read('docs', 'troubleshooting.md'))
    assert ("use ansible-core %s or later (`requires_ansible: '>=%s.0'` in meta/runtime.yml); "
            "%s and %s are tested" % (supported(), supported(), supported(),
                                      minor(current_pin()))) in trouble
    assert '| ansible-core | %s (pinned' % current_pin() in read('docs', 'execution-environment.md')
    semaphore = read('docs', 'semaphore.md')
    assert set(re.findall(r'ANSIBLE_CORE=ansible-core==(\d+\.\d+\.\d+)\b', semaphore)) == {current_pin()}
