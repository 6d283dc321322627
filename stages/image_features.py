"""Stage image_features@<method>: one classical descriptor (kind "classical" of the image registry) over the
whole image cache -> data/features/image_<method>.npz; bags of visual words fit their codebook on train
photos only."""
import _bootstrap  # noqa: F401

from fkstudy.image.extract import extract_representation
from fkstudy.image.registry import IMAGE
from fkstudy.runtime import log, run_stage, stage_argument, start_stage


def main(argv=None) -> None:
    import cv2

    (method,) = stage_argument(argv, [IMAGE.names("classical")], "python stages/image_features.py <method>")
    stage = start_stage(f"image_features@{method}")
    cv2.setNumThreads(1)  # images are spread over n_jobs threads; OpenCV's own pool (a thread per core) would add more
    with stage.timed(method, "seconds"):
        metrics, n = extract_representation(method, "classical", getattr(stage.params.image_features, method),
                                            stage.params, stage.timings)
    stage.timings.setdefault("images_per_second", round(n / max(stage.timings["seconds"], 1e-9), 1))
    stage.write_timings("image_features", method, n_images=n)
    log.info("%s: %d x %d", method, n, metrics["dim"])


if __name__ == "__main__":
    run_stage(main)
