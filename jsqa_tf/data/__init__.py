"""Data: corpus readers, prepared shards (TFRecords and their manifest), tf.data pipelines,
JND pairs, the noise bank and the synthetic demo corpus."""
