"""The TF-Hub path of the USE representation (`text_features.use.tfhub_handle`) runs for real: hub.load
accepts a local SavedModel directory, so a tiny one saved here goes through the same code as a USE handle
would (fkstudy.text.encoders.use)."""
from __future__ import annotations

import numpy as np
import pytest

from fkstudy.registry import Context
from fkstudy.text.registry import TEXT, UseParams


@pytest.fixture(scope="module")
def tiny_savedmodel(tmp_path_factory):
    """A SavedModel mapping a batch of strings to 4-d vectors (string length, word count, 1, hash bucket)."""
    from fkstudy.frameworks import tensorflow

    tf = tensorflow()

    class Encoder(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts):
            length = tf.cast(tf.strings.length(texts), tf.float32)
            words = tf.cast(tf.strings.length(tf.strings.regex_replace(texts, "[^ ]", "")) + 1, tf.float32)
            bucket = tf.cast(tf.strings.to_hash_bucket_fast(texts, 97), tf.float32)
            return tf.stack([length, words, tf.ones_like(length), bucket], axis=1)

    path = tmp_path_factory.mktemp("hub") / "tiny_use"
    tf.saved_model.save(Encoder(), str(path))
    return path


def test_use_loads_a_savedmodel_through_tensorflow_hub(tiny_savedmodel, no_network):
    docs = ["Sonata analog watch", "cotton double bedsheet with two pillow covers", "mug"]
    p = UseParams(field="name", input="raw", tfhub_handle=str(tiny_savedmodel), batch_size=2)  # 2 batches
    X, info = TEXT["use"].load()(docs, p, Context(ids=["a", "b", "c"]))
    assert X.shape == (3, 4) and X.dtype == np.float32
    np.testing.assert_array_equal(X[:, 0], [len(d) for d in docs])
    np.testing.assert_array_equal(X[:, 1], [len(d.split()) for d in docs])
    assert info == {"weights": "pretrained", "source": str(tiny_savedmodel)}


def test_use_handle_that_does_not_exist_fails_naming_it(tmp_path, no_network):
    p = UseParams(field="name", input="raw", tfhub_handle=str(tmp_path / "nope"), batch_size=2)
    with pytest.raises(Exception, match="nope"):
        TEXT["use"].load()(["a"], p, Context(ids=["a"]))
