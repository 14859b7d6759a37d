"""Quantization-aware training (QAT) and its int8 TFLite conversion.

tfmot 0.8.1 quantizes only tf_keras (Keras 2) models (docs/tf_stack_notes.md §2), so QAT runs on a
*twin*: the same builder (``build_imhn`` / ``build_fasterpose``) called with ``K=tf_keras``,
weights copied from the Keras 3 model with get/set_weights. Layers tfmot's default registry
does not know get a QuantizeConfig: pure data movement (DepthToSpace, padding, reshapes) a
no-op one, arithmetic (the SE gate's Multiply, LeakyReLU, Rescaling) one that fake-quantizes
the output like tfmot does for Add.

Fine-tuning is distillation by default: the targets are the float Keras model's own maps on
the training images (MSE), so QAT needs no labels and learns to undo the quantization error.

Importing tfmot sets ``TF_USE_LEGACY_KERAS=1`` for the process and its children; this module
touches ``tf.keras`` (binding it to Keras 3) before the import and restores the variable
afterwards. tfmot is imported only here, and only when a function is called.
"""
from __future__ import annotations

import os

import numpy as np

# Layers that only move data: fake-quantizing their output would add error for nothing.
_DATA_MOVEMENT = ("DepthToSpace", "ZeroPadding2D", "Reshape", "Cropping2D", "Flatten",
                  "Permute", "Identity")


def _import_tfmot():
    """(tf, tf_keras, tfmot) with Keras 3 kept as ``tf.keras`` and the env var restored."""
    import keras  # noqa: F401  Keras 3 first
    import tensorflow as tf
    _ = tf.keras.Model  # bind tf.keras to Keras 3 before tfmot flips TF_USE_LEGACY_KERAS
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tf_keras
        import tensorflow_model_optimization as tfmot
    except ImportError as e:
        raise ImportError("QAT needs the 'qat' extra: pip install "
                          "tensorflow-model-optimization==0.8.1 tf-keras") from e
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return tf, tf_keras, tfmot


