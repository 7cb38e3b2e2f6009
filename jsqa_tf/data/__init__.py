"""Corpora, prepared TFRecord shards and the tf.data pipelines that read them."""
