# Thin wrappers; the README names these targets.
.PHONY: demo test bench lint

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bootstrap.sh && bash scripts/build-examples.sh && .venv/bin/python bench/run.py

lint:
	bash scripts/bootstrap.sh
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy node_agent
