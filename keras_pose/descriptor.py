"""RunDescriptor: what a trained or exported model is, written once and carried.

A model's weights say nothing about how to use them. The descriptor does: the
task (bottom-up maps or top-down heatmaps), the KeypointSpec, the codec that
decodes the maps, the input convention and which network output is the
inference output. It is built once, when a model is built for training
(``describe``), saved under ``"descriptor"`` in a run's ``config.json`` and
copied into an export's ``model.json``; every consumer (predictors, evaluation,
export, ``keras_pose.load``) reads it instead of guessing from channel counts
or names. ``docs/inference.md`` lists the fields.

Imports without TensorFlow.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

from keras_pose.codecs import BodyPartsCodec, BodyPartsCodecConfig, HeatmapCodec, HeatmapCodecConfig
from keras_pose.skeleton import KeypointSpec

__all__ = ["FORMAT", "FORMAT_VERSION", "DescriptorError", "RunDescriptor", "build_codec",
           "describe"]

FORMAT = "keras_pose.descriptor"
FORMAT_VERSION = 1
TASKS = ("bottom_up", "top_down")
# One codec class per task: the representation the task's networks output.
_CODECS = {"bottom_up": (BodyPartsCodec, BodyPartsCodecConfig),
           "top_down": (HeatmapCodec, HeatmapCodecConfig)}
# The input every keras_pose network takes: RGB 0..255, normalised inside the graph.
_INPUT_CONVENTION = {"color": "RGB", "range": [0, 255], "layout": "NHWC",
                     "normalization": "in_graph", "pad_value": 128}


class DescriptorError(ValueError):
    """A missing, unknown-version or inconsistent run descriptor (one line)."""


@dataclasses.dataclass(frozen=True)
class RunDescriptor:
    """The head metadata of a model.

    Attributes:
        task: "bottom_up" (Simple Pose maps) or "top_down" (heatmaps per crop).
        keypoints: the KeypointSpec as a dict (``KeypointSpec.to_dict``).
        codec: {"type": codec class name, "config": its config dict}.
        input: {"size": [H, W] or None, "color": "RGB", "range": [0, 255],
            "layout": "NHWC", "normalization": "in_graph", "pad_value": 128}.
        output: {"layer": name of the layer whose output is decoded,
            "activation": None or "sigmoid" (applied after it at inference)}.
        preset: the model preset name, when the model came from one.
        version: format version (``FORMAT_VERSION``).
    """

    task: str
    keypoints: dict
    codec: dict
    input: dict
    output: dict
    preset: Optional[str] = None
    version: int = FORMAT_VERSION

    def __post_init__(self):
        # JSON-plain values (lists, not tuples), so a saved and re-read descriptor is equal.
        for name in ("keypoints", "codec", "input", "output"):
            try:
                object.__setattr__(self, name, json.loads(json.dumps(getattr(self, name))))
            except (TypeError, ValueError) as e:
                raise DescriptorError(f"descriptor {name} is not JSON data ({e})") from None
        if self.task not in TASKS:
            raise DescriptorError(f"descriptor task {self.task!r} is not one of {', '.join(TASKS)}")
        want = _CODECS[self.task][0].__name__
        if not isinstance(self.codec, dict) or self.codec.get("type") != want:
            got = self.codec.get("type") if isinstance(self.codec, dict) else self.codec
            raise DescriptorError(f"descriptor of a {self.task} model needs codec type {want}, "
                                  f"got {got!r}")
        if not isinstance(self.output, dict) or not self.output.get("layer"):
            raise DescriptorError(f"descriptor output must name a layer, got {self.output!r}")

    # ------------------------------------------------------------- accessors
    @property
    def spec(self) -> KeypointSpec:
        return KeypointSpec.from_dict(self.keypoints)

    @property
    def input_size(self):
        """(H, W) the model was built for, or None (any size)."""
        size = self.input.get("size")
        return None if size is None else (int(size[0]), int(size[1]))

    @property
    def output_layer(self) -> str:
        return str(self.output["layer"])

    @property
    def output_activation(self) -> Optional[str]:
        return self.output.get("activation")

    def build_codec(self):
        """The configured codec (``BodyPartsCodec`` or ``HeatmapCodec``)."""
        return build_codec(self)

    @classmethod
    def create(cls, codec, input_size, output_layer: str, activation: str | None = None,
               preset: str | None = None) -> "RunDescriptor":
        """A descriptor from its parts (a model of your own; presets use ``describe``).

        Args:
            codec: the BodyPartsCodec (bottom-up) or HeatmapCodec (top-down).
            input_size: (H, W) the model was built for, or None.
            output_layer: the layer whose output is decoded; ``activation``
                (e.g. "sigmoid") is applied after it at inference.
        """
        tasks = {c.__name__: t for t, (c, _) in _CODECS.items()}
        task = tasks.get(type(codec).__name__)
        if task is None:
            raise DescriptorError(f"unknown codec {type(codec).__name__}: expected one of "
                                  f"{', '.join(sorted(tasks))}")
        size = None if input_size is None else [int(v) for v in input_size]
        return cls(task=task, keypoints=codec.spec.to_dict(),
                   codec={"type": type(codec).__name__, "config": codec.config.to_dict()},
                   input={"size": size, **_INPUT_CONVENTION},
                   output={"layer": str(output_layer), "activation": activation}, preset=preset)

    def replace(self, **changes) -> "RunDescriptor":
        return dataclasses.replace(self, **changes)

    # --------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": self.version, "task": self.task,
                "preset": self.preset, "keypoints": self.keypoints, "codec": self.codec,
                "input": self.input, "output": self.output}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d, source: str = "descriptor") -> "RunDescriptor":
        """Read a saved descriptor; refuses other format versions with one line.

        ``source`` names where it came from (a file) in error messages.
        """
        if not isinstance(d, dict):
            raise DescriptorError(f"{source}: the descriptor is not a JSON object")
        version = d.get("version")
        if d.get("format", FORMAT) != FORMAT or version != FORMAT_VERSION:
            raise DescriptorError(
                f"{source}: descriptor format {d.get('format', FORMAT)!r} version {version!r} is "
                f"not supported (this keras_pose reads {FORMAT!r} version {FORMAT_VERSION}); "
                "use the keras_pose version that wrote it")
        missing = [k for k in ("task", "keypoints", "codec", "input", "output") if k not in d]
        if missing:
            raise DescriptorError(f"{source}: descriptor lacks {', '.join(missing)}")
        try:
            desc = cls(task=d["task"], keypoints=dict(d["keypoints"]), codec=dict(d["codec"]),
                       input=dict(d["input"]), output=dict(d["output"]), preset=d.get("preset"),
                       version=version)
            desc.spec  # noqa: B018 - validates the keypoint spec now, not at first use
        except DescriptorError as e:
            raise DescriptorError(f"{source}: {e}") from None
        except (TypeError, ValueError) as e:
            raise DescriptorError(f"{source}: invalid descriptor ({e})") from None
        return desc


def build_codec(descriptor: RunDescriptor):
    """The one place a codec is built from saved metadata."""
    cls, config_cls = _CODECS[descriptor.task]
    try:
        return cls(config_cls.from_dict(dict(descriptor.codec["config"])), spec=descriptor.spec)
    except (KeyError, TypeError, ValueError) as e:
        raise DescriptorError(f"descriptor codec {descriptor.codec.get('type')}: "
                              f"invalid config ({e})") from None


def _codec_for(task: str, model_cfg, codec, spec):
    """A codec object from a codec, a saved ``get_config()`` dict, field overrides or None."""
    cls, config_cls = _CODECS[task]
    if isinstance(codec, cls):
        return codec
    codec = dict(codec or {})
    if "config" in codec:  # a saved codec.get_config()
        saved = cls.from_config(codec) if "spec" in codec else cls(config_cls.from_dict(codec["config"]))
        return saved if spec is None else cls(saved.config, spec=spec)
    if task == "bottom_up":
        # The pipeline supervises every scale the network outputs (Simple Pose §3.4).
        codec.setdefault("num_scales", model_cfg.num_scales)
        return cls(spec=spec, **codec)
    return cls(config_cls(input_size=tuple(model_cfg.input_size),
                          heatmap_size=tuple(model_cfg.output_size)), spec=spec, **codec)


def describe(model_cfg, codec=None, spec: KeypointSpec | None = None,
             preset: str | None = None) -> RunDescriptor:
    """The descriptor of a model built from ``model_cfg`` (a models.configs config).

    Args:
        model_cfg: IMHNConfig / FasterPoseConfig / SimpleBaselineConfig; it names
            its task and its inference output.
        codec: a codec, a saved ``codec.get_config()`` dict, a dict of codec
            config fields to change from the task's defaults, or None.
        spec: the KeypointSpec (default: the codec's, i.e. COCO).
        preset: the preset name, recorded for the reader.
    """
    codec = _codec_for(model_cfg.task, model_cfg, codec, spec)
    out = model_cfg.inference_output
    return RunDescriptor.create(codec, model_cfg.input_size, out["layer"], out.get("activation"),
                                preset=preset)


def input_convention() -> dict:
    """The input convention fields (without the size), as saved in ``input``."""
    return dict(_INPUT_CONVENTION)
