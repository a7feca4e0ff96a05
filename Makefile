# Thin wrappers; the README names these targets.
.PHONY: demo test bench bench-workloads lint

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

# run.py's exit status is kept; the workloads benchmark runs after it either way.
bench:
	bash scripts/bootstrap.sh && bash scripts/build-examples.sh
	.venv/bin/python bench/run.py; rc=$$?; .venv/bin/python bench/workloads_bench.py && exit $$rc

bench-workloads:
	bash scripts/bootstrap.sh && bash scripts/build-examples.sh && .venv/bin/python bench/workloads_bench.py

lint:
	bash scripts/bootstrap.sh
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy node_agent
