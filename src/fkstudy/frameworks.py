"""Importing TensorFlow without its start-up chatter.

On a CPU machine TensorFlow's C++ side writes straight to file descriptor 2, before absl logging is
initialised and whatever TF_CPP_MIN_LOG_LEVEL says: "All log messages before absl::InitializeLog()",
oneDNN and cudart_stub notices, the CPU-feature banner and a cuInit "error" (measured: 8 lines per stage
process). `tensorflow()` imports TensorFlow and Keras and initialises the devices with descriptor 2
captured, then writes back every line that is not one of those known notices — a real error still shows.
Every TensorFlow user in the study imports it through here first (later imports are cached).
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager

CHATTER = re.compile(
    r"absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc.*cuInit|cuda_executor|port\.cc:\d+\] oneDNN custom"
    r"|cpu_feature_guard\.cc|^To enable the following instructions|rebuild TensorFlow with the appropriate compiler"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc|TF-TRT Warning")


@contextmanager
def filtered_stderr(pattern: re.Pattern = CHATTER):
    """Capture what native code writes to descriptor 2 in the block; replay the lines not matching `pattern`."""
    sys.stderr.flush()
    fd = sys.stderr.fileno()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not pattern.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def tensorflow():
    """The tensorflow module (and keras imported), its start-up notices filtered out."""
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return sys.modules["tensorflow"]
    with filtered_stderr():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
