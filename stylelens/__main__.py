"""``python -m stylelens`` runs the command line."""
from stylelens.cli import main

main()
