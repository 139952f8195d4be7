# nixdeploy.fleet: `make demo` and `make test` as root on a fresh Debian 12 machine.
# Both install what they need themselves (`make deps`).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Debian's own interpreter (package python3): built with profile-guided
# optimisation, it takes about 15% less CPU for the suite than one compiled
# without it (pyenv's, first on PATH on some machines), and it is the Python
# of the stack the suite says it tests (`make versions`).
PYTHON ?= /usr/bin/python3
VENV ?= $(CURDIR)/.venv
# pip constraints of this stack (the current stack pins what it was tested with)
CONSTRAINTS ?=
VENV_STAMP := $(VENV)/.requirements.stamp
# ansible-test, ansible-lint and molecule call ansible-* by name: find the venv's.
export PATH := $(VENV)/bin:$(PATH)
# Python may keep compiled bytecode (pytest's rewritten test modules among it):
# with PYTHONDONTWRITEBYTECODE set, each of the suite's pytest workers compiles
# every test module again, about 6 CPU-seconds a worker and run.
unexport PYTHONDONTWRITEBYTECODE

# System packages: nix and ssh for deploying, the rest for the lab (namespaces,
# bridge, tc, per-host sshd and busybox-built systems), the sanity tests, the
# report test (headless chromium renders the HTML report) and the docs site
# (pandoc turns docs/'s Markdown guides into its pages).
APT_PACKAGES := nix-bin openssh-server openssh-client iproute2 busybox-static sudo \
	python3 python3-venv git make ca-certificates shellcheck chromium fonts-dejavu-core \
	debootstrap systemd-container pandoc strace

DEMO_NAME ?= demo
DEMO_HOSTS ?= 6

.PHONY: help deps apt-deps venv check generate test test-here test-here-suite test-here-checks test-current current-deps versions unit sanity \
	lint molecule docs demo demo-current demo-down bench faults mutations chaos eval-diff clean importer-venv changelog-lint galaxy-import release \
	coverage

help:
	@echo 'make try     throwaway lab hosts and a fleet folder laid out as docs/quickstart.md'"'"'s,'
	@echo '             (.lab/try; TRY_DIR, TRY_HOSTS) to run its commands in, as root; make try-down'
	@echo 'make demo    bring up a $(DEMO_HOSTS)-host lab fleet and deploy to it'
	@echo 'make check   the unit tests and one mixed lab fleet, in minutes (root for the lab)'
	@echo 'make generate  rewrite the role spec, defaults, doc fragment and docs/roles.md from the option table'
	@echo 'make test    unit + lab integration tests, ansible-test sanity, ansible-lint, molecule,'
	@echo '             on this machine stack (test-here) and a current one (test-current)'
	@echo 'make deps    apt packages (as root) and the virtualenv at .venv'
	@echo 'make test-busy  test-here with the cores kept busy ($(BUSY_LOOPS) CPU-bound loops beside it)'
	@echo 'make docs    the documentation site (antsibull-docs, Sphinx) into tests/output/docs/build/html'
	@echo 'make unit | sanity | lint | molecule | bench | faults | chaos | demo-current | demo-down | clean'
	@echo 'make coverage  line coverage of plugins/ across the suite'"'"'s processes (COVERAGE_ARGS)'
	@echo 'make mutations  each deliberate fault of tests/mutations/faults.yml caught by its tests? (MUTATIONS_ARGS)'
	@echo 'make changelog-lint | galaxy-import   the release checks (in test-here-checks)'
	@echo 'make release VERSION=x.y.z   changelog, version, tarball in dist/, Galaxy import check'

deps: apt-deps venv

