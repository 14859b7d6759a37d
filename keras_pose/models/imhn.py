"""Stacked Identity Mapping Hourglass Network (IMHN) of Simple Pose.

Li, Su, Wang, "Simple Pose", AAAI 2020; ``docs/method_bottom_up.md`` §3. Input
(B, H, W, 3) float32 RGB in [0, 255] (H, W multiples of 2^(order+2)); output a
list of stacks x (order+1) float32 maps, stack-major and finest first, named
``s{t}_x{j}``: (B, H/4/2^j, W/4/2^j, out_channels) - linear heatmaps
(``KeypointSpec.num_channels``; COCO: 50 = 30 body parts, 18 keypoints, person
mask, max-of-keypoints).

The reference network takes BGR in [0, 1]; ours takes RGB 0..255 and rescales
inside the graph (house convention). Porting PyTorch weights would need the
stem kernel's input channels reversed.
"""
from __future__ import annotations

import keras

from keras_pose.models import blocks
from keras_pose.models.configs import IMHNConfig


def _stem(K, x, cfg: IMHNConfig):
    """Stem (§3.2): (B, H, W, 3) -> (B, H/4, W/4, width).

    7x7/2 conv (width/4) -> ResBlock(width/2) -> maxpool -> ResBlock(width/2) = x_a;
    then six dilated 3x3 convs (3,3,4,4,5,5) on x_a, concatenated with it.
    ``dilated_stem=False`` (the authors' ``posenet_final`` variant) uses ResBlock(width) instead.
    """
    w = cfg.width
    # ZeroPadding2D(3) + 'valid': PyTorch's symmetric pad 3; TF 'same' would pad 2/3.
    x = blocks.conv_bn_act(K, x, w // 4, 7, "stem_conv7", strides=2)
    x = blocks.res_block(K, x, w // 2, "stem_res1")
    x = K.layers.MaxPooling2D(2, 2, name="stem_pool")(x)
    xa = blocks.res_block(K, x, w // 2, "stem_res2")
    if not cfg.dilated_stem:
        return blocks.res_block(K, xa, w, "stem_res3")
    xb = xa
    for i, d in enumerate((3, 3, 4, 4, 5, 5)):
        xb = blocks.conv_bn_act(K, xb, w // 2, 3, f"stem_dil{i}", dilation=d)
    return K.layers.Concatenate(name="stem_concat")([xa, xb])


def _hourglass(K, x, cfg: IMHNConfig, level: int, name: str, taps: list):
    """Hourglass level i (§3.3): (B, h, w, C_i) -> (B, h, w, C_i); appends the
    deeper-scale features F_{i+1} to ``taps`` (deepest last after recursion)."""
    ci = cfg.width + cfg.growth * level
    cn = ci + cfg.growth
    p = f"{name}_l{level}"
    up1 = blocks.res_block(K, x, ci, f"{p}_skip")
    low = K.layers.MaxPooling2D(2, 2, name=f"{p}_pool")(x)
    low = blocks.res_block(K, low, cn, f"{p}_down")
    if level < cfg.order - 1:
        low = _hourglass(K, low, cfg, level + 1, name, taps)
    else:
        low = blocks.res_block(K, low, cn, f"{p}_inner")  # the innermost extra block
    taps.insert(0, low)  # F_{level+1}; inserting at 0 keeps finest-first order after recursion
    low = blocks.res_block(K, low, ci, f"{p}_up")
    low = K.layers.UpSampling2D(2, interpolation="nearest", name=f"{p}_upsample")(low)
    low = blocks.conv_bn_act(K, low, ci, 3, f"{p}_upconv")
    # No activation after the add (§3.3).
    return K.layers.Add(name=f"{p}_merge")([up1, low])


def _merge(K, x, channels, name):
    """Identity-mapping 1x1 conv (no bias) + BN, no activation (§3.4 MP / MF)."""
    x = blocks.conv(K, x, channels, 1, f"{name}_conv")
    return blocks.batch_norm(K, f"{name}_bn")(x)


def build_imhn(config: IMHNConfig | None = None, K=keras, name: str = "imhn"):
    """Build the stacked IMHN (§3.4) with Keras module ``K`` (keras or tf_keras).

    Returns a functional model: (B, H, W, 3) RGB 0..255 -> list of
    stacks*(order+1) float32 tensors named ``s{t}_x{j}``. Only standard layers
    are used, so ``build_imhn(cfg, K=tf_keras)`` is a weight-compatible twin.
    """
    cfg = config or IMHNConfig()
    cfg.validate()
    h, w = cfg.input_size
    inp = K.Input(shape=(h, w, 3), name="image")
    x = K.layers.Rescaling(1.0 / 255.0, name="rescale")(inp)
    x = _stem(K, x, cfg)
    chans = [cfg.width + cfg.growth * j for j in range(cfg.num_scales)]
    outputs, cache = [], None
    for t in range(cfg.stacks):
        if cache is not None:
            x = K.layers.Add(name=f"s{t}_input")([x, cache[0]])
        taps = []
        h0 = _hourglass(K, x, cfg, 0, f"s{t}_hg", taps)
        feats_in = [h0] + taps
        if cache is not None:
            feats_in = [K.layers.Add(name=f"s{t}_id{j}")([f, c])
                        for j, (f, c) in enumerate(zip(feats_in, cache))]
        new_cache = []
        for j, f in enumerate(feats_in):
            p = f"s{t}_f{j}"
            f = blocks.conv_bn_act(K, f, cfg.feature_width, 3, f"{p}_a")
            f = blocks.conv_bn_act(K, f, cfg.feature_width, 3, f"{p}_b")
            f = blocks.squeeze_excite(K, f, cfg.se_reduction, f"{p}_se")
            # Linear 1x1 prediction with bias; float32 so mixed precision outputs stay float32.
            pred = blocks.conv(K, f, cfg.out_channels, 1, f"s{t}_x{j}", use_bias=True,
                               dtype="float32")
            outputs.append(pred)
            if t < cfg.stacks - 1:
                mp = _merge(K, pred, chans[j], f"s{t}_mp{j}")
                mf = _merge(K, f, chans[j], f"s{t}_mf{j}")
                new_cache.append(K.layers.Add(name=f"s{t}_cache{j}")([mp, mf]))
        cache = new_cache
    return K.Model(inp, outputs, name=name)


def keep_stacks(model, k: int):
    """The first ``k`` stacks of a stacked IMHN: (B, H, W, 3) -> k x (order+1) maps.

    Every stack is supervised (Li et al., AAAI 2020, §3), so its first k
    stacks form a complete, cheaper network (an accuracy/latency knob). The
    sub-model shares the layers (and weights) of ``model``; the identity
    mappings out of stack k-1 and later stacks are left out.
    """
    outs = {}
    for t in model.outputs:
        name = t._keras_history.operation.name
        parsed = name[1:].split("_x") if name.startswith("s") else None
        if not parsed or len(parsed) != 2 or not all(p.isdigit() for p in parsed):
            raise ValueError(f"keep_stacks: {model.name!r} is not a stacked IMHN "
                             f"(output {name!r} is not named s{{t}}_x{{j}})")
        outs[(int(parsed[0]), int(parsed[1]))] = t
    stacks = 1 + max(s for s, _ in outs)
    if not isinstance(k, int) or not 1 <= k <= stacks:
        raise ValueError(f"keep_stacks must be in 1..{stacks}, got {k!r}")
    if k == stacks:
        return model
    kept = [outs[key] for key in sorted(outs) if key[0] < k]
    return keras.Model(model.inputs[0], kept, name=f"{model.name}_{k}of{stacks}")
