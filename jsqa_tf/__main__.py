"""`python -m jsqa_tf ...` is `jsqa-tf ...`."""

from jsqa_tf.cli import main

if __name__ == "__main__":
    main()
