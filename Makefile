# The two README commands: `make demo` (the main job) and `make test` (the full test suite).
# Both set up .venv from the package registries first (scripts/setup.sh is idempotent).
PY := .venv/bin/python

.PHONY: setup test demo
setup:
	SETUP_VLLM=1 bash scripts/setup.sh
	bash scripts/install_sglang.sh

# Unit tests and the engine integration tests run in separate processes (vLLM keeps global state).
test: setup
	$(PY) -m pytest tests
	$(PY) -m pytest integration_tests

demo: setup
	.venv/bin/normswitch demo
