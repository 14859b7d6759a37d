"""Networks: a Keras model or a LiteRT interpreter behind one small interface.

A network maps a batch of model inputs to maps; it knows nothing of images,
letterboxes or codecs (the predictors do):

    network.run(batch)   # (N, H, W, 3) RGB 0..255 -> (N, h, w, C) float32
    network.input_size   # (H, W) for a fixed-size network, None for any size

Normalisation lives inside the graph, so both take raw pixels. ``LiteRTNetwork``
quantises an integer input and dequantises integer outputs itself. This module
imports without TensorFlow: Keras is imported only when a ``KerasNetwork`` is
built (and ``tf.lite`` only if ai-edge-litert is missing).
"""
from __future__ import annotations

import collections
import logging
import pathlib

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["KerasNetwork", "LiteRTNetwork", "TFLiteRunnerError", "as_network",
           "make_interpreter"]

_MAX_PREDICT_FNS = 32  # traced Keras predict functions kept (one per input size)


class TFLiteRunnerError(ValueError):
    """A bad .tflite model, sidecar or image on the LiteRT path (one clear line)."""


# --------------------------------------------------------------------- Keras
class KerasNetwork:
    """A Keras model's inference output as a network.

    Args:
        model: a functional Keras model, (B, H, W, 3) RGB 0..255 input.
        output: which output is decoded: a RunDescriptor, its ``output`` dict
            {"layer", "activation"}, or None for a model with one output.
        dynamic: re-build a fixed-size model on a (None, None) input (it must be
            fully convolutional) so it runs at any letterbox size.
        batch_size: inputs per ``predict`` batch.
    """

    def __init__(self, model, output=None, dynamic: bool = False, batch_size: int = 8):
        import keras

        if not getattr(model, "outputs", None) or not getattr(model, "inputs", None):
            raise ValueError("a KerasNetwork needs a functional Keras model (with .inputs/.outputs)")
        shape = tuple(model.inputs[0].shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"expected an NHWC RGB image input, got input shape {shape}")
        self.trained_size = None if None in shape[1:3] else (int(shape[1]), int(shape[2]))
        if dynamic and self.trained_size is not None:
            model = _dynamic_clone(model)
            shape = tuple(model.inputs[0].shape)
        if output is not None:
            from keras_pose.models.heads import inference_model
            model = inference_model(model, output)
        elif len(model.outputs) != 1:
            raise ValueError(f"model {model.name!r} has {len(model.outputs)} outputs: say which "
                             "one is decoded (output= / descriptor=, or keras_pose.load a run)")
        self.model = model if len(model.outputs) == 1 else keras.Model(model.inputs, model.outputs[0])
        self.fixed_batch = shape[0]
        self.input_size = None if None in shape[1:3] else (int(shape[1]), int(shape[2]))
        self.channels = int(self.model.outputs[0].shape[-1])
        self.batch_size = max(1, int(batch_size))
        self._predict_fns = collections.OrderedDict()

    def _predict(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """``model.predict`` with one Keras predict function per input size.

        Keras traces ``predict`` with ``reduce_retracing``: after a second input
        size it re-traces with (None) spatial dims, and in TF 2.21 dilated convs
        (the IMHN stem) traced that way reuse the SpaceToBatch padding of the
        first size and fail ("padded_shape ... is not divisible by
        block_shape"). Letterboxed sizes are few, so each gets its own
        function, traced with static shapes.
        """
        key = tuple(x.shape[1:3])
        self.model.predict_function = self._predict_fns.pop(key, None)  # None: Keras makes one
        out = self.model.predict(x, batch_size=batch_size, verbose=0)
        self._predict_fns[key] = self.model.predict_function
        while len(self._predict_fns) > _MAX_PREDICT_FNS:
            self._predict_fns.popitem(last=False)  # least recently used
        return np.asarray(out)

    def run(self, batch) -> np.ndarray:
        """(N, H, W, 3) RGB 0..255 -> (N, h, w, C) float32."""
        x = np.asarray(batch, np.float32)
        n = x.shape[0]
        if self.fixed_batch:  # e.g. an export model built with batch_size=1
            b = int(self.fixed_batch)
            pad = (-n) % b
            if pad:
                x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
            out = np.concatenate([self._predict(x[i:i + b], b)
                                  for i in range(0, x.shape[0], b)])[:n]
        else:
            out = self._predict(x, self.batch_size)
        return out.astype(np.float32, copy=False)


def _dynamic_clone(model):
    """A copy of a fixed-size functional model on a (None, None, 3) input (weights copied)."""
    import keras

    inp = keras.Input(shape=(None, None, 3), name=model.inputs[0].name)
    try:
        clone = keras.models.clone_model(model, input_tensors=inp)
    except Exception as e:  # noqa: BLE001 - subclassed models or layers tied to the input size
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"model {model.name!r} has a fixed {tuple(model.inputs[0].shape[1:3])} "
                         f"input and cannot be re-built for other sizes ({why}); "
                         "leave input_height and scales at their defaults") from None
    clone.set_weights(model.get_weights())
    return clone


# -------------------------------------------------------------------- LiteRT
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

    If the default XNNPACK delegate fails to prepare (an int8 activation with a
    zero calibration range from dead units) retry with the builtin kernels
    only, and log it.
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


class LiteRTNetwork:
    """A .tflite model (path or bytes) as a network, run by ai-edge-litert.

    The exported graph has a fixed (1, H, W, 3) input: ``run`` feeds a batch one
    input at a time. An integer input is quantised with the model's
    (scale, zero_point) and an integer output dequantised likewise.
    """

    def __init__(self, model, num_threads: int = 2):
        self.interpreter = make_interpreter(model, num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        self.input_shape = tuple(int(v) for v in self.input["shape"])
        if len(self.input_shape) != 4:
            raise TFLiteRunnerError(f"TFLite model input must be NHWC, got {self.input_shape}")
        self.input_size = self.input_shape[1:3]
        self.channels = int(self.outputs[0]["shape"][-1])

    @property
    def input_hw(self):
        return self.input_size

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

    def _invoke(self, x):
        if tuple(x.shape) != self.input_shape:
            raise TFLiteRunnerError(f"input shape {tuple(x.shape)} != model input {self.input_shape}")
        self.interpreter.set_tensor(self.input["index"], self.quantize_input(x))
        self.interpreter.invoke()
        d = self.outputs[0]
        y = self.interpreter.get_tensor(d["index"])
        scale, zp = d["quantization"]
        if np.dtype(d["dtype"]).kind != "f":
            y = (y.astype(np.float32) - zp) * (scale if scale else 1.0)
        return np.asarray(y, np.float32)

    def run(self, batch) -> np.ndarray:
        """(N, H, W, 3) -> (N, h, w, C) float32; a single (H, W, 3) input -> (h, w, C)."""
        x = np.asarray(batch)
        if x.ndim == 3:
            return self._invoke(x[None])[0]
        b = self.input_shape[0]
        return np.concatenate([self._invoke(x[i:i + b]) for i in range(0, x.shape[0], b)])


def as_network(model, output=None, dynamic: bool = False, batch_size: int = 8):
    """A network from a network (returned as is) or a Keras model (``KerasNetwork``)."""
    if hasattr(model, "run") and hasattr(model, "input_size"):
        return model
    return KerasNetwork(model, output, dynamic=dynamic, batch_size=batch_size)
