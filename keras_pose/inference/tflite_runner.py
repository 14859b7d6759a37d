"""TFLiteRunner: image -> letterbox -> LiteRT interpreter -> codec decode -> Poses (original pixels).

The phone-side path: NumPy, OpenCV and ``ai_edge_litert`` only -
no TensorFlow import (``tf.lite.Interpreter`` is a fallback used only when ai-edge-litert is
missing). The sidecar ``model.json`` written by ``keras_pose.export.tflite`` supplies the codec,
the KeypointSpec and the I/O quantization; normalisation lives inside the graph, so the runner
only letterboxes, casts/quantizes, runs and dequantizes.
"""
from __future__ import annotations

import json
import logging
import pathlib
import time

import numpy as np

from keras_pose.descriptor import DescriptorError, RunDescriptor, build_codec, input_convention
from keras_pose.structures import Poses, apply_affine, invert_affine

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "keras_pose.tflite/2"    # model.json with a run descriptor
_SIDECAR_FORMAT_1 = "keras_pose.tflite/1"  # before descriptors: still read


class TFLiteRunnerError(ValueError):
    """A bad model, sidecar or image given to the TFLite runner (one clear line)."""


# ----------------------------------------------------------------- image input
def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a file; one clear error when it cannot be read."""
    from keras_pose.io import load_image# BGR -> RGB at read time
    try:
        return load_image(pathlib.Path(path))
    except (ValueError, OSError) as e:
        raise TFLiteRunnerError(str(e).splitlines()[0] if str(e) else f"cannot read image {path}") from e


def letterbox(image, input_hw):
    """Letterbox (H0, W0, 3) RGB into the model's fixed (H, W).

    Returns (x, M): x (H, W, 3) float32 RGB 0..255, M the (2, 3) affine original ->
    model-input pixels. Delegates to ``keras_pose.inference.preprocess.letterbox_to`` so the
    Keras predictor and this runner see identical inputs.
    """
    from keras_pose.geometry import letterbox_to
    hw = tuple(int(v) for v in input_hw)
    x, m = letterbox_to(image, hw)
    return np.asarray(x, np.float32), np.asarray(m, np.float64)


def _check_image(image):
    """A path or an array (RGB/gray, uint8 or float 0..255) -> (H, W, 3) uint8 RGB."""
    if image is None:
        raise TFLiteRunnerError("image is None (was the frame read?)")
    return read_image(image) if isinstance(image, (str, pathlib.Path)) else _as_rgb(image)


def _as_rgb(array):
    from keras_pose.io import load_image
    try:
        return load_image(np.asarray(array))
    except ValueError as e:
        raise TFLiteRunnerError(str(e)) from e


# ----------------------------------------------------------------- interpreter
def _interpreter_module():
    try:
        from ai_edge_litert import interpreter as mod
        return mod
    except ImportError:  # only then pay the TensorFlow import
        import tensorflow as tf
        log.warning("ai-edge-litert is not installed; falling back to tf.lite.Interpreter")
        return _TfLiteShim(tf)


class _TfLiteShim:
    def __init__(self, tf):
        self.Interpreter = tf.lite.Interpreter
        self.OpResolverType = tf.lite.experimental.OpResolverType


def make_interpreter(model, num_threads=2):
    """An allocated interpreter for a .tflite path or bytes.

    If the default XNNPACK delegate fails to prepare (an int8 activation with a zero range
    from dead units; docs/tf_stack_notes.md §3) retry with the builtin kernels only, and log it.
    """
    mod = _interpreter_module()
    src = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) \
        else {"model_path": str(model)}
    name = "<bytes>" if "model_content" in src else str(model)
    if "model_path" in src:
        p = pathlib.Path(model)
        if not p.is_file():
            raise TFLiteRunnerError(f"TFLite model not found: {p}")
    try:
        interp = mod.Interpreter(num_threads=num_threads, **src)
    except (ValueError, RuntimeError) as e:
        raise TFLiteRunnerError(f"cannot load TFLite model {name}: not a valid .tflite "
                                f"flatbuffer (truncated or corrupt?): {e}".splitlines()[0]) from e
    try:
        interp.allocate_tensors()
        return interp
    except RuntimeError as e:
        log.warning("XNNPACK failed to prepare %s (%s); retrying without default delegates",
                    name, str(e).splitlines()[0])
    interp = mod.Interpreter(num_threads=num_threads, experimental_op_resolver_type=
                             mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, **src)
    try:
        interp.allocate_tensors()
    except RuntimeError as e:
        raise TFLiteRunnerError(f"cannot prepare TFLite model {name} even without XNNPACK: "
                                f"{str(e).splitlines()[0]}") from e
    return interp


class NetRunner:
    """The network alone: (H, W, 3) float RGB 0..255 -> (h, w, C) float32 maps.

    Quantizes the input with the model's (scale, zero_point) when its input is integer and
    dequantizes the output likewise.
    """

    def __init__(self, model, num_threads=2):
        self.interpreter = make_interpreter(model, num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        self.input_shape = tuple(int(v) for v in self.input["shape"])
        if len(self.input_shape) != 4:
            raise TFLiteRunnerError(f"TFLite model input must be NHWC, got {self.input_shape}")

    @property
    def input_hw(self):
        return self.input_shape[1:3]

    def quantize_input(self, x):
        dt = np.dtype(self.input["dtype"])
        x = np.asarray(x, np.float32)
        if dt.kind == "f":
            return x.astype(dt)
        scale, zp = self.input["quantization"]
        if scale:
            x = np.round(x / scale + zp)
        info = np.iinfo(dt)
        return np.clip(x, info.min, info.max).astype(dt)

    def run(self, x, output_index=0):
        """x: (H, W, 3) or (1, H, W, 3) float -> (h, w, C) float32 (batch dim dropped)."""
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape) != self.input_shape:
            raise TFLiteRunnerError(f"input shape {tuple(x.shape)} != model input {self.input_shape}")
        self.interpreter.set_tensor(self.input["index"], self.quantize_input(x))
        self.interpreter.invoke()
        d = self.outputs[output_index]
        y = self.interpreter.get_tensor(d["index"])
        scale, zp = d["quantization"]
        if np.dtype(d["dtype"]).kind != "f":
            y = (y.astype(np.float32) - zp) * (scale if scale else 1.0)
        return np.asarray(y, np.float32)[0]


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
    import hashlib

    if hashlib.sha256(pathlib.Path(model_path).read_bytes()).hexdigest() != want:
        raise TFLiteRunnerError(f"sidecar {sidecar_path} describes another model than "
                                f"{model_path} (tflite_sha256 differs): re-run the export")


class TFLiteRunner:
    """Pose estimation with an exported ``model.tflite`` and its ``model.json``.

    Args:
        model_path: the .tflite file.
        sidecar: its model.json (default: ``model.json`` beside the model).
        num_threads: interpreter threads.

    ``runner(image)`` / ``runner.predict(image)``: image (H0, W0, 3) RGB uint8 (or a path)
    -> Poses with keypoints (P, K, 3) in original-image pixels. ``last_timing`` holds the
    seconds spent in preprocessing, the network and decoding for the latest call.
    """

    def __init__(self, model_path, sidecar=None, num_threads=2):
        model_path = pathlib.Path(model_path)
        self.net = NetRunner(model_path, num_threads)
        self.sidecar_path = pathlib.Path(sidecar) if sidecar else model_path.with_name("model.json")
        self.meta = load_sidecar(self.sidecar_path, self.net)
        _check_same_export(model_path, self.sidecar_path, self.meta)
        self.descriptor = self.meta["descriptor"]
        self.task = self.descriptor.task
        self.codec = build_codec(self.descriptor)
        self.last_timing = {}

    @property
    def input_hw(self):
        return self.net.input_hw

    def __call__(self, image, boxes=None) -> Poses:
        return self.predict(image, boxes)

    def maps(self, image):
        """(h, w, C) float32 maps of the letterboxed image and the (2, 3) letterbox affine."""
        img = _check_image(image)
        x, m = letterbox(img, self.input_hw)
        return self.net.run(x), m

    def predict(self, image, boxes=None) -> Poses:
        """Persons in ``image`` (original pixels); ``boxes`` (N, 4) only for top-down models."""
        if self.task == "top_down":
            return self._predict_top_down(image, boxes)
        t0 = time.perf_counter()
        img = _check_image(image)
        x, m = letterbox(img, self.input_hw)
        t1 = time.perf_counter()
        maps = self.net.run(x)
        t2 = time.perf_counter()
        poses = self.codec.decode(maps).transform(invert_affine(m))
        t3 = time.perf_counter()
        self.last_timing = {"preprocess": t1 - t0, "network": t2 - t1, "decode": t3 - t2}
        return poses

    def _predict_top_down(self, image, boxes):
        """One crop per COCO box (x, y, w, h) -> HeatmapCodec.decode -> original pixels.

        The person score is the mean of the keypoint scores (maxima of the maps).
        """
        from keras_pose import geometry as crops
        if boxes is None:
            raise TFLiteRunnerError("a top-down model needs person boxes: predict(image, boxes)")
        boxes = np.asarray(boxes, np.float64)
        if boxes.size and (boxes.ndim != 2 or boxes.shape[1] < 4):
            raise TFLiteRunnerError(f"boxes must be (N, 4) COCO [x, y, w, h], got {boxes.shape}")
        t0 = time.perf_counter()
        img = _check_image(image)
        h, w = self.input_hw
        kps, t_net, t_dec = [], 0.0, 0.0
        for box in boxes.reshape(-1, boxes.shape[-1] if boxes.size else 4):
            center, scale = crops.box_to_center_scale(box[:4], w / h)
            m = crops.crop_affine(center, scale, 0.0, (h, w))
            x = crops.warp_crop(img, m, (h, w))
            a = time.perf_counter()
            maps = self.net.run(np.asarray(x, np.float32))
            b = time.perf_counter()
            kp = self.codec.decode(maps)                        # (K, 3) in crop pixels
            kp[:, :2] = apply_affine(kp[:, :2], invert_affine(m))
            kps.append(kp)
            t_dec += time.perf_counter() - b
            t_net += b - a
        total = time.perf_counter() - t0
        self.last_timing = {"preprocess": total - t_net - t_dec, "network": t_net, "decode": t_dec}
        if not kps:
            return Poses.empty(self.codec.spec.num_keypoints)
        kps = np.stack(kps).astype(np.float32)
        return Poses(kps, kps[:, :, 2].mean(axis=1))
