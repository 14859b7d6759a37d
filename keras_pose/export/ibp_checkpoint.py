"""The Simple Pose authors' PyTorch checkpoint <-> the Keras IMHN: names, shapes, config.

Li, Su, Wang, "Simple Pose", AAAI 2020 (network: paper §3, Fig. 3; the
authors' ``PoseNet`` module tree, docs/paper_model.md). A state dict of theirs
holds, per module (prefix ``posenet.`` from their eval wrapper and/or
``module.`` from DistributedDataParallel, stripped here):

* ``pre.conv1`` / ``pre.bn1`` (7x7/2 stem conv), ``pre.res1``, ``pre.res2``,
  ``pre.dilation.{0..5}.{conv,bn}`` - the stem;
* ``hourglass.{t}.hg.{level}.{0,1,2,3[,4]}`` - per level: the skip ResBlock,
  the downward ResBlock, the upward ResBlock, the 3x3 conv after the upsample
  and, at the deepest level, the innermost ResBlock;
* ``features.{t}.before_regress.{j}.{0,1,2}`` - two 3x3 ConvBNAct and the SE gate;
* ``outs.{t}.{j}.conv`` - the linear 1x1 prediction (with bias);
* ``merge_features.{t}.{j}.conv`` / ``merge_preds.{t}.{j}.conv`` - the
  identity mappings into stack t+1 (1x1 conv + BN).

A ResBlock ``r`` is ``r.convBlock.{0,3,6}`` (convs) with BN at ``{1,4,7}``
and, when its width changes, ``r.skipConv.{0,1}``. Conv kernels are
(O, I, kh, kw) there and (kh, kw, I, O) in Keras; Linear weights are
transposed. BatchNorm running statistics are copied (``num_batches_tracked``
is consumed and dropped: it does not change inference).

Input convention: their network takes BGR / 255; ours takes RGB 0..255 and
divides by 255 inside the graph before the stem's zero padding. Zero stays
zero under the division, so reversing the first conv's input channels makes
the two networks identical at every pixel, borders included.

The mapping is a NumPy-only table (``keras_layer_name -> torch prefix``); only
:func:`build_converted_model` and the weight setters touch Keras.
"""
from __future__ import annotations

import re

import numpy as np

from keras_pose.models.configs import IMHNConfig

__all__ = ["CheckpointMismatchError", "state_dict_from_checkpoint", "infer_config",
           "layer_table", "keras_weights_from_state_dict", "state_dict_from_keras",
           "truncate_stacks", "build_converted_model", "convert_checkpoint"]

_PREFIXES = ("module.", "posenet.")
_DILATIONS = (3, 3, 4, 4, 5, 5)


class CheckpointMismatchError(ValueError):
    """State dict and Keras model disagree (lists the unexpected / missing keys)."""


# ----------------------------------------------------------------- state dict
def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def state_dict_from_checkpoint(obj, source: str = "checkpoint") -> dict:
    """The authors' state dict from a loaded checkpoint, prefixes stripped.

    Accepts ``{"weights": sd, ...}`` (their training script; other entries
    such as the epoch or optimiser state are ignored), ``{"state_dict": sd}``
    or a bare state dict. Returns {key: float32 / int array}.
    """
    if isinstance(obj, dict):
        for name in ("weights", "state_dict"):
            if isinstance(obj.get(name), dict):
                obj = obj[name]
                break
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{source}: expected a state dict or {{'weights': state_dict}}, got "
                         f"{type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not isinstance(v, np.ndarray):
            raise ValueError(f"{source}: entry {k!r} is a {type(v).__name__}, not a tensor; "
                             "expected a state dict or {'weights': state_dict}")
        key = _strip(str(k))
        if key in out:
            raise CheckpointMismatchError(f"{source}: key {key!r} appears twice (with and "
                                          "without a module./posenet. prefix)")
        out[key] = v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
    return out


def _shape(sd, key, source):
    if key not in sd:
        raise CheckpointMismatchError(f"{source}: key {key!r} missing: not a Simple Pose "
                                      "PoseNet checkpoint (expected posenet.pre.*, "
                                      "posenet.hourglass.*, posenet.features.*, posenet.outs.*)")
    return sd[key].shape


