"""Stage image_features@<method>: one classical descriptor (kind "classical" of the image registry) over the
whole image cache -> data/features/image_<method>.npz; bags of visual words fit their codebook on train
photos only."""
import _bootstrap  # noqa: F401

from fkstudy.image.extract import extract_representation
from fkstudy.image.registry import IMAGE
from fkstudy.runtime import log, run_stage, stage_argument, start_stage


def opencv_setup() -> None:
    """OpenCV as this stage runs it: one thread (images are spread over n_jobs threads; OpenCV's own pool, a
    thread per core, would add more) and its baseline SIMD code (SSE2/SSE3, on every x86-64 CPU) instead of the
    SSE4.1 / AVX2 / AVX-512 loops it dispatches to from the CPU it finds: those sum in another order, and
    SIFT's keypoint responses (3e-5) and the Gabor energies (4e-9) then differ from one CPU to another
    (measured on real photos: AVX2 vs SSE4.1 dispatch; an AVX-512 and an AVX2 host gave two image_classical.npz).
    Measured on 60 real photos: no slower (SIFT 2.2 s, Gabor 3.2 s either way). A call here rather than a
    variable in fkstudy.numerics: OpenCV reads none that means "baseline", and OPENCV_CPU_DISABLE prints a warning
    in every process on a CPU that lacks a feature it names."""
    import cv2

    cv2.setNumThreads(1)
    cv2.setUseOptimized(False)


def main(argv=None) -> None:
    (method,) = stage_argument(argv, [IMAGE.names("classical")], "python stages/image_features.py <method>")
    stage = start_stage(f"image_features@{method}")
    opencv_setup()
    with stage.timed(method, "seconds"):
        metrics, n = extract_representation(method, "classical", getattr(stage.params.image_features, method),
                                            stage.params, stage.timings)
    stage.timings.setdefault("images_per_second", round(n / max(stage.timings["seconds"], 1e-9), 1))
    stage.write_timings("image_features", method, n_images=n)
    log.info("%s: %d x %d", method, n, metrics["dim"])


if __name__ == "__main__":
    run_stage(main)
