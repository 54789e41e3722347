# stylelens developer commands: `make demo` installs and runs the main job offline; `make test` is what CI runs.
# torch: if none is installed, the CPU build pinned in TORCH_CPU is installed first (an unpinned torch pulls CUDA).
PYTHON ?= python3
TORCH_CPU ?= torch==2.13.0

.PHONY: install demo test lint bench gallery demo-train clean

# setup.cfg holds the metadata and options; pyproject.toml only names the build backend (setuptools), so pip
# installs the project like any other: editable here, `pip install .` or a wheel elsewhere.
install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q $(TORCH_CPU)
	$(PYTHON) -m pip install -q -e ".[test]"

demo: install
	stylelens info
	stylelens mix --rows 85,100,75 --cols 55,821,1789 --styles 0-6 --labels --outdir out/mix
	stylelens generate --seeds 0-7 --trunc 0.7 --outdir out/generate

test:
	$(PYTHON) -m pytest -q

# The one linter configuration (ruff.toml): pyflakes, sorted imports, single quotes; CI runs it before the tests.
lint:
	$(PYTHON) -m ruff check stylelens vendor tests

# OFFICIAL=DIR (NVlabs/stylegan2-ada-pytorch) and STYLEGAN3=DIR (NVlabs/stylegan3): checkouts with the CPU patches of
# ../shared/official/, whose scripts then run side by side with stylelens; without them, no ratio is measured.
bench:
	$(PYTHON) -m stylelens.bench --out bench/results $(if $(OFFICIAL),--official $(OFFICIAL)) \
		$(if $(STYLEGAN3),--stylegan3 $(STYLEGAN3))

# The README's pictures of the embedded demo network (checkpoints/gallery/); RUN is its training run folder.
RUN ?= runs/demo
gallery:
	stylelens mix --rows 1,2,3,4,5 --cols 6,7,8,9,10 --preset coarse --labels --outdir out/gallery/coarse
	stylelens mix --rows 1,2,3,4,5 --cols 6,7,8,9,10 --preset fine --labels --outdir out/gallery/fine
	stylelens activations --seeds 3 --outdir out/gallery/activations
	stylelens weights --layer synthesis.b8.conv1 --png out/gallery/weights.png
	mkdir -p checkpoints/gallery
	cp out/gallery/coarse/grid_labeled.png checkpoints/gallery/mix_coarse.png
	cp out/gallery/fine/grid_labeled.png checkpoints/gallery/mix_fine.png
	cp out/gallery/activations/seed0003/overview.png checkpoints/gallery/blocks.png
	cp out/gallery/weights.png checkpoints/gallery/weights.png
	$(PYTHON) -m stylelens.demo_network strip $(RUN) checkpoints/gallery/training.png
	cp $(RUN)/losses.png checkpoints/gallery/losses.png

# Continue the demo network's training to EPOCHS epochs in RUN, from the shipped checkpoints/demo-train.pt (then from
# RUN's own); `python -m stylelens.demo_network export $(RUN)` re-exports demo.pkl and demo-train.pt from it.
EPOCHS ?= 30
DEVICE ?= auto
demo-train:
	$(PYTHON) -m stylelens.demo_network train $(RUN) $(EPOCHS) $(DEVICE)

clean:
	rm -rf build out bench/results .pytest_cache
