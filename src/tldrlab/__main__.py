"""`python -m tldrlab` is the same as the `tldrlab` console script."""

from tldrlab.cli.main import main

if __name__ == "__main__":
    main()