def infer_config(sd: dict, input_size=(512, 512), source: str = "checkpoint") -> IMHNConfig:
    """IMHNConfig from tensor shapes: stacks, width, growth, order, heads.

    width = the level-0 skip ResBlock's output channels, growth = the level-1
    width minus it (paper §3: channels grow by a fixed step per downsample),
    order = number of hourglass levels, feature width and SE reduction from
    the first head.
    """
    stacks = len({int(m.group(1)) for k in sd for m in [re.match(r"hourglass\.(\d+)\.", k)] if m})
    if stacks == 0:
        _shape(sd, "hourglass.0.hg.0.0.convBlock.6.weight", source)
    order = len({int(m.group(1)) for k in sd
                 for m in [re.match(r"hourglass\.0\.hg\.(\d+)\.", k)] if m})
    width = _shape(sd, "hourglass.0.hg.0.0.convBlock.6.weight", source)[0]
    growth = _shape(sd, "hourglass.0.hg.0.1.convBlock.6.weight", source)[0] - width
    feature_width = _shape(sd, "features.0.before_regress.0.0.conv.weight", source)[0]
    se_hidden = _shape(sd, "features.0.before_regress.0.2.fc.0.weight", source)[0]
    out_channels = _shape(sd, "outs.0.0.conv.weight", source)[0]
    cfg = IMHNConfig(stacks=stacks, width=int(width), growth=int(growth), order=order,
                     out_channels=int(out_channels), input_size=tuple(input_size),
                     se_reduction=int(feature_width // max(1, se_hidden)),
                     feature_width=int(feature_width), dilated_stem=True)
    try:
        cfg.validate()
    except ValueError as e:
        raise CheckpointMismatchError(f"{source}: inferred an invalid network ({e})") from None
    return cfg


def truncate_stacks(sd: dict, keep: int, source: str = "checkpoint") -> dict:
    """The first ``keep`` stacks of a state dict (the network is supervised
    after every stack, paper §3, so each prefix of stacks is a complete model).

    Drops hourglass/features/outs of stacks >= keep and the identity mappings
    leaving stack keep-1 (they fed the dropped stacks).
    """
    stacks = len({int(m.group(1)) for k in sd for m in [re.match(r"hourglass\.(\d+)\.", k)] if m})
    if not 1 <= keep <= stacks:
        raise ValueError(f"{source}: keep_stacks must be in 1..{stacks}, got {keep}")

    def kept(key):
        m = re.match(r"(hourglass|features|outs)\.(\d+)\.", key)
        if m:
            return int(m.group(2)) < keep
        m = re.match(r"merge_(features|preds)\.(\d+)\.", key)
        if m:
            return int(m.group(2)) < keep - 1
        return True
    return {k: v for k, v in sd.items() if kept(k)}


# -------------------------------------------------------------------- table
def _res(keras_name, torch_prefix, has_skip):
    rows = [(f"{keras_name}_a_conv", "conv", f"{torch_prefix}.convBlock.0"),
            (f"{keras_name}_a_bn", "bn", f"{torch_prefix}.convBlock.1"),
            (f"{keras_name}_b_conv", "conv", f"{torch_prefix}.convBlock.3"),
            (f"{keras_name}_b_bn", "bn", f"{torch_prefix}.convBlock.4"),
            (f"{keras_name}_c_conv", "conv", f"{torch_prefix}.convBlock.6"),
            (f"{keras_name}_c_bn", "bn", f"{torch_prefix}.convBlock.7")]
    if has_skip:
        rows += [(f"{keras_name}_skip_conv", "conv", f"{torch_prefix}.skipConv.0"),
                 (f"{keras_name}_skip_bn", "bn", f"{torch_prefix}.skipConv.1")]
    return rows


def _cba(keras_name, torch_prefix):
    return [(f"{keras_name}_conv", "conv", f"{torch_prefix}.conv"),
            (f"{keras_name}_bn", "bn", f"{torch_prefix}.bn")]


def layer_table(cfg: IMHNConfig) -> list:
    """[(keras layer name, kind, torch module prefix)] for every weighted layer.

    kind: "conv" (kernel), "conv_bias" (kernel, bias), "conv_rgb" (the first conv: input
    channels reversed), "bn" (gamma, beta, mean, var) or "dense".
    """
    w, g = cfg.width, cfg.growth
    rows = [("stem_conv7_conv", "conv_rgb", "pre.conv1"), ("stem_conv7_bn", "bn", "pre.bn1")]
    rows += _res("stem_res1", "pre.res1", w // 4 != w // 2)
    rows += _res("stem_res2", "pre.res2", False)
    for i in range(len(_DILATIONS)):
        rows += _cba(f"stem_dil{i}", f"pre.dilation.{i}")
    for t in range(cfg.stacks):
        for lv in range(cfg.order):
            k, p = f"s{t}_hg_l{lv}", f"hourglass.{t}.hg.{lv}"
            rows += _res(f"{k}_skip", f"{p}.0", False)
            rows += _res(f"{k}_down", f"{p}.1", g != 0)
            rows += _res(f"{k}_up", f"{p}.2", g != 0)
            rows += _cba(f"{k}_upconv", f"{p}.3")
            if lv == cfg.order - 1:
                rows += _res(f"{k}_inner", f"{p}.4", False)
        for j in range(cfg.num_scales):
            k, p = f"s{t}_f{j}", f"features.{t}.before_regress.{j}"
            rows += _cba(f"{k}_a", f"{p}.0")
            rows += _cba(f"{k}_b", f"{p}.1")
            rows += [(f"{k}_se_fc1", "dense", f"{p}.2.fc.0"), (f"{k}_se_fc2", "dense", f"{p}.2.fc.2")]
            rows += [(f"s{t}_x{j}", "conv_bias", f"outs.{t}.{j}.conv")]
            if t < cfg.stacks - 1:
                rows += [(f"s{t}_mp{j}_conv", "conv", f"merge_preds.{t}.{j}.conv.conv"),
                         (f"s{t}_mp{j}_bn", "bn", f"merge_preds.{t}.{j}.conv.bn"),
                         (f"s{t}_mf{j}_conv", "conv", f"merge_features.{t}.{j}.conv.conv"),
                         (f"s{t}_mf{j}_bn", "bn", f"merge_features.{t}.{j}.conv.bn")]
    return rows


_BN_PARTS = ("weight", "bias", "running_mean", "running_var")


def _torch_keys(kind, prefix, sd=None):
    """The state-dict keys a layer consumes (with optional ones present in ``sd``)."""
    if kind == "bn":
        keys = [f"{prefix}.{p}" for p in _BN_PARTS]
        if sd is None or f"{prefix}.num_batches_tracked" in sd:
            keys.append(f"{prefix}.num_batches_tracked")
        return keys
    if kind in ("dense", "conv_bias"):
        return [f"{prefix}.weight", f"{prefix}.bias"]
    return [f"{prefix}.weight"]


def keras_weights_from_state_dict(sd: dict, cfg: IMHNConfig, source: str = "checkpoint") -> dict:
    """{keras layer name: [arrays in Keras order]} using every key exactly once.

    Raises CheckpointMismatchError listing the unexpected and missing keys.
    """
    table = layer_table(cfg)
    wanted, missing = [], []
    for _, kind, prefix in table:
        for k in _torch_keys(kind, prefix, sd):
            (wanted if k in sd else missing).append(k)
    unexpected = sorted(set(sd) - set(wanted))
    if missing or unexpected:
        raise CheckpointMismatchError(_mismatch(source, unexpected, missing))
    out = {}
    for name, kind, prefix in table:
        if kind == "bn":
            out[name] = [sd[f"{prefix}.{p}"].astype(np.float32) for p in _BN_PARTS]
        elif kind == "dense":
            out[name] = [sd[f"{prefix}.weight"].T.astype(np.float32),
                         sd[f"{prefix}.bias"].astype(np.float32)]
        else:
            kernel = np.transpose(sd[f"{prefix}.weight"], (2, 3, 1, 0)).astype(np.float32)
            if kind == "conv_rgb":
                kernel = kernel[:, :, ::-1, :]  # BGR -> RGB input channels
            ws = [np.ascontiguousarray(kernel)]
            if kind == "conv_bias":
                ws.append(sd[f"{prefix}.bias"].astype(np.float32))
            out[name] = ws
    return out


def _mismatch(source, unexpected, missing) -> str:
    def show(keys):
        keys = list(keys)
        head = ", ".join(keys[:20])
        return head + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
    parts = []
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    return f"{source}: does not match the inferred network; " + "; ".join(parts)


def state_dict_from_keras(model, cfg: IMHNConfig, prefix: str = "posenet.") -> dict:
    """The inverse: the authors' state dict (float32, BGR first conv) from a Keras IMHN.

    Used to write checkpoints in their layout for tests (and to hand a Keras
    model back to their code). ``num_batches_tracked`` is written as 0.
    """
    sd = {}
    for name, kind, tprefix in layer_table(cfg):
        ws = model.get_layer(name).get_weights()
        p = prefix + tprefix
        if kind == "bn":
            for part, arr in zip(_BN_PARTS, ws):
                sd[f"{p}.{part}"] = np.asarray(arr, np.float32)
            sd[f"{p}.num_batches_tracked"] = np.array(0, np.int64)
        elif kind == "dense":
            sd[f"{p}.weight"] = np.ascontiguousarray(ws[0].T)
            sd[f"{p}.bias"] = np.asarray(ws[1])
        else:
            kernel = ws[0][:, :, ::-1, :] if kind == "conv_rgb" else ws[0]
            sd[f"{p}.weight"] = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))
            if len(ws) > 1:
                sd[f"{p}.bias"] = np.asarray(ws[1])
    return sd


