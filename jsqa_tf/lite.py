"""On-device MOS prediction with a TFLite model and LiteRT: `jsqa_lite.LiteModel`, also
importable from here. Imports neither TensorFlow nor Keras.

```python
from jsqa_tf.lite import LiteModel  # or: from jsqa_lite import LiteModel

model = LiteModel("saved_models/jsqa/tflite/1/jsqa-int8.tflite", num_threads=2)
model.score_file("call.wav")  # {"mos": 3.4, "seconds": 12.0, "window_mos": [...], ...}
```
"""

from jsqa_lite.lite_model import LiteModel

__all__ = ["LiteModel"]
