"""``python -m pulpinit``: the same as the ``pulpinit`` console script."""

from pulpinit.cli import run

if __name__ == "__main__":
    run()
