# Kotoba — the two commands a newcomer types are `make run` and `make test`;
# both set up what they need first. Re-running is fast when nothing changed.

SHELL := /bin/bash
PY_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
DATA := .data
STUBS := kotoba/v1/.stamp
PROTOS := $(wildcard protos/kotoba/v1/*.proto)

.PHONY: setup proto lint test run stop bench clean status browser image deploy-check

setup: $(DATA)/.sysdeps $(VENV)/.stamp node_modules/.stamp $(STUBS) $(DATA)/tls/ca.pem

$(VENV)/.stamp: pyproject.toml
	@test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=25"
	$(PIP) install --config-settings editable_mode=compat -e ".[dev,voice]"
	$(PIP) install --no-deps pyopenjtalk-plus==0.4.1.post10
	@touch $@

# Debian packages: espeak-ng (English/fallback TTS, test audio), sox, headless Chromium and a
# CJK font for the browser tests. Installed once per machine (CI runs as root).
SYS_PKGS := espeak-ng sox chromium fonts-ipafont-gothic
$(DATA)/.sysdeps:
	@missing=$$(for p in $(SYS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p $(DATA) && touch $@

node_modules/.stamp: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

proto: $(STUBS)

$(STUBS): $(PROTOS) $(VENV)/.stamp
	@rm -rf kotoba && mkdir -p kotoba/v1
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	@touch kotoba/__init__.py kotoba/v1/__init__.py $@

$(DATA)/tls/ca.pem: $(VENV)/.stamp
	$(PY) -m services.common.tls $(DATA)/tls

lint: setup
	$(VENV)/bin/ruff check services tests bench devtools deploy
	cd protos && ../node_modules/.bin/buf lint
	$(VENV)/bin/hadolint Dockerfile

test: setup
	$(PY) -m pytest -q

# The container image (kotoba:dev) and the local DynamoDB image (kotoba-dynalite:dev): docker when a
# daemon answers, else podman with a debootstrap base (deploy/image.sh). Skipped when nothing changed.
image:
	deploy/image.sh

# Every workload of k8s/overlays/local and /prod started as a container and used (deploy/check.py).
deploy-check: setup image
	$(PY) deploy/check.py

run: setup
	$(PY) -m devtools.stack up

stop:
	@test -x $(PY) && $(PY) -m devtools.stack down || true

status:
	$(PY) -m devtools.stack status

bench: setup
	$(PIP) install -e ".[bench]" --config-settings editable_mode=compat
	$(PY) -m bench

clean: stop
	rm -rf kotoba $(VENV) node_modules $(DATA)
