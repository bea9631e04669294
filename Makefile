# The two README commands: `make demo` (the main job) and `make test` (the full test suite).
# Both set up .venv from the package registries first (the set-up scripts are idempotent);
# only the tests need SGLang.
PY := .venv/bin/python

.PHONY: setup setup-demo lint test demo
setup-demo:
	@SETUP_VLLM=1 bash scripts/setup.sh

setup: setup-demo
	@bash scripts/install_sglang.sh

lint: setup-demo
	$(PY) -m ruff check .

# Unit tests and the engine integration tests run in separate processes (vLLM keeps global state).
test: setup lint
	$(PY) -m pytest tests
	$(PY) -m pytest integration_tests

demo: setup-demo
	.venv/bin/normswitch demo
