"""kerasvision: computer-vision models for Keras 3.

Classifiers, FCN and U-Net segmentation, autoencoders, GANs and diffusion,
trained with `model.fit` and exported for TF Serving.
"""

__version__ = "0.1.0"

from kerasvision.validation import IGNORE_LABEL  # noqa: E402,F401
from kerasvision.flops import summary  # noqa: E402,F401
