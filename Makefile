# bench-agent: the README's two commands live here.
#   make run        install everything, run the quick acceptance suite on this node
#   make test       install everything, run the whole test suite (what CI runs)
#   make test-fast  the same checks without the slow tiers (Ansible, end to end,
#                   network namespaces, slow) on 2 pytest workers: about 85 s on
#                   the 2-core VM (README, Development: measured figures)
# Works on a fresh Debian machine with Python 3.11+, make and root.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUFF_PATHS := bench_agent tests benchmarks scripts ansible/roles/bench_agent/filter_plugins
# The tiers of pyproject.toml's [tool.pytest.ini_options] markers that test-fast leaves out.
SLOW_TIERS := not deploy and not e2e and not netns and not slow
SLOW_ONLY  := deploy or e2e or netns or slow
# test-fast's pytest workers (pytest-xdist -n): one per core of the 2-core VM its time
# is set for. TEST_WORKERS=auto takes every core; TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
# The tests start about a thousand Pythons (the CLI, the runner's worker children,
# torchrun ranks); with PYTHONDONTWRITEBYTECODE set in the environment each of
# them compiles every module it imports again. The tests write bytecode
# (__pycache__, ignored by git) whatever the environment says.
TEST_ENV := PYTHONDONTWRITEBYTECODE=
# Debian packages of the external tools the suites drive on a node: what `make run`
# installs (the same list as ansible/roles/bench_agent/vars/main.yml). Installed through
# apt when we are root and one of them is missing; otherwise the checks that need
# them report SKIP with the reason, and those tests skip.
APT_RUN_PACKAGES := fio iperf3 sockperf qperf perftest stress-ng nvme-cli pciutils
APT_RUN_TOOLS    := fio iperf3 sockperf qperf ib_write_lat stress-ng nvme lspci
# Only the tests need these: Chromium for the collector's dashboard tests; promtool
# (Debian's prometheus) and prometheus-node-exporter, which the export tests run on
# the textfile. Never on a node by `make run`: Debian's prometheus package starts a
# Prometheus server on :9090 and prometheus-node-exporter one on :9100.
APT_TEST_PACKAGES := chromium chromium-driver prometheus prometheus-node-exporter
# The scheduler tests: a real one-node Slurm cluster (slurm-wlm, munge), the image
# build (podman) and the kustomize render of deploy/kubernetes (kubectl). For the
# image test on a machine that reaches no container registry: mmdebstrap makes a
# Debian base image from deb.debian.org, and runc runs containers where crun cannot
# (cgroup v1 with a controller left on the v2 hierarchy; see docker/README.md).
APT_TEST_PACKAGES += slurm-wlm munge podman kubernetes-client mmdebstrap runc
APT_TEST_TOOLS    := chromium chromedriver promtool prometheus-node-exporter
APT_TEST_TOOLS    += slurmctld munged podman kubectl mmdebstrap runc
# The completion and man page tests: zsh loads the zsh script, man(1) and groff render the page.
APT_TEST_PACKAGES += zsh man-db groff
APT_TEST_TOOLS    += zsh man groff

.PHONY: run test test-fast install install-test lint typecheck bench clean system-deps test-deps

run: install
	@$(VENV)/bin/bench-agent run quick; rc=$$?; \
	case $$rc in 0) ;; 1) echo "make run: the node FAILED a threshold (exit 1): see the table above";; \
	2) echo "make run: a check could not measure (exit 2): see the table above";; \
	*) echo "make run: bench-agent exited $$rc";; esac; exit $$rc

# Every test: the fast tiers on the workers, then the slow tiers on the workers one
# file each (--dist loadfile: a file's module fixtures, the Ansible lab, the Slurm
# cluster, the namespaces, stay in one process; the Ansible file alone takes about
# 9 of their 14 minutes, so the other files run beside it); both run, and either
# failing fails the target.
test: install-test
	$(VENV)/bin/ruff check $(RUFF_PATHS)
	$(VENV)/bin/mypy
	@rc=0; \
	$(TEST_ENV) $(VENV)/bin/pytest -q -n $(TEST_WORKERS) -m "$(SLOW_TIERS)" || rc=1; \
	$(TEST_ENV) $(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile -m "$(SLOW_ONLY)" || rc=1; \
	exit $$rc

test-fast: install-test
	$(VENV)/bin/ruff check $(RUFF_PATHS)
	$(VENV)/bin/mypy
	$(TEST_ENV) $(VENV)/bin/pytest -q -n $(TEST_WORKERS) -m "$(SLOW_TIERS)"

lint: install
	$(VENV)/bin/ruff check $(RUFF_PATHS)

bench: install
	$(PY) benchmarks/run_all.py

install: $(STAMP) system-deps

install-test: install test-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,gpu,fleet,collector]'
	touch $(STAMP)

# $(call apt_install,WHAT,TOOLS,PACKAGES): apt-get install PACKAGES when one of TOOLS is
# missing, as root with apt; otherwise say what is missing (what needs it will SKIP).
define apt_install
	@missing=""; for t in $(2); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(1) (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(3) >/dev/null \
	      || for p in $(3); do DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$p >/dev/null 2>&1 \
	           || echo "warning: apt-get could not install $$p; what needs it will SKIP"; done; \
	  else \
	    echo "note: missing $(1):$$missing (not root or no apt): what needs them will SKIP"; \
	  fi; \
	fi
endef

system-deps:
	$(call apt_install,system tools,$(APT_RUN_TOOLS),$(APT_RUN_PACKAGES))

test-deps:
	$(call apt_install,test tools,$(APT_TEST_TOOLS),$(APT_TEST_PACKAGES))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
