# The two README commands: `make demo` (the main job) and `make test` (the full test suite).
# Both set up .venv from the package registries first (scripts/setup.sh is idempotent).
PY := .venv/bin/python

.PHONY: setup test demo
setup:
	SETUP_VLLM=1 bash scripts/setup.sh
	bash scripts/install_sglang.sh

test: setup
	$(PY) -m pytest tests

demo: setup
	.venv/bin/normswitch info
	.venv/bin/normswitch verify
