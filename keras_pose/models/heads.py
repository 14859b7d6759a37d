"""The inference output of a model, picked by the run descriptor (one way for all models).

A training model may have many outputs (IMHN: stacks x scales) or logits
(FasterPose); the descriptor's ``output`` names the layer that is decoded and
the activation applied after it. ``inference_model`` returns the one-output
sub-model (B, H, W, 3) -> (B, h, w, C) the predictors and the exporter use.
"""
from __future__ import annotations

import keras

from keras_pose.models import blocks

__all__ = ["inference_model", "activated_name"]


def activated_name(layer: str, activation) -> str:
    """Name of the layer that applies ``activation`` after ``layer`` (``heatmaps_prob``)."""
    if not activation:
        return layer
    return f"{layer}_prob" if activation == "sigmoid" else f"{layer}_{activation}"


def _layer_names(model) -> set:
    return {layer.name for layer in model.layers}


def inference_model(model, output, batch_size: int | None = None):
    """One-output sub-model of ``model`` sharing its weights.

    Args:
        model: a functional Keras model (training or inference form).
        output: a RunDescriptor or its ``output`` dict {"layer", "activation"}.
        batch_size: fix the batch dimension (1 for TFLite export) or None.

    Returns:
        keras.Model (B, H, W, 3) -> (B, h, w, C). A model that already ends in
        the activated layer (an inference model saved before) is used as is.
    """
    output = getattr(output, "output", output)
    layer, act = str(output["layer"]), output.get("activation")
    src = model if batch_size is None else blocks.with_fixed_batch(model, batch_size)
    names = _layer_names(src)
    final = activated_name(layer, act)
    if final in names:
        out = src.get_layer(final).output
    elif layer in names:
        out = src.get_layer(layer).output
        if act:
            out = keras.layers.Activation(act, name=final, dtype="float32")(out)
    else:
        raise ValueError(f"model {model.name!r} has no layer {layer!r} (the descriptor's "
                         "inference output): the model and its config.json do not match")
    if len(src.outputs) == 1 and src.outputs[0] is out:
        return src
    return keras.Model(src.inputs[0], out, name=f"{model.name}_inference")
