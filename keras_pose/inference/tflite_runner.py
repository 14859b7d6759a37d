"""TFLiteRunner: an exported ``model.tflite`` + ``model.json`` as a pose predictor.

The phone-side path: NumPy, OpenCV and ``ai_edge_litert`` only - no TensorFlow
import. The runner is the task's predictor (``PosePredictor`` or
``TopDownPredictor``, the same code the Keras path runs) over a
``LiteRTNetwork``; the sidecar's run descriptor supplies the task, the codec and
the KeypointSpec. Normalisation lives inside the graph, so the network only
casts/quantizes, runs and dequantizes.
"""
from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np

from keras_pose.descriptor import DescriptorError, RunDescriptor, build_codec, input_convention
from keras_pose.geometry import letterbox_to
from keras_pose.inference.networks import LiteRTNetwork, TFLiteRunnerError, make_interpreter
from keras_pose.inference.predictor import PosePredictor
from keras_pose.inference.topdown_predictor import TopDownPredictor
from keras_pose.io import load_image

__all__ = ["SIDECAR_FORMAT", "TFLiteRunner", "TFLiteRunnerError", "load_sidecar",
           "make_interpreter", "read_image"]

SIDECAR_FORMAT = "keras_pose.tflite/2"    # model.json with a run descriptor
_SIDECAR_FORMAT_1 = "keras_pose.tflite/1"  # before descriptors: still read
NetRunner = LiteRTNetwork  # the name the export code and older scripts use


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a file; one clear error when it cannot be read."""
    try:
        return load_image(pathlib.Path(path))
    except (ValueError, OSError) as e:
        raise TFLiteRunnerError(str(e).splitlines()[0] if str(e) else f"cannot read image {path}") from e


def letterbox(image, input_hw):
    """Letterbox (H0, W0, 3) RGB into the model's fixed (H, W) (``geometry.letterbox_to``).

    Returns (x, M): x (H, W, 3) float32 RGB 0..255, M the (2, 3) affine original ->
    model-input pixels.
    """
    x, m = letterbox_to(image, tuple(int(v) for v in input_hw))
    return np.asarray(x, np.float32), np.asarray(m, np.float64)


# ----------------------------------------------------------------- full runner
def _legacy_descriptor(side: dict, where: str) -> RunDescriptor:
    """The descriptor of a ``keras_pose.tflite/1`` sidecar (written before descriptors)."""
    try:
        codec = side["codec"]
        shape = side["input"]["shape"]
        return RunDescriptor(
            task=side.get("task", "bottom_up"), keypoints=side["keypoint_spec"],
            codec={"type": codec["type"], "config": codec["config"]["config"]},
            input={"size": [int(shape[1]), int(shape[2])], **input_convention()},
            output={"layer": (side.get("keras_output_names") or ["output"])[0],
                    "activation": None})
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise TFLiteRunnerError(f"sidecar {where} (format 1) is incomplete: {e!r}") from None


def load_sidecar(path, net: NetRunner | None = None) -> dict:
    """Read ``model.json``, check its format and that it describes ``net``'s input.

    Returns the sidecar dict with ``"descriptor"`` as a RunDescriptor (for format-1
    sidecars, written before descriptors, derived from their fields).
    """
    p = pathlib.Path(path)
    if not p.is_file():
        raise TFLiteRunnerError(f"sidecar not found: {p} (export writes model.json beside "
                                f"model.tflite; pass sidecar= to point elsewhere)")
    try:
        side = json.loads(p.read_text())
        fmt = side.get("format")
    except (ValueError, AttributeError) as e:
        raise TFLiteRunnerError(f"sidecar {p} is not a keras_pose model.json: {e!r}") from e
    if fmt == SIDECAR_FORMAT:
        try:
            side["descriptor"] = RunDescriptor.from_dict(side.get("descriptor"), str(p))
        except DescriptorError as e:
            raise TFLiteRunnerError(str(e)) from None
    elif fmt == _SIDECAR_FORMAT_1:
        side["descriptor"] = _legacy_descriptor(side, str(p))
    else:
        raise TFLiteRunnerError(f"sidecar {p}: format {fmt!r} is not supported (this keras_pose "
                                f"reads {SIDECAR_FORMAT!r} and {_SIDECAR_FORMAT_1!r})")
    if net is not None:
        want = tuple(side.get("input", {}).get("shape", ()))
        if want != net.input_shape:
            raise TFLiteRunnerError(f"sidecar {p} does not match the model: sidecar input "
                                    f"{want}, model input {net.input_shape}")
        out_c = int(net.outputs[0]["shape"][-1])
        side_c = side.get("outputs", [{}])[0].get("shape", [out_c])[-1]
        if int(side_c) != out_c:
            raise TFLiteRunnerError(f"sidecar {p} does not match the model: sidecar output "
                                    f"channels {side_c}, model {out_c}")
    return side


def _check_same_export(model_path, sidecar_path, side: dict) -> None:
    """The sidecar describes these exact graph bytes (exports record ``tflite_sha256``;
    an older sidecar without it is trusted). Catches a model.tflite replaced by
    another export beside the earlier export's model.json."""
    want = side.get("tflite_sha256")
    if want is None:
        return
    if hashlib.sha256(pathlib.Path(model_path).read_bytes()).hexdigest() != want:
        raise TFLiteRunnerError(f"sidecar {sidecar_path} describes another model than "
                                f"{model_path} (tflite_sha256 differs): re-run the export")


