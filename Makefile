# camnode — the two commands a newcomer needs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the node, its tests and its tools use (installed by `make install` when
# running as root and missing). One list, used by CI too.
APT_PACKAGES := mosquitto mosquitto-clients mtools dosfstools
# The loopback RTSP "IP camera" of tests/integration/test_hw_rtsp.py (run by the system python3).
APT_PACKAGES += python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-rtsp
# Live view: the station's media relay (GStreamer RTSP server, above) and WebRTC gateway
# (docs/live.md); its 4G-link test shapes a veth with tc and nftables.
APT_PACKAGES += janus libjs-janus-gateway libjs-webrtc-adapter iproute2 nftables
# The web console's browser tests (headless, the system browser: nothing downloads one); fonts with
# Vietnamese diacritics.
APT_PACKAGES += chromium chromium-driver fonts-noto-core

# The whole node in virtual machines (tests/system/, `make test-system`): the Debian image is
# built with debootstrap, booted by qemu with Debian's cloud kernel; installed by those targets only.
SYSTEM_APT_PACKAGES := debootstrap qemu-system-x86 linux-image-cloud-amd64 e2fsprogs
# ...and on arm64, a Pi's CPU (`make test-system-arm64`): qemu-system-aarch64 under software emulation;
# the arm64 kernel and busybox are fetched by the harness with `apt-get download` (arm64 added to dpkg).
SYSTEM_ARM64_APT_PACKAGES := debootstrap qemu-system-arm e2fsprogs cpio

.PHONY: install apt run test bench bench-station-load soak lint clean hwcheck test-system soak-system \
	soak-system-50 test-system-arm64 apt-arm64

install: apt $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages:$$missing (run make install as root, or apt-get install them)"; fi; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[detect,station,console,provision,dev]'
	touch $(STAMP)

# The demo finds the person detector beside the repository when it is there (see README).
MODEL_DIR ?= $(wildcard ../shared/models)
# ...and real footage of people (person events with snapshots) when it is there too.
DEMO_VIDEO ?= $(if $(MODEL_DIR),$(wildcard ../shared/media/videos/one-by-one-person-detection.mp4))

run: install
	$(BIN)/camnode-demo $(if $(MODEL_DIR),--model-dir $(MODEL_DIR)) $(if $(DEMO_VIDEO),--source $(DEMO_VIDEO))

# Everything, CI's reduced system set included (tests/system: first boot, watchdog, 5 power cuts,
# a full and a read-only card in a VM; the card image is built once per machine and cached)
test: APT_PACKAGES += $(SYSTEM_APT_PACKAGES)
test: install
	CAMNODE_SYSTEM=ci $(BIN)/pytest -q

bench: install
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

# The station under ten times a busy ward's event rate for ten minutes, on SQLite and PostgreSQL
# (`make bench` runs the same for 60 s)
bench-station-load: install
	$(BIN)/python bench/bench_station_load.py --seconds 600

# The same checks as `camnode hwcheck` on an installed node (docs/hardware.md), from a checkout:
# `make hwcheck CONFIG=path/to/node.toml`
hwcheck: install
	$(BIN)/python -m node.hwcheck $(if $(CONFIG),--config $(CONFIG))

# 200 SIGKILLs of a recording process, each followed by recovery and a full check (~5 min)
soak: install
	$(BIN)/python bench/bench_record.py --soak 200

# CI's reduced system set alone: image (cached per machine), first boot, watchdog, 5 power cuts,
# a full and a read-only card
test-system: APT_PACKAGES += $(SYSTEM_APT_PACKAGES)
test-system: install
	CAMNODE_SYSTEM=ci $(BIN)/pytest -q -p no:cacheprovider tests/system

# the same with 200 power cuts, 15-40 s of recording before each, the 4G-like link and the arm64 node
# (hours under emulation); the standard 50-cut campaign: `make soak-system-50` (or VM_CUTS=50)
VM_CUTS ?= 200
soak-system: APT_PACKAGES += $(SYSTEM_APT_PACKAGES) $(SYSTEM_ARM64_APT_PACKAGES)
soak-system: apt-arm64 install
	CAMNODE_SYSTEM=soak CAMNODE_VM_CUTS=$(VM_CUTS) $(BIN)/pytest -q -s -p no:cacheprovider \
	  --timeout 43200 tests/system

soak-system-50: VM_CUTS = 50
soak-system-50: soak-system

# the node on arm64 (docs/installer.md): the aarch64 wheels of the detect extra installed by first boot,
# the node heartbeating with its detector; not in `make test` or CI (~20 min the first time, then ~6)
test-system-arm64: APT_PACKAGES += $(SYSTEM_ARM64_APT_PACKAGES)
test-system-arm64: apt-arm64 install
	CAMNODE_SYSTEM=arm64 $(BIN)/pytest -q -s -p no:cacheprovider --timeout 10800 tests/system/test_vm_arm64.py

apt-arm64:
	@dpkg --print-foreign-architectures | grep -qx arm64 || { \
	  if [ "$$(id -u)" = 0 ]; then dpkg --add-architecture arm64 && apt-get update -qq; \
	  else echo "run as root: dpkg --add-architecture arm64 && apt-get update"; exit 1; fi; }

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .ruff_cache
