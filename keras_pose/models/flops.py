"""Parameter and compute counting for built models (Keras 3 or tf_keras).

Two compute measures, both over Conv2D / DepthwiseConv2D / Conv2DTranspose /
Dense layers only (BN, activations, pooling and adds are ignored, as in the
papers' tables):

* ``macs`` - true multiply-accumulates for one image. A conv costs
  ``kernel.numel * out_H * out_W``; a transposed conv scatters each *input*
  pixel through its kernel, so it costs ``kernel.numel * in_H * in_W``.
* ``hrnet_gflops`` - the convention behind the SimpleBaseline/HRNet/FasterPose
  tables (HRNet repo ``get_model_summary``; ``docs/method_top_down.md`` §2.2):
  ``weight.numel * out_H * out_W`` for every conv *and* transposed conv, divided
  by 1024^3. It is a MAC count (not 2x), in binary giga, and it counts a
  stride-2 transposed conv on its output grid, i.e. 4x its true MACs - which
  is why removing SimpleBaseline's deconvolution head "saves 58%" in this
  convention but only ~25% in true MACs.
"""
from __future__ import annotations

import math

_CONV = ("Conv2D", "DepthwiseConv2D")
_DECONV = ("Conv2DTranspose",)
_DENSE = ("Dense",)


def _shape(t):
    return tuple(t.shape)


def _spatial(shape):
    """Product of the spatial dims of an NHWC (or N...C) shape, batch and channels dropped."""
    return math.prod(int(d) for d in shape[1:-1])


def layer_costs(model):
    """Per-layer rows: (name, kind, kernel params, true MACs, HRNet-convention MACs)."""
    rows = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in _CONV + _DECONV + _DENSE:
            continue
        kernel = math.prod(int(d) for d in layer.kernel.shape)
        out_px = _spatial(_shape(layer.output))
        if kind in _DECONV:
            in_px = _spatial(_shape(layer.input))
            macs, hrnet = kernel * in_px, kernel * out_px
        else:
            macs = hrnet = kernel * out_px
        rows.append((layer.name, kind, kernel, macs, hrnet))
    return rows


def count_model(model) -> dict:
    """Summary of a built model for one input image.

    Returns ``params`` (all weights, BN moving statistics included, i.e.
    ``count_params()``), ``trainable_params``, ``macs``, ``gmacs`` (1e9),
    ``hrnet_gflops`` (1024^3, see module doc), ``input_shape`` and
    ``output_shapes`` (batch dim dropped), and ``layers``.
    """
    rows = layer_costs(model)
    macs = sum(r[3] for r in rows)
    hrnet = sum(r[4] for r in rows)
    trainable = sum(math.prod(int(d) for d in w.shape) for w in model.trainable_weights)
    outputs = model.outputs if isinstance(model.outputs, (list, tuple)) else [model.outputs]
    return {
        "params": int(model.count_params()),
        "trainable_params": int(trainable),
        "macs": int(macs),
        "gmacs": round(macs / 1e9, 4),
        "hrnet_gflops": round(hrnet / 1024 ** 3, 4),
        "input_shape": list(_shape(model.inputs[0])[1:]),
        "output_shapes": [list(_shape(o)[1:]) for o in outputs],
        "layers": len(model.layers),
    }
