"""``python -m stylelens.bench [--out DIR] [--quick]``: the whole benchmark (``make bench``), or one worker."""
from stylelens.bench.driver import main

if __name__ == '__main__':
    main()