class TFLiteRunner:
    """Pose estimation with an exported ``model.tflite`` and its ``model.json``.

    Args:
        model_path: the .tflite file.
        sidecar: its model.json (default: ``model.json`` beside the model).
        num_threads: interpreter threads.
        **options: predictor options (bottom-up: ``flip``; top-down: ``flip``,
            ``batch_size``, ``oks_nms_threshold``, ``padding``).

    ``runner(image)`` / ``runner.predict(image[, boxes])``: image (H0, W0, 3) RGB uint8
    (or a path, or a list) -> Poses with keypoints (P, K, 3) in original-image pixels;
    top-down models need person ``boxes`` (N, 4) COCO [x, y, w, h]. ``last_timing``
    holds the seconds per stage of the latest call.
    """

    def __init__(self, model_path, sidecar=None, num_threads=2, **options):
        model_path = pathlib.Path(model_path)
        self.net = LiteRTNetwork(model_path, num_threads)
        self.sidecar_path = pathlib.Path(sidecar) if sidecar else model_path.with_name("model.json")
        self.meta = load_sidecar(self.sidecar_path, self.net)
        _check_same_export(model_path, self.sidecar_path, self.meta)
        self.descriptor = self.meta["descriptor"]
        self.task = self.descriptor.task
        self.codec = build_codec(self.descriptor)
        try:
            if self.task == "top_down":
                self.predictor = TopDownPredictor(self.net, self.codec, **options)
            else:
                self.predictor = PosePredictor(self.net, self.codec, **options)
        except TypeError as e:
            raise TFLiteRunnerError(f"bad option for a {self.task} model: {e}") from None

    @property
    def input_hw(self):
        return self.net.input_size

    @property
    def last_timing(self) -> dict:
        return self.predictor.last_timing

    def __call__(self, image, boxes=None):
        return self.predict(image, boxes)

    def maps(self, image):
        """Bottom-up: (h, w, C) float32 maps of the letterboxed image and the (2, 3) letterbox affine."""
        maps, m, _ = self.predictor.maps(_check_image(image))
        return maps, m

    def predict(self, image, boxes=None, box_scores=None):
        """Persons in ``image`` (original pixels); ``boxes`` (N, 4) only for top-down models."""
        images = [_check_image(im) for im in image] if isinstance(image, (list, tuple)) \
            else _check_image(image)
        try:
            if self.task == "top_down":
                if boxes is None:
                    raise TFLiteRunnerError("a top-down model needs person boxes: "
                                            "predict(image, boxes)")
                return self.predictor.predict(images, boxes, box_scores)
            return self.predictor.predict(images)
        except TFLiteRunnerError:
            raise
        except ValueError as e:
            raise TFLiteRunnerError(str(e).splitlines()[0]) from None


def _check_image(image):
    """A path or an array (RGB/gray, uint8 or float 0..255) -> (H, W, 3) uint8 RGB."""
    if image is None:
        raise TFLiteRunnerError("image is None (was the frame read?)")
    if isinstance(image, (str, pathlib.Path)):
        return read_image(image)
    try:
        return load_image(np.asarray(image))
    except ValueError as e:
        raise TFLiteRunnerError(str(e)) from e
