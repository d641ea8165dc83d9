"""buffalo_s through this project's own SCRFD and ArcFace classes gives what InsightFace's give.

The model classes replaced InsightFace's wrappers (models/scrfd.py, models/arcface.py,
models/transforms.py): here InsightFace's own SCRFD, ``norm_crop`` and ArcFaceONNX run
the same passes over the same photos, and every box, landmark, score and embedding
must agree within 1e-5. A wrong anchor order, mean, colour order or template point
would move them by far more.
"""

from __future__ import annotations

import warnings

import numpy as np
from insightface.model_zoo import get_model
from insightface.utils import face_align

from models.analyzer import FaceAnalyzer
from models.base import RawDetections
from models.detector import FaceDetector
from service.harness.photos import DATASETS, crop, package_photo, scaled

PACK = "buffalo_s"  # the pack fixture loads it (conftest.py)
TOLERANCE = 1e-5


class InsightFaceScrfd:
    """InsightFace's SCRFD behind this project's detector-model interface."""

    def __init__(self, path: str) -> None:
        self.model = get_model(path, providers=["CPUExecutionProvider"])
        self.model.prepare(-1, input_size=(640, 640))

    def detect(self, image: np.ndarray, input_size: tuple[int, int], threshold: float) -> RawDetections:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            boxes, landmarks = self.model.detect(image, input_size=input_size, det_thresh=threshold)
        return RawDetections(boxes[:, :4], landmarks, boxes[:, 4])


def _photos(analyzer: FaceAnalyzer) -> list[bytes]:
    group = package_photo("t1.jpg")
    photos = [group, package_photo("Tom_Hanks_54745.png"), package_photo("players.jpg")]
    box = analyzer.faces_in_bytes(group)[0].box()
    photos.append(crop(group, box, 1.1))  # a close-up: the padded pass
    photos.append(scaled(group, 4.0))  # a large photo: the large-photo pass and a reduced decode
    folder = DATASETS / "groups" / "images"
    if folder.is_dir():
        photos += [path.read_bytes() for path in sorted(folder.iterdir())[:3]]
    return photos


def test_detections_and_embeddings_equal_insightfaces(pack) -> None:
    ours = FaceAnalyzer(pack)
    theirs = FaceAnalyzer(pack)
    theirs.detector = FaceDetector(pack, model=InsightFaceScrfd(str(pack.detector.path)))
    arcface = get_model(str(pack.embedder.path), providers=["CPUExecutionProvider"])
    compared = 0
    for data in _photos(ours):
        mine = ours.faces_in_bytes(data)
        frame = theirs._detect(data)
        assert len(mine) == len(frame.detections) > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            crops = [face_align.norm_crop(frame.image, d.landmarks, 112) for d in frame.detections]
        vectors = np.asarray(arcface.get_feat(crops), np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        scale = frame.factor
        for face, detection, vector in zip(mine, frame.detections, vectors, strict=True):
            full = (detection.bbox + 0.5) * scale - 0.5, (detection.landmarks + 0.5) * scale - 0.5
            np.testing.assert_allclose(face.detection.bbox, full[0], rtol=TOLERANCE, atol=TOLERANCE)
            np.testing.assert_allclose(face.detection.landmarks, full[1], rtol=TOLERANCE, atol=TOLERANCE)
            assert abs(face.detection.score - detection.score) <= TOLERANCE
            np.testing.assert_allclose(face.embedding, vector, atol=TOLERANCE)
            compared += 1
    assert compared >= 20, compared
