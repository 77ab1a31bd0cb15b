"""kerasvision: computer-vision models for Keras 3.

Classifiers, FCN and U-Net segmentation, autoencoders, GANs and diffusion,
trained with `model.fit` and exported for TF Serving.

Importing kerasvision imports TensorFlow with its C++ start-up logging
(oneDNN notices, "Could not find cuda drivers", cuInit errors on machines
without a GPU) turned off, unless `TF_CPP_MIN_LOG_LEVEL` is already set:
set it to 0 to see everything TensorFlow's C++ runtime logs.
"""

import os
import re
import sys
import tempfile

__version__ = "0.1.0"

# glog-style INFO/WARNING lines ("I0000 00:00:... port.cc:153] ...") and absl's notice
# about them: TensorFlow prints these while its shared libraries load, before
# absl::InitializeLog, so TF_CPP_MIN_LOG_LEVEL does not reach them.
_STARTUP_NOISE = re.compile(
    r"^([IW]\d{4} \d\d:\d\d:\S+\s+\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog)"
)


def _import_tensorflow_quietly():
    """Imports TensorFlow and Keras, dropping only their C++ start-up INFO/WARNING lines.

    Everything else written to the process's stderr during the import (Python
    warnings, C++ errors) is written back unchanged.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced (a notebook): nothing to filter
        return
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), stderr_fd)
        try:
            import tensorflow  # noqa: F401
            import keras  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not _STARTUP_NOISE.match(line):
                    sys.stderr.write(line)


_import_tensorflow_quietly()

from kerasvision.validation import IGNORE_LABEL  # noqa: E402,F401
from kerasvision.flops import summary  # noqa: E402,F401