# apt only when something is missing, so repeated runs stay offline and fast.
apt-deps:
	@missing=$$(for pkg in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${db:Status-Status}' "$$pkg" 2>/dev/null | grep -qx installed || echo "$$pkg"; \
	done); \
	if [ -z "$$missing" ]; then \
		echo 'apt packages: all present'; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "missing apt packages (run as root):" $$missing >&2; exit 1; \
	else \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update; \
		apt-get install -y $$missing; \
	fi

venv: $(VENV_STAMP)

# Rebuilt from scratch whenever a requirements file changes, or when the venv
# was made from another interpreter than $(PYTHON).
VENV_MADE_FROM = $(shell sed -n 's/^executable = //p' $(1)/pyvenv.cfg 2>/dev/null)
VENV_REBUILD = $(if $(wildcard $(1)/pyvenv.cfg),$(if $(filter $(realpath $(PYTHON)),$(call VENV_MADE_FROM,$(1))),,FORCE))
.PHONY: FORCE
FORCE:
$(VENV_STAMP): requirements.txt requirements-test.txt $(CONSTRAINTS) $(call VENV_REBUILD,$(VENV)) | apt-deps
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-test.txt \
		$(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	touch $@

# The whole suite on two stacks: this machine's (Debian 12: Nix 2.8, Python 3.11,
# ansible-core 2.19, OpenSSH 9.2) and a current one (a Debian unstable tree entered
# as its own mount namespace by tests/stack/tree.sh: its Nix, Python and OpenSSH,
# ansible-core pinned in tests/stack/constraints-current.txt).
# First, beside each other: the current stack's tree (current-deps), the
# execution environment image (make ee; both about 3.5 minutes from nothing,
# seconds once made) and this machine's part of the fault cases, which need
# neither. The tree comes before either stack's suite: this machine's lab gives
# some hosts its Nix (a mixed fleet). Then the two stacks run at the same time
# (their labs, stores and temp folders are apart; most of a lab test is
# waiting on hosts): this machine's output streams, the current stack's log
# follows when both are done. The current stack's track (no 100-host scale
# run, no execution environment, no systemd hosts, no lab test marked
# here_only) also runs the parts of this machine's checks that share no lab
# with its suite (the scale run, in a scale lab slot of its own, the docs site,
# the other part of the fault cases, sanity, lint), one after the other, while
# this machine's suite still runs, so that both tracks end about together (the
# machine's two cores stay busy to the end). The EE tests in this machine's
# suite use the image.
CURRENT_LOG := $(CURDIR)/tests/output/test-current.log
EE_LOG := $(CURDIR)/tests/output/ee-build.log
DEPS_LOG := $(CURDIR)/tests/output/current-deps.log
# The suite's own accounting (tests/module_cpu.py, tests/suite_cost.py): each
# pytest run of `make test` writes its modules' CPU and wall seconds to
# $(COST)-<run>.json, and `make test` ends with their table.
COST := tests/output/cost
COST_RUNS := here here-checks faults faults-checks current here-steps current-steps
# The steps that are not pytest runs (sanity, lint, Molecule, the image, the
# tree) are counted too (tests/step_cost.py), in $(COST)-<run>.json, run
# here-steps or current-steps: STEP_COST,run,name then the command (env: it
# may begin with VAR=value).
STEP_COST = $(VENV)/bin/python -m tests.step_cost $(COST)-$(1).json $(2) -- env

test: deps
	@mkdir -p $(dir $(CURRENT_LOG))
	@rm -f $(foreach run,$(COST_RUNS),$(COST)-$(run).json)
	@echo "== make ee and current-deps run beside this machine's part of the fault cases; their logs: $(EE_LOG), $(DEPS_LOG)"
	@$(call STEP_COST,here-steps,ee) $(MAKE) --no-print-directory ee >$(EE_LOG) 2>&1 & ee=$$!; \
	$(call STEP_COST,current-steps,current-deps) $(MAKE) --no-print-directory current-deps \
	  >$(DEPS_LOG) 2>&1 & tree=$$!; \
	$(MAKE) --no-print-directory here-faults-first & faults=$$!; \
	deps=0; wait $$tree || deps=$$?; \
	other=; if [ $$deps -eq 0 ]; then \
	  { cur=0; $(MAKE) --no-print-directory test-current || cur=$$?; \
	    echo "== test-current exit $$cur; this machine's checks and its part of the fault cases:"; \
	    checks=0; $(MAKE) --no-print-directory test-here-checks HERE_CHECKS_FAULTS=here-faults-checks-part || checks=$$?; \
	    echo "== test-here-checks exit $$checks"; \
	    [ $$cur -eq 0 ] && [ $$checks -eq 0 ]; } >$(CURRENT_LOG) 2>&1 & other=$$!; \
	fi; \
	early=0; wait $$faults || early=$$?; \
	built=0; wait $$ee || built=$$?; \
	echo "== current-deps exit $$deps:"; cat $(DEPS_LOG); \
	echo "== make ee exit $$built:"; cat $(EE_LOG); \
	here=0; if [ $$built -eq 0 ] && [ $$deps -eq 0 ]; then \
	  echo "== test-current, then this machine's checks and the rest of the fault cases, run beside this machine's suite; their log: $(CURRENT_LOG)"; \
	  $(MAKE) --no-print-directory test-here-suite || here=$$?; \
	else here=1; echo "== test-here-suite not run: make ee or current-deps failed (above)"; fi; \
	rest=0; if [ -n "$$other" ]; then wait $$other || rest=$$?; \
	  echo "== test-current and test-here-checks:"; cat $(CURRENT_LOG); \
	else rest=1; echo "== test-current and test-here-checks not run: current-deps failed (above)"; fi; \
	$(PYTHON) -m tests.suite_cost $(foreach run,$(COST_RUNS),$(COST)-$(run).json) || true; \
	echo "== this machine's first fault cases exit $$early, test-here-suite exit $$here, test-current and test-here-checks (and their fault cases) exit $$rest"; \
	[ $$early -eq 0 ] && [ $$here -eq 0 ] && [ $$rest -eq 0 ]

# The fault cases make test runs first, beside the image and the tree: they
# need neither (test_chaos_seeds and test_partial_failure use this machine's
# Nix on every host). Timestamped as the other steps.
.PHONY: here-faults-first
here-faults-first:
	$(call STEP,this machine's first part of the fault cases)
	$(MAKE) --no-print-directory here-faults-suite-part
	$(call STEP,this machine's first part of the fault cases done)

# This machine's stack: everything, the execution environment, fault cases and
# Molecule included (ee: seconds when `make test` built the image already).
# `make test` runs its two parts apart: the suite (with the lab, the
# execution environment and Molecule) and the checks (the 100-host scale run,
# with a lab of its own, the deploy of real-size systems, the docs site,
# sanity, lint), and the fault cases in two parts (above and below).
test-here: test-here-suite test-here-checks

# Each step's start time is printed (STEP), for planning the suite's time.
STEP = @echo "== $$(date -u +%T) $(1)"
test-here-suite: deps
	$(MAKE) --no-print-directory versions
	$(MAKE) --no-print-directory ee
	$(call STEP,this machine's suite)
	$(MAKE) --no-print-directory unit UNIT_MARKERS='not scale and not docsite and not real_size' JUNIT=here \
		MODULE_CPU=$(COST)-here.json
	$(call STEP,molecule)
	$(call STEP_COST,here-steps,molecule) $(MAKE) --no-print-directory molecule
	$(call STEP,this machine's suite done)

# The fault cases that run in minutes (the slow ones: make faults).
# FAULTS_RUN names the run in the cost table; FAULTS_FILES, what it runs.
FAULTS_RUN ?= faults
.PHONY: here-faults
here-faults: deps
	$(MAKE) --no-print-directory faults FAULTS_MARKERS='faults and not slow' \
		MODULE_CPU=$(COST)-$(FAULTS_RUN).json

# make test splits the fault cases in two, so that neither side waits idle
# for the other: the checks' side runs the modules below after its own work;
# every other module runs first, while the image and the tree are made (a new
# fault module is run there by default).
FAULTS_CHECKS_PART := tests/faults/test_target_faults.py tests/faults/test_bad_input.py
.PHONY: here-faults-suite-part here-faults-checks-part
here-faults-suite-part:
	$(MAKE) --no-print-directory here-faults \
		FAULTS_FILES='tests/faults $(foreach f,$(FAULTS_CHECKS_PART),--ignore=$(f))'
here-faults-checks-part:
	$(MAKE) --no-print-directory here-faults FAULTS_FILES='$(FAULTS_CHECKS_PART)' \
		FAULTS_RUN=faults-checks

# The docs site (marker docsite: lint, build, links, two pages in chromium,
# about 25 s) is built once, here, beside the scale run; the deploy of
# real-size systems (marker real_size) runs here too, on the worker the docs
# site leaves free while the scale run holds the other: the checks take no
# longer, and the suite's side, the longer one, is shorter by it.
# HERE_CHECKS_FAULTS: the fault cases run here (make test: its checks' part,
# here-faults-checks-part; empty: none).
HERE_CHECKS_FAULTS ?= here-faults
test-here-checks: deps
	$(call STEP,scale run and docs site)
	$(MAKE) --no-print-directory unit UNIT_MARKERS='scale or docsite or real_size' \
		MODULE_CPU=$(COST)-here-checks.json
	$(if $(HERE_CHECKS_FAULTS),$(call STEP,$(HERE_CHECKS_FAULTS)))
	$(if $(HERE_CHECKS_FAULTS),$(MAKE) --no-print-directory $(HERE_CHECKS_FAULTS))
	$(call STEP,sanity)
	$(call STEP_COST,here-steps,sanity) $(MAKE) --no-print-directory sanity
	$(call STEP,lint)
	$(call STEP_COST,here-steps,lint) $(MAKE) --no-print-directory lint
	$(call STEP,changelog and Galaxy import)
	$(call STEP_COST,here-steps,changelog-and-galaxy-import) \
		$(MAKE) --no-print-directory changelog-lint galaxy-import
	$(call STEP,this machine's checks done)

# This machine's stack (test-here) on a busy machine: BUSY_LOOPS CPU-bound
# loops run beside it and are stopped by their pids at the end, or after
# BUSY_TIMEOUT seconds, which also stop the run (tests/busy.py; docs/lab.md,
# "Checking the suite on a busy machine").
BUSY_LOOPS ?= 2
BUSY_TIMEOUT ?= 10800
.PHONY: test-busy
test-busy: deps
	$(PYTHON) -m tests.busy --loops $(BUSY_LOOPS) --timeout $(BUSY_TIMEOUT) -- \
		$(MAKE) --no-print-directory test-here

# The current stack: the unit and lab suite, sanity and lint, inside the tree
# (made once, about 3 minutes; kept in $(CURRENT_TREE)).
CURRENT_TREE ?= /var/lib/nixdeploy-stack/sid
CURRENT_VENV := $(CURDIR)/.venv-current
CURRENT_CONSTRAINTS := tests/stack/constraints-current.txt
IN_TREE = NIXDEPLOY_TREE=$(CURRENT_TREE) tests/stack/tree.sh run
CURRENT_MAKE = $(IN_TREE) make --no-print-directory VENV=$(CURRENT_VENV) \
	CONSTRAINTS=$(CURRENT_CONSTRAINTS)

# The 100-host scale run (marker scale) runs on this machine's stack only: in
# the tree's mount namespace the kernel refuses the scale lab's namespace
# files (unshare --mount=FILE: Invalid argument).
# here_only (pytest.ini): lab tests of the lab itself, or of the collection's
# own logic whose Nix, ansible-core and OpenSSH calls the module tests already
# reach on this stack, and the unit modules of tests/stacks.py (no program
# started, no library whose version differs by stack: docs/lab.md).
test-current: current-deps
	$(call STEP,the current stack's suite)
	$(CURRENT_MAKE) versions unit UNIT_MARKERS='not scale and not docsite and not here_only' \
		JUNIT=current MODULE_CPU=$(COST)-current.json
	$(call STEP,the current stack's sanity and lint)
	$(call STEP_COST,current-steps,sanity) $(CURRENT_MAKE) sanity
	$(call STEP_COST,current-steps,lint) $(CURRENT_MAKE) lint
	$(call STEP,the current stack done)

current-deps:
	$(CURRENT_MAKE) deps

# What a run was tested with (printed at the start of each stack).
versions: venv
	@echo "== stack: $$(. /etc/os-release && echo $$PRETTY_NAME)"
	@nix --version
	@$(VENV)/bin/python --version
	@$(VENV)/bin/ansible --version | sed -n 1p  # sed reads it all: head could break the pipe
	@ssh -V 2>&1

# The execution environment (docs/execution-environment.md): $(EE_IMAGE) from
# execution-environment.yml on a Debian base made here (ee/build.sh; root, podman). A
# second run with the same inputs takes seconds (the image is labelled with their hash).
EE_IMAGE ?= localhost/nixdeploy-fleet-ee:latest
.PHONY: ee
ee: venv
	NIXDEPLOY_EE_IMAGE=$(EE_IMAGE) VENV=$(VENV) ee/build.sh

# Unit tests and the lab integration tests (these need root). pytest's exit 5
# ("no tests collected") is not a failure.
# UNIT_MARKERS: a pytest -m expression (test-current: 'not scale and not docsite').
# TEST_WORKERS test modules run side by side (pytest-xdist, one module to a
# worker: a module's lab is its own, each worker's labs in a folder of their
# own, each lab its own /24); most of a lab test is waiting on its hosts.
# TEST_WORKERS=0: one after the other, in this process (what to use when a
# test's output should not interleave with others'). make check runs its unit
# tests side by side too.
# JUNIT=name: every test's time in tests/output/junit-name.xml (make test
# keeps one a stack: what to read when the suite's time is planned).
# MODULE_CPU=FILE: the CPU and wall seconds each test module cost, as JSON in
# FILE (tests/module_cpu.py; as root also its labs' detached processes, from
# cgroups); `python3 -m tests.suite_cost FILE` prints them: on 2 busy cores a
# module's wall time says little, its CPU what it takes from the suite.
TEST_WORKERS ?= 2
PYTEST_WORKERS = $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)
MODULE_CPU ?=
unit: venv
	$(if $(MODULE_CPU),NIXDEPLOY_MODULE_CPU=$(abspath $(MODULE_CPU))) \
	$(VENV)/bin/python -m pytest tests/unit tests/integration -q --durations=20 $(PYTEST_WORKERS) \
		$(if $(MODULE_CPU),-p tests.module_cpu) \
		$(if $(UNIT_MARKERS),-m "$(UNIT_MARKERS)") \
		$(if $(JUNIT),--junitxml=$(CURDIR)/tests/output/junit-$(JUNIT).xml) || [ $$? -eq 5 ]

# Line coverage of plugins/ across every Python process of `make unit`'s
# suite on this machine's stack: pytest, ansible-playbook, its forked workers
# and the batch processes the actions detach (tests/coverage_run.py). The
# total and a line per file in tests/output/coverage/coverage.txt and .json.
# COVERAGE_ARGS: more of the script's options, e.g. `--checkout DIR` (another
# clone, an older commit, measured with this script), `--compare OLD.json
# NEW.json` (the files whose covered lines dropped), `-- PYTEST ARGS`.
# TEST_WORKERS as for unit.
COVERAGE_ARGS ?=
coverage: venv
	$(VENV)/bin/python tests/coverage_run.py --workers $(TEST_WORKERS) $(COVERAGE_ARGS)

# The files written from the option table (plugins/module_utils/_role_vars_table.py):
# the deploy role's argument spec and defaults, the role_vars doc fragment's
# lists, docs/roles.md; tests/unit/roles/test_generated_role_files.py fails
# while one is stale.
generate: venv
	$(VENV)/bin/python -m tests.docsite.role_spec_gen

# What answers in minutes: the unit tests (Nix, git and the target programs
# run for real, no lab) and one mixed lab fleet (marker smoke: healthy NixOS
# and nix-darwin hosts beside a new user's mistakes in one deploy), this
# machine's stack. Before a commit; `make test` before a merge.
# CHECK_WORKERS modules side by side: several of its unit modules mostly
# wait (a target program's sleep, a lock's bound), so four keep two cores busy.
CHECK_WORKERS ?= 4
check: venv
	$(MAKE) --no-print-directory unit TEST_WORKERS=$(if $(filter 0,$(CHECK_WORKERS)),2,$(CHECK_WORKERS)) \
		UNIT_MARKERS='(not lab or smoke) and not docsite and not scale and not faults'

sanity: venv
	VENV=$(VENV) tests/sanity/run.sh

# ansible-lint syntax-checks the playbooks with ansible.cfg, whose inventory (the
# demo fleet's flake) exists only after `make demo`: an unparsed inventory may
# only warn here, while ansible.cfg makes it fatal for real deploys.
lint: venv
	ANSIBLE_INVENTORY_UNPARSED_FAILED=False ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED=False $(VENV)/bin/ansible-lint --profile production

# The documentation site: antsibull-docs renders the module, plugin and role
# pages, docs/'s Markdown guides are its extra docs (pandoc), Sphinx builds it
# into tests/output/docs/build/html (tests/docsite/build.py; lint, Sphinx
# warnings and broken internal links fail it).
docs: deps
	$(VENV)/bin/python -m tests.docsite.build

# The release checks. The changelog fragments are well-formed (antsibull-changelog).
changelog-lint: venv
	$(VENV)/bin/antsibull-changelog lint

# galaxy-importer, Galaxy's check of every uploaded collection, on the tarball
# `ansible-galaxy collection build` makes of HEAD's committed files
# (tests/galaxy/import.sh, tests/galaxy/pack.py): no warning, no ansible-lint
# finding. Its own venv: requirements-importer.txt says why.
IMPORTER_VENV ?= $(CURDIR)/.venv-importer
IMPORTER_STAMP := $(IMPORTER_VENV)/.requirements.stamp
GALAXY_IMPORT_DIR := $(CURDIR)/tests/output/galaxy

importer-venv: $(IMPORTER_STAMP)

$(IMPORTER_STAMP): requirements-importer.txt $(call VENV_REBUILD,$(IMPORTER_VENV)) | apt-deps
	rm -rf $(IMPORTER_VENV)
	$(PYTHON) -m venv $(IMPORTER_VENV)
	$(IMPORTER_VENV)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(IMPORTER_VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-importer.txt
	touch $@

galaxy-import: venv importer-venv
	VENV=$(VENV) IMPORTER_VENV=$(IMPORTER_VENV) tests/galaxy/import.sh $(GALAXY_IMPORT_DIR)

# Cut a release (README, "Releases"): from a checkout without uncommitted changes
# to tracked files, with nothing untracked or ignored that the tarball could take
# (`git status --porcelain --ignored`, every path not under galaxy.yml's
# build_ignore: an operator's group_vars beside the demo inventory, a .vault-pass,
# an editor's backup), no tracked file marked skip-worktree or assume-unchanged
# (git hides their local changes) and no tracked symbolic link that points outside
# the tree (tests/galaxy/pack.py check refuses each, naming it), and with a
# changelog fragment holding the release_summary, antsibull-changelog writes the
# release into changelogs/changelog.yaml and CHANGELOG.md and removes the
# fragments; galaxy.yml gets the version; the tarball is built into dist/ from
# git's objects, never the work tree: HEAD's tree plus these release edits
# (galaxy.yml, CHANGELOG.md, changelogs/; written into a tree through a temporary
# index, what committing them gives), written out from git's raw objects into a temp
# folder (pack.py build --release), and must import clean. Committing, tagging and
# publishing stay with you (printed at the end).
VERSION ?=
release: venv importer-venv
	@[[ '$(VERSION)' =~ ^[0-9]+\.[0-9]+\.[0-9]+$$ ]] || { echo 'usage: make release VERSION=x.y.z' >&2; exit 2; }
	@git diff --quiet HEAD -- || { echo 'uncommitted changes: commit or stash them first' >&2; exit 2; }
	@$(VENV)/bin/python tests/galaxy/pack.py check
	@grep -qs '^release_summary:' changelogs/fragments/*.yml \
		|| { echo 'no fragment with a release_summary: add one for $(VERSION)' >&2; exit 2; }
	$(VENV)/bin/antsibull-changelog lint
	sed -i 's/^version: .*/version: $(VERSION)/' galaxy.yml
	$(VENV)/bin/antsibull-changelog release --version $(VERSION)
	VENV=$(VENV) IMPORTER_VENV=$(IMPORTER_VENV) tests/galaxy/import.sh $(CURDIR)/dist --release
	@echo '== $(VERSION) is ready: review `git diff` and CHANGELOG.md, then'
	@echo '   git add -A galaxy.yml CHANGELOG.md changelogs && git commit -m "Release $(VERSION)" && git tag $(VERSION)'
	@echo '   ansible-galaxy collection publish dist/nixdeploy-fleet-$(VERSION).tar.gz'

# The scenarios use this checkout as the collection (ansible.cfg's .collections).
molecule: venv
	mkdir -p .collections/ansible_collections/nixdeploy
	ln -sfn ../../.. .collections/ansible_collections/nixdeploy/fleet
	cd extensions && $(VENV)/bin/molecule test --all

# Lab `demo` up, the demo flake, `ansible-playbook deploy.yml -l vps`, a new
# version, the rest of the fleet, a summary; the lab goes down at the end
# (.venv/bin/python demo/demo.py --keep leaves it up for `make demo-down`).
demo: deps
	$(VENV)/bin/python demo/demo.py

# The same demo run by the current stack (inside the tree).
demo-current: current-deps
	$(CURRENT_MAKE) demo

demo-down: venv
	$(VENV)/bin/python -m tests.lab down --name $(DEMO_NAME)

# A fleet to try the collection on without machines (docs/lab.md): the lab
# $(TRY_NAME) (web1, web2 and, with --mac, the quickstart's nix-darwin host mac)
# and a fleet folder laid out as docs/quickstart.md's in $(TRY_DIR): the flake (a
# git repository), inventory/, ansible.cfg, an ssh config with the lab's key
# and host keys, README.txt. The lab stays up: `make try-down` removes it.
TRY_NAME ?= try
TRY_DIR ?= $(CURDIR)/.lab/try
TRY_HOSTS ?= 2
TRY_ARGS ?= --mac
.PHONY: try try-down
try: deps
	$(VENV)/bin/python -m tests.lab try --dir $(TRY_DIR) --hosts $(TRY_HOSTS) --name $(TRY_NAME) $(TRY_ARGS)

try-down: venv
	$(VENV)/bin/python -m tests.lab down --name $(TRY_NAME)

# Every benchmark table (root: most deploy to lab fleets; table 9, ee-store, needs
# the EE image of `make ee`); about 25 minutes on 2 cores. BENCH_ARGS='--quick' or
# e.g. '--only eval,inventory' or '--only ee-store'.
bench: deps
	$(VENV)/bin/python -m benchmarks $${BENCH_ARGS:-}

# The fault suite against the lab (root), all of it (about 6 minutes). The fast
# cases alone: FAULTS_MARKERS='faults and not slow'. TEST_WORKERS side by side,
# a module each (each worker brings up the fleets its modules use, in a lab
# root of its own): much of a fault case is waiting for a host or a timeout.
FAULTS_FILES ?= tests/faults
faults: deps
	$(if $(MODULE_CPU),NIXDEPLOY_MODULE_CPU=$(abspath $(MODULE_CPU))) \
	$(VENV)/bin/python -m pytest $(FAULTS_FILES) -q $(PYTEST_WORKERS) -m "$${FAULTS_MARKERS:-faults}" \
		$(if $(MODULE_CPU),-p tests.module_cpu)

# The deliberate faults (tests/mutations/faults.yml; docs/lab.md, "Deliberate
# faults"): each put into a throw-away copy of this checkout, the tests that
# must catch it run there, then taken out; a baseline first (the same tests
# pass without a fault), a table of caught and MISSED at the end, exit 1 if
# one was missed. Root for its lab tests; one fault after another, about 4
# minutes. Not part of `make test`: the check run before and after a change to
# the suite (tests merged, moved between stacks). MUTATIONS_ARGS='--only ID'.
mutations: deps
	$(VENV)/bin/python -m tests.mutations.run $${MUTATIONS_ARGS:-}

# The chaos campaign (root): ROUNDS rounds of random faults at random moments on
# a dozen-host lab fleet (lab `chaos`), each checked against the invariants
# (docs/faults.md). SEED replays a campaign exactly (default: a fresh one,
# printed); KEEP=1 leaves the lab up after a violation.
ROUNDS ?= 100
SEED ?=
chaos: deps
	$(VENV)/bin/python -m tests.chaos --rounds $(ROUNDS) $(if $(SEED),--seed $(SEED)) $(if $(KEEP),--keep)

# The differential campaign of the evaluation cache's reuse across commits
# (tests/evaldiff): COMMITS random commits to a flake of the shapes people
# write, every host of every commit answered by the evaluation stage with one
# persistent cache and checked against a plain `nix eval`; on this machine's
# stack, then on the current one (inside the tree), with one seed. SEED replays
# a campaign (default: a fresh one, printed); KEEP=1 leaves its work folder;
# EVERY_SHAPE=1 puts every shape in the fleet from its first commit.
COMMITS ?= 300
eval-diff: deps current-deps
	@seed='$(SEED)'; [ -n "$$seed" ] || seed=$$($(VENV)/bin/python -c \
		'import random; print(random.SystemRandom().randrange(10 ** 6))'); \
	args="--commits $(COMMITS) --seed $$seed $(if $(KEEP),--keep) $(if $(EVERY_SHAPE),--every-shape)"; \
	echo "== eval-diff, this machine's stack: seed $$seed"; \
	here=0; $(VENV)/bin/python -m tests.evaldiff $$args || here=$$?; \
	echo "== eval-diff, the current stack: seed $$seed"; \
	cur=0; $(IN_TREE) $(CURRENT_VENV)/bin/python -m tests.evaldiff $$args || cur=$$?; \
	echo "== eval-diff seed $$seed: this machine's stack exit $$here, the current stack exit $$cur"; \
	[ $$here -eq 0 ] && [ $$cur -eq 0 ]

clean:
	@if [ -d /var/lib/nixdeploy-lab/$(DEMO_NAME) ] && [ -x $(VENV)/bin/python ]; then \
		$(VENV)/bin/python -m tests.lab down --name $(DEMO_NAME); \
	fi
	rm -rf $(VENV) $(IMPORTER_VENV) tests/output .pytest_cache nixdeploy-fleet-*.tar.gz
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
