"""jsqa-tf: JSQA speech quality assessment in Keras 3 / TensorFlow."""

__version__ = "0.1.0"
