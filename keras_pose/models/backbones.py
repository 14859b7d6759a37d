"""Top-down backbones from ``keras.applications``, inlined into one flat graph.

(B, H, W, 3) RGB 0..255 -> (B, H/32, W/32, C5): ResNet-50/101/152 (C5 = 2048)
or MobileNetV2 (C5 = 1280 for alpha <= 1). Shared by FasterPose and
SimpleBaseline (``docs/method_top_down.md`` §2.1, §2.3).

The application is built with ``input_tensor=`` on our own normalisation
layer, so its layers become part of the caller's functional graph: the final
``Model(image, head)`` holds them directly, with no nested Model (tfmot cannot
quantize nested models; docs/tf_stack_notes.md §2).

Normalisation lives in the graph, with standard layers only:

* ResNet (Keras' "caffe" mode): the ImageNet weights expect BGR minus the
  BGR mean. We subtract the mean in RGB order with a per-channel ``Rescaling``
  (scale 1, offset -mean_rgb) and, after loading ImageNet weights, reverse the
  first conv kernel's input-channel axis. A conv is linear in its input
  channels, so W[:, :, ::-1] applied to RGB equals W applied to BGR - the
  same network, without a channel-swap op in the graph (fewer TFLite ops, and
  nothing for tfmot to choke on).
* MobileNetV2 ("tf" mode): x / 127.5 - 1, channel order irrelevant (RGB-trained).
"""
from __future__ import annotations

IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # Keras "caffe" mean, in RGB order

_RESNETS = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152"}


def normalize_input(K, image, backbone: str):
    """The backbone's input normalisation as one Rescaling layer named ``normalize``."""
    if backbone in _RESNETS:
        return K.layers.Rescaling(1.0, offset=[-m for m in IMAGENET_MEAN_RGB], name="normalize")(image)
    return K.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(image)


def backbone_features(K, image, backbone: str, alpha: float = 1.0, weights=None):
    """Stride-32 features of ``backbone`` for the input tensor ``image`` (RGB 0..255).

    ``weights``: None (random init; tests never download), "imagenet", or a
    keras.applications-format backbone weights file (same BGR convention, so its
    first conv is flipped too).
    """
    x = normalize_input(K, image, backbone)
    shape = tuple(image.shape[1:])
    if backbone in _RESNETS:
        app = getattr(K.applications, _RESNETS[backbone])(
            include_top=False, weights=weights, input_tensor=x, input_shape=shape)
        if weights is not None:
            conv1 = app.get_layer("conv1_conv")
            kernel, *rest = conv1.get_weights()
            conv1.set_weights([kernel[:, :, ::-1, :]] + rest)  # BGR-trained -> RGB input
    elif backbone == "mobilenetv2":
        app = K.applications.MobileNetV2(
            include_top=False, weights=weights, input_tensor=x, input_shape=shape, alpha=alpha)
    else:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of "
                         f"{sorted(_RESNETS) + ['mobilenetv2']}")
    return app.output
