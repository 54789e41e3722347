"""The browser explorer behind `stylelens serve`: state (the page's controls), files (what the page may name),
renderer (one network, through the library's functions), views (activation maps and spectra), snapshot (a state as
CLI commands), scheduler (latest-wins render worker), explorer (networks and jobs), app (FastAPI), static/ (the page).
Like cli/, it sits on top of the library and is imported by nothing below it."""
