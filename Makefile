# segdeploy — every target installs what it needs on first use (.venv is a prerequisite).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
MODEL   ?= unetpp
DTYPE   ?= fp32
# The model's input size from the one model table (deploy/catalogue.py, standard library only);
# a MODEL without a build YAML and vdsp JSON stops make here, with the list of models.
SIZE    := $(shell $(PY) -m deploy.catalogue size $(MODEL))
ifeq ($(SIZE),)
$(error MODEL=$(MODEL) is not a deployable model; models: $(shell $(PY) -m deploy.catalogue names))
endif
ONNX    := workspace/zoo/$(MODEL)-$(SIZE).onnx

.PHONY: install test test-fast demo compile onnx bench accuracy clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,zoo,ct,cluster]'
	touch $@

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

# The embedded default: train + export the model on synthetic data when its ONNX is missing.
$(ONNX): | $(STAMP)
	$(BIN)/deploy zoo prepare $(MODEL)

onnx: $(ONNX)

compile: $(ONNX)
	$(BIN)/deploy compile build_in/build/official_$(MODEL).yaml --dtype $(DTYPE)

demo: $(ONNX)
	$(BIN)/python -m deploy.tools.demo --model $(MODEL) --publish

# The bench extra (OpenVINO, a baseline) first; where pip cannot get it the bench still runs and says so.
bench: $(STAMP)
	-$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m deploy.bench --publish

accuracy: $(STAMP)
	$(BIN)/python -m deploy.bench.accuracy --publish

clean:
	rm -rf workspace/deploy_weights workspace/bench workspace/demo
