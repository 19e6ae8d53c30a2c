"""``python -m examples.digits``: the whole demo (see the package docstring)."""

from .demo import main

if __name__ == "__main__":
    main()