def _quantize_configs(tfmot):
    qk = tfmot.quantization.keras

    class NoOpQuantizeConfig(qk.QuantizeConfig):
        """No fake-quant: the layer only rearranges already-quantized values."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    class OutputQuantizeConfig(NoOpQuantizeConfig):
        """Fake-quantize the output (8 bit, per tensor, asymmetric), as tfmot does for Add."""

        def get_output_quantizers(self, layer):
            return [qk.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    return NoOpQuantizeConfig, OutputQuantizeConfig


def _builder_for(config):
    """(builder(config, K=...), config, its inference output {"layer", "activation"}).

    The config names the output that is decoded (as in the run descriptor).
    """
    from keras_pose.models import configs, presets
    if isinstance(config, dict):
        config = configs.IMHNConfig.from_dict(config)
    return presets.build_model, config, config.inference_output


def build_twin(config, keras_weights=None, batch_size=None):
    """The tf_keras twin of the model ``config`` describes, inference output only.

    Args:
        config: IMHNConfig (or its dict) / FasterPoseConfig - what built the Keras 3 model.
        keras_weights: ``keras_model.get_weights()`` of the full Keras 3 model (None: keep
            the fresh initialisation, e.g. when weights are set afterwards).
        batch_size: fixed batch for the input (1 for export) or None.
    Returns:
        tf_keras.Model (B, H, W, 3) -> (B, h, w, C): for IMHN the last stack's finest output.
    """
    tf, tf_keras, _ = _import_tfmot()
    from keras_pose.models.blocks import depth_to_space_class
    depth_to_space_class(tf_keras)  # create the tf_keras DepthToSpace class once
    builder, config, output = _builder_for(config)
    full = builder(config, K=tf_keras)
    if keras_weights is not None:
        full.set_weights(keras_weights)
    out = full.get_layer(output["layer"]).output
    if output.get("activation"):
        out = tf_keras.layers.Activation(output["activation"], name="inference_activation")(out)
    sub = tf_keras.Model(full.inputs[0], out, name="qat_inference")
    if batch_size is None:
        return sub
    inp = tf_keras.Input(shape=tuple(sub.inputs[0].shape[1:]), batch_size=batch_size,
                         name="image")
    fixed = tf_keras.models.clone_model(sub, input_tensors=inp)
    fixed.set_weights(sub.get_weights())
    return fixed


def quantize_twin(twin):
    """Annotate every layer tfmot cannot quantize by default and apply QAT wrappers."""
    tf, tf_keras, tfmot = _import_tfmot()
    qk = tfmot.quantization.keras
    from keras_pose.models.blocks import depth_to_space_class
    d2s = depth_to_space_class(tf_keras)
    NoOp, OutputQ = _quantize_configs(tfmot)
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as reg)
    registry = reg.Default8BitQuantizeRegistry()

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer) or registry.supports(layer):
            return layer
        if isinstance(layer, d2s) or type(layer).__name__ in _DATA_MOVEMENT:
            return qk.quantize_annotate_layer(layer, NoOp())
        return qk.quantize_annotate_layer(layer, OutputQ())

    annotated = tf_keras.models.clone_model(twin, clone_function=annotate)
    annotated.set_weights(twin.get_weights())
    with qk.quantize_scope({"DepthToSpace": d2s, "NoOpQuantizeConfig": NoOp,
                            "OutputQuantizeConfig": OutputQ}):
        return qk.quantize_apply(qk.quantize_annotate_model(annotated))


def qat_finetune(model_builder_config, keras_weights, dataset, epochs=1, steps=None,
                 learning_rate=1e-4, batch_size=4, teacher=None, verbose=0):
    """Fine-tune a QAT twin.

    Args:
        model_builder_config: the IMHNConfig / FasterPoseConfig of the trained model.
        keras_weights: the trained Keras 3 model's ``get_weights()``.
        dataset: (N, H, W, 3) float32 images (distillation targets come from ``teacher``)
            or an iterable / tf.data.Dataset of (images, target maps of the inference output).
        teacher: callable images -> maps (e.g. the Keras 3 export model); needed for arrays.
        steps: steps per epoch (default: one pass).
    Returns:
        the QAT tf_keras model (dynamic batch) after fine-tuning.
    """
    tf, tf_keras, _ = _import_tfmot()
    twin = build_twin(model_builder_config, keras_weights)
    qat = quantize_twin(twin)
    if isinstance(dataset, np.ndarray):
        calibrate_ranges(qat, twin, dataset)
        if teacher is None:
            raise ValueError("qat_finetune: an image array needs a teacher for the targets")
        x = dataset.astype(np.float32)
        y = np.concatenate([np.asarray(teacher(x[i:i + batch_size]), np.float32)
                            for i in range(0, len(x), batch_size)])
        ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0)
        dataset = ds.repeat().batch(batch_size)
        steps = steps or max(1, len(x) // batch_size)
    _freeze_batch_norm(qat, tf_keras)
    qat.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss="mse")
    qat.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=verbose)
    return qat


def calibrate_ranges(qat_model, twin, images, batch_size=4):
    """Start every activation quantizer at the float model's observed range.

    tfmot's moving-average quantizers start at [-6, 6] and move with decay 0.999, so a short
    fine-tune would keep steps of 12/255 on maps that live in [0, 1]. Each wrapper's
    ``post_activation``/``output`` range is set to the min/max (with 0 included) of the same
    layer's output in the float ``twin`` over ``images``; the input quantizer to the pixels'.
    """
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import (
        QuantizeLayer)
    wrappers = {l.layer.name: l for l in qat_model.layers if hasattr(l, "layer") and any(
        _quantizer_var(v) for v in l.non_trainable_weights)}
    names = [n for n in wrappers if n in {l.name for l in twin.layers}]
    probe = type(twin)(twin.inputs, [twin.get_layer(n).output for n in names])
    lo = {n: 0.0 for n in names}
    hi = {n: 0.0 for n in names}
    x = np.asarray(images, np.float32)
    for i in range(0, len(x), batch_size):
        outs = probe(x[i:i + batch_size], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, y in zip(names, outs):
            lo[n] = min(lo[n], float(tf.reduce_min(y)))
            hi[n] = max(hi[n], float(tf.reduce_max(y)))
    for n in names:
        for v in wrappers[n].non_trainable_weights:
            kind = _quantizer_var(v)
            if kind:
                v.assign(lo[n] if kind == "min" else hi[n])
    for l in qat_model.layers:
        if isinstance(l, QuantizeLayer):
            for v in l.non_trainable_weights:
                kind = _quantizer_var(v, prefix="quantize_layer")
                if kind:
                    v.assign(min(float(x.min()), 0.0) if kind == "min" else float(x.max()))


def _quantizer_var(v, prefix=None):
    """'min' / 'max' for an activation-range variable of a QAT wrapper, else None."""
    base = v.name.split("/")[-1].split(":")[0]
    for p in ((prefix,) if prefix else ("post_activation", "output")):
        if base == f"{p}_min":
            return "min"
        if base == f"{p}_max":
            return "max"
    return None


def _freeze_batch_norm(model, tf_keras):
    """Keep BatchNorm in inference mode during QAT fine-tuning.

    A few steps on small batches would otherwise drag the moving statistics (momentum 0.9)
    toward those batches, and the int8 graph folds exactly those statistics into the convs.
    """
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # QuantizeWrapper -> the wrapped layer
        if isinstance(inner, tf_keras.layers.BatchNormalization):
            layer.trainable = False


def convert_qat(qat_model, config, io_dtype="uint8", calibration=None) -> bytes:
    """int8 TFLite bytes of a QAT model, on a batch-1 input.

    The trained QAT weights move to a batch-1 QAT twin of the same structure (get/set
    weights); the fake-quant ranges learnt in training give the quantization parameters,
    the representative dataset only fills any range QAT did not record.
    """
    tf, tf_keras, _ = _import_tfmot()
    fixed = quantize_twin(build_twin(config, None, batch_size=1))
    fixed.set_weights(qat_model.get_weights())
    c = tf.lite.TFLiteConverter.from_keras_model(fixed)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                   tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if calibration is not None:
        cal = np.asarray(calibration, np.float32)
        c.representative_dataset = lambda: ([x[None]] for x in cal)
    dt = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[io_dtype]
    c.inference_input_type = dt
    c.inference_output_type = dt
    return c.convert()


def model_config_from(config: dict, model=None):
    """The builder config of a training run: ``get_preset(config['preset'])`` from its
    ``config.json``, with the input size of the saved ``model`` when that differs."""
    from keras_pose.models.presets import get_preset
    name = config.get("preset") if isinstance(config, dict) else None
    if not name:
        raise ValueError("QAT needs the model's builder config: export from --model_dir (its "
                         "config.json names the preset) or pass model_config=")
    from keras_pose.models.presets import for_spec
    from keras_pose.train.config import keypoint_spec
    cfg = for_spec(get_preset(name), keypoint_spec(config))   # the head of the run's spec
    if model is not None:
        hw = tuple(int(v) for v in model.inputs[0].shape[1:3])
        if None not in hw and hw != tuple(cfg.input_size):
            cfg = cfg.replace(input_size=hw)
    return cfg


def qat_export(model, config: dict, calibration, teacher, io_dtype="uint8", epochs=1,
               steps=50, model_config=None, learning_rate=1e-4) -> bytes:
    """QAT fine-tune ``model`` (Keras 3) by distillation on ``calibration`` and convert to int8.

    ``teacher`` is the Keras export model (``export.tflite.build_export_model``) whose
    outputs the quantised twin learns to match.
    """
    cfg = model_config or model_config_from(config, model)
    qat = qat_finetune(cfg, model.get_weights(), np.asarray(calibration, np.float32),
                       epochs=epochs, steps=steps, learning_rate=learning_rate,
                       teacher=lambda x: teacher.predict(x, batch_size=1, verbose=0))
    return convert_qat(qat, cfg, io_dtype, calibration)
