"""Stage deep_features@<method>: one pretrained network (kind "deep" of the image registry) over the whole
image cache -> data/features/image_<method>.npz.

Weights follow the resolution order of fkstudy.image.weights (local dir, library cache, download, then
labelled random init); the feature meta and metrics record which ("imagenet", "openai" or "random-init"),
the source and its sha256. One process per model: TensorFlow (Keras models) or torch, never both.
"""
import _bootstrap  # noqa: F401

from fkstudy.image.extract import extract_representation
from fkstudy.image.registry import IMAGE
from fkstudy.runtime import log, run_stage, stage_argument, start_stage


def main(argv=None) -> None:
    (method,) = stage_argument(argv, [IMAGE.names("deep")], "python stages/deep_features.py <method>")
    stage = start_stage(f"deep_features@{method}")
    with stage.timed(method, "seconds"):
        metrics, n = extract_representation(method, "deep", getattr(stage.params.deep_features, method),
                                            stage.params, stage.timings)
    stage.timings.setdefault("images_per_second", round(n / max(stage.timings["seconds"], 1e-9), 1))
    stage.write_timings("deep_features", method, n_images=n)
    log.info("%s (%s weights): %d x %d", method, metrics.get("weights"), n, metrics["dim"])


if __name__ == "__main__":
    run_stage(main)
