"""A tiny real torch backbone declared the way a new one would be (tests/unit/test_backbones.py): its functions
here, its registry entry (`entry()`, added to the image registry by the test), its params section
(`TinyParams`: the common deep settings plus its own `scale`, which its preprocess reads)."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from fkstudy.image.registry import Backbone, DeepParams
from fkstudy.image.torch_backbone import extractor
from fkstudy.image.weights import WeightSpec, load_with_fallback
from fkstudy.registry import Entry

NAME = "tiny_torch"
WEIGHTS_FILE = "tiny_torch.pt"
CHANNELS = 16


class TinyParams(DeepParams):
    scale: float = Field(gt=0.0)


def build(weights_file=None):
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.conv2 = nn.Conv2d(8, CHANNELS, 3, stride=2, padding=1)

        def features(self, x):
            return torch.relu(self.conv2(torch.relu(self.conv1(x))))

    net = TinyNet()
    if weights_file is not None:
        net.load_state_dict(torch.load(str(weights_file), map_location="cpu", weights_only=True), strict=True)
    return net.eval()


def load(name, policy, seed=0, size=None):
    import torch

    from fkstudy.image.registry import weight_spec

    def random_init():
        torch.manual_seed(seed)
        return build()

    return load_with_fallback(weight_spec(name), policy.dir, allow_random_init=policy.allow_random_init,
                              allow_download=policy.allow_download, from_file=build, download=None,
                              random_init=random_init)


def preprocess(name, settings):
    import torch

    scale = float(settings["scale"])

    def run(images: np.ndarray):
        x = (images.astype(np.float32) / 255.0 - 0.5) * scale
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    return run


def feature_map(net, x):
    return net.features(x)


tiny_torch = extractor(NAME)   # the registry function of deep_features@tiny_torch

WEIGHTS = WeightSpec(model=NAME, label="test", framework="torch", local_names=(WEIGHTS_FILE,),
                     cache_files=lambda: [], url="", how_to="save a TinyNet state dict there.")


def entry() -> Entry:
    return Entry(NAME, f"{__name__}:tiny_torch", TinyParams, "A tiny torch backbone (tests).", "torch", "test",
                 kind="deep", extra={"weights": WEIGHTS, "backbone": Backbone(
                     load=f"{__name__}:load", preprocess=f"{__name__}:preprocess",
                     feature_map=f"{__name__}:feature_map", gradcam_layer="conv2", settings=("scale",))})
