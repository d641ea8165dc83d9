"""SFace (OpenCV Zoo, 2021dec) embeddings, fed as OpenCV's ``FaceRecognizerSF`` feeds them.

The crop is the 112x112 ArcFace-template alignment (OpenCV's alignCrop uses the same five
points); the blob is RGB 0-255 with no mean or scale, because the network subtracts
127.5 and multiplies by 1/128 itself (its first two nodes). Measured on LFW pairs rather
than taken on trust: see tests/unit/models/test_pack_yunet_sface.py.
"""

from __future__ import annotations

import numpy as np

from . import transforms
from .base import EmbedderModel


class SFace(EmbedderModel):
    crop_size = transforms.TEMPLATE_SIDE

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        side = (self.crop_size, self.crop_size)
        return self.run(transforms.blob(crops, side, mean=0.0, std=1.0, rgb=True))[0]