# ---------------------------------------------------------------- Keras side
def set_keras_weights(model, weights: dict) -> None:
    """Set every weighted layer of ``model`` from ``weights``; refuse a model
    with weighted layers the table does not know (builder drift)."""
    untouched = [l.name for l in model.layers if l.weights and l.name not in weights]
    absent = [n for n in weights if n not in {l.name for l in model.layers}]
    if untouched or absent:
        raise CheckpointMismatchError(
            "the Keras IMHN and the checkpoint table disagree: "
            f"layers without checkpoint weights {untouched[:20]}; table rows without a layer "
            f"{absent[:20]}")
    for name, ws in weights.items():
        layer = model.get_layer(name)
        have = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in ws]
        if have != got:
            raise CheckpointMismatchError(f"layer {name}: checkpoint shapes {got} do not fit the "
                                          f"Keras shapes {have}")
        layer.set_weights(ws)


def build_converted_model(sd: dict, input_size=(512, 512), keep_stacks: int | None = None,
                          source: str = "checkpoint"):
    """(Keras IMHN with the checkpoint's weights, its IMHNConfig) from a stripped state dict."""
    from keras_pose.models.imhn import build_imhn

    if keep_stacks is not None:
        sd = truncate_stacks(sd, keep_stacks, source)
    cfg = infer_config(sd, input_size, source)
    weights = keras_weights_from_state_dict(sd, cfg, source)  # key errors before the build
    model = build_imhn(cfg)
    set_keras_weights(model, weights)
    return model, cfg


