"""`python -m jsqa_lite ...` is `jsqa-lite ...`."""

from jsqa_lite.cli import main

if __name__ == "__main__":
    main()
