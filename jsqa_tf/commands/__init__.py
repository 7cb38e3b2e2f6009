"""The `jsqa-tf` commands by task; `jsqa_tf.cli` is the entry point that gathers them.

data        demo-data, prepare, check, pairs
jnd         jnd fit, jnd validate, jnd curve
training    pretrain, finetune, distill, train
common      what they share (JSON output, progress bars, option helpers)
"""