def convert_checkpoint(path, input_size=(512, 512), keep_stacks: int | None = None):
    """Read a ``.pth`` (no torch, no code executed) -> (Keras model, IMHNConfig)."""
    from keras_pose.export.torch_checkpoint import load_torch_checkpoint

    sd = state_dict_from_checkpoint(load_torch_checkpoint(path), str(path))
    return build_converted_model(sd, input_size, keep_stacks, str(path))


# ------------------------------------------------------------- model folder
def _matching_preset(cfg: IMHNConfig) -> str | None:
    from keras_pose.models import presets

    for name in presets.list_presets():
        p = presets.get_preset(name)
        if isinstance(p, IMHNConfig) and p.replace(input_size=cfg.input_size) == cfg:
            return name
    return None


def save_model_dir(model, cfg: IMHNConfig, model_dir, checkpoint=None,
                   keep_stacks: int | None = None) -> dict:
    """Write a model folder like a training run's: ``model.keras`` + ``config.json``
    (+ ``conversion.json``: the source checkpoint and the inferred network).

    ``config.json`` is a training config (task bottom_up, the paper's codec, the
    preset with this architecture when one exists, else the paper preset)
    so evaluation, export and ``--init_from`` read it like a run of ours. A folder
    holding a model that no conversion wrote is refused (``checks.check_conversion_target``).
    """
    import os

    from keras_pose.checks import check_conversion_target
    from keras_pose.codecs import BodyPartsCodec
    from keras_pose.descriptor import describe
    from keras_pose.io import atomic_write_json
    from keras_pose.train.config import TrainConfig

    check_conversion_target(model_dir, "model_dir")
    os.makedirs(model_dir, exist_ok=True)
    preset = _matching_preset(cfg)
    codec = BodyPartsCodec(num_scales=cfg.num_scales)
    train_cfg = TrainConfig(task="bottom_up", preset=preset or "imhn_4s_512",
                            model_dir=str(model_dir), codec=codec.get_config(),
                            export_int8=False, demo_image=False)
    tmp = os.path.join(model_dir, "model.tmp.keras")
    model.save(tmp)
    os.replace(tmp, os.path.join(model_dir, "model.keras"))
    # The descriptor names this network's own last stack (keep_stacks may differ from the preset).
    train_cfg.save(os.path.join(model_dir, "config.json"),
                   descriptor=describe(cfg, codec, preset=preset))
    info = {"source": "Simple Pose authors' PyTorch checkpoint (converted by keras_pose)",
            "checkpoint": None if checkpoint is None else os.path.abspath(str(checkpoint)),
            "keep_stacks": keep_stacks, "model": cfg.to_dict(), "preset": preset,
            "params": int(model.count_params()),
            "input": "RGB 0..255 (the first conv's input channels were reversed from BGR)"}
    atomic_write_json(os.path.join(model_dir, "conversion.json"), info)
    return info
