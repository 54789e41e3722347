# stylelens developer commands. `make install` = editable install; `make test` = the test suite CI runs.
PYTHON ?= python3
TORCH_CPU ?= torch==2.13.0

.PHONY: install install-cpu-torch demo test bench clean

# setup.cfg is the only build configuration (the layout keeps no pyproject.toml or setup.py, which pip's
# front end insists on), so the editable wheel is built with setuptools' own PEP 660 hook, then installed.
install:
	rm -rf build/editable
	$(PYTHON) -c "import setuptools.build_meta as b; b.build_editable('build/editable')"
	$(PYTHON) -m pip install -q --force-reinstall --no-deps build/editable/stylelens-*.whl
	$(PYTHON) -m pip install -q build/editable/stylelens-*.whl pytest

install-cpu-torch:
	$(PYTHON) -m pip install -q $(TORCH_CPU)

demo: install
	stylelens info
	stylelens generate --seeds 0-7 --trunc 0.7 --outdir out/demo

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) -m stylelens.bench --out bench/results

clean:
	rm -rf build out bench/results .pytest_cache
