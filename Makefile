# The commands a newcomer needs: `make book`, `make test` and `make lab`. All set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= book
export PYTHONHASHSEED := 0

.PHONY: setup system book studies test lab unit nbval html browser bench clean

setup: $(STAMP) system

# venv + the package with its dev extras; redone whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Debian's Fashion-MNIST, the photographed objects and backgrounds (zfkit/objects.json names their packages) and
# Chromium (for the browser test), installed when missing and possible.
system: $(STAMP)
	@need="$$($(PY) -m zfkit data --missing)"; browser=""; \
	test -x /usr/bin/chromium || browser=chromium; \
	if [ -n "$${need// /}$$browser" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages: $$need $$browser"; \
	    apt-get update -qq; \
	    if [ -n "$${need// /}" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; fi; \
	    if [ -n "$$browser" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; \
	  else echo "cannot install $$need $$browser (needs root and apt-get)"; fi; \
	fi
	@$(PY) -m zfkit data

# Execute every chapter in _toc.yml order with papermill (profile $(PROFILE)), then build the HTML.
# The studies come first: a no-op when their committed records are complete (book/results/studies).
book: setup studies
	$(PY) -m zfkit.notebooks run --profile $(PROFILE)
	$(MAKE) html

# Tables 2-3 at convergence (zfkit/studies.py): resumable per row and seed, about 30-65 min on 2 cores from
# scratch; profile book writes book/results/studies, ci writes _build/studies-ci.
studies: setup
	$(PY) -m zfkit.studies run --profile $(PROFILE)

# JupyterLab on copies of the chapters in _build/lab (zfkit/lab.py): PROFILE=ci|book (default: the one whose
# models are trained), FRESH=1 copies book/ again. Prints the URL to open; Ctrl-C stops it.
lab: setup
	$(PY) -m zfkit.lab $(if $(filter file,$(origin PROFILE)),,--profile $(PROFILE)) $(if $(FRESH),--fresh)

html: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

# Both unit suites run as two one-thread pytest workers (pytest-xdist, a file per worker): on 2 cores
# that is about 1.5x faster than one process whose torch ops use both threads, as most tests are
# small ops where threads only add overhead. Two workers of two threads each would fight for the cores.
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
WORKERS := -n 2 --dist loadfile

unit: setup
	$(ONE_THREAD) $(PY) -m pytest -q $(WORKERS) -m "not browser" tests

# The float-heavy unit tests again on other kernels, as on a CPU without AVX-512 or AMX (issue #15):
# ATen's scalar code, oneDNN capped at AVX2, one thread. Floats from different kernels must agree by
# a stated tolerance, not by luck. Files: invariance, correspondence, deconv, occlusion, topk, gallery,
# probes, properties, sanity, lrn, filters, models, arch (cross-batch and structural-zero checks),
# kill_resume (bit-identical resume), graph, any_cnn, rf and efficientnet (other architectures):
# about 1 min as two workers on 2 cores of an Intel Xeon with AMX, where the whole unit suite takes 2.5.
PORTABLE_TESTS := $(addprefix tests/test_,$(addsuffix .py,invariance correspondence deconv occlusion topk \
  gallery probes properties sanity lrn filters models arch kill_resume graph any_cnn rf efficientnet))
.PHONY: unit-portable
unit-portable: setup
	ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2 $(ONE_THREAD) \
	  $(PY) -m pytest -q -p no:cacheprovider $(WORKERS) -m "not browser" $(PORTABLE_TESTS)

# Re-execute the committed notebooks with the ci profile and compare to their stored outputs.
# The ci models are trained into a cache inside _build, as on a fresh machine.
nbval: setup
	$(PY) -m zfkit.studies run --profile ci
	ZFKIT_PROFILE=ci ZFKIT_CACHE=$(CURDIR)/_build/zoo-ci $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg book/

browser: setup html
	$(PY) -m pytest -q -m browser tests

test: unit unit-portable nbval browser

bench: setup
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf _build .pytest_cache
