# bench-agent: the README's two commands live here.
#   make run    install everything, run the quick acceptance suite on this node
#   make test   install everything, run the whole test suite (what CI runs)
# Works on a fresh Debian machine with Python 3.11+, make and root.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages of the external tools the suites drive (and Chromium, which the
# collector's dashboard tests drive; promtool, from prometheus, and
# prometheus-node-exporter, which the export tests run on the textfile). Installed
# through apt when we are root and one of them is missing; otherwise the checks
# that need them report SKIP with the reason, and those tests skip.
APT_PACKAGES := fio iperf3 sockperf qperf perftest stress-ng nvme-cli pciutils \
                chromium chromium-driver prometheus prometheus-node-exporter
APT_TOOLS    := fio iperf3 sockperf qperf ib_write_lat stress-ng nvme lspci \
                chromium chromedriver promtool prometheus-node-exporter

.PHONY: run test install lint typecheck bench clean system-deps

run: install
	@$(VENV)/bin/bench-agent run quick; rc=$$?; \
	case $$rc in 0) ;; 1) echo "make run: the node FAILED a threshold (exit 1): see the table above";; \
	2) echo "make run: a check could not measure (exit 2): see the table above";; \
	*) echo "make run: bench-agent exited $$rc";; esac; exit $$rc

test: install
	$(VENV)/bin/ruff check bench_agent tests benchmarks scripts ansible/roles/bench_agent/filter_plugins
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check bench_agent tests benchmarks scripts ansible/roles/bench_agent/filter_plugins

bench: install
	$(PY) benchmarks/run_all.py

install: $(STAMP) system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,gpu,fleet,collector]'
	touch $(STAMP)

system-deps:
	@missing=""; for t in $(APT_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system tools (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null \
	      || echo "warning: apt-get could not install every tool; checks that need them will SKIP"; \
	  else \
	    echo "note: missing system tools:$$missing (not root or no apt): checks that need them will SKIP"; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
