"""keras_pose.load: a run folder, a .keras or a .tflite -> a predictor that answers predict(image).

    predictor = keras_pose.load("runs/quickstart")                 # model.keras + config.json
    predictor = keras_pose.load("exported/int8/model.tflite")      # model.json beside it
    poses = predictor.predict("photo.jpg")                          # Poses, original pixels
    poses = predictor.predict(image, boxes)                         # top-down: person boxes

The run descriptor (``keras_pose.descriptor``; ``config.json`` or ``model.json``)
says which predictor (bottom-up or top-down), which codec and which network
output; the network is the Keras model or a LiteRT interpreter and everything
else is the same code. ``docs/inference.md`` has the details.

A .tflite loads without TensorFlow; a Keras model imports Keras when loaded.
"""
from __future__ import annotations

import json
import pathlib

from keras_pose.descriptor import RunDescriptor
from keras_pose.inference.predictor import PosePredictor, protocol_options
from keras_pose.inference.tflite_runner import TFLiteRunner
from keras_pose.inference.topdown_predictor import TopDownPredictor
from keras_pose.train.config import read_descriptor

__all__ = ["load", "load_keras_run", "predictor_for"]


def load(path, descriptor: RunDescriptor | None = None, **options):
    """A predictor for a trained or exported model.

    Args:
        path: a run folder (``model.keras`` + ``config.json``), a ``.keras`` file
            (``config.json`` beside it, or ``descriptor=``), a ``.tflite`` file
            (``model.json`` beside it, or ``sidecar=``), or a folder holding
            ``model.tflite`` + ``model.json``.
        descriptor: the RunDescriptor of a ``.keras`` file that has no
            ``config.json`` beside it.
        **options: predictor options. Bottom-up: ``flip``, ``scales``,
            ``input_height`` (Keras only), ``batch_size``. Top-down: ``flip``,
            ``batch_size``, ``oks_nms_threshold``, ``padding``. TFLite also
            ``num_threads`` and ``sidecar``. ``protocol``: a named bottom-up
            test-time protocol (``"paper"``: the Simple Pose authors' evaluation,
            ``inference.predictor.PROTOCOLS``; Keras only), other options override it.

    Returns:
        ``PosePredictor`` / ``TopDownPredictor`` (Keras) or ``TFLiteRunner``, each
        with ``.predict(image or list[, boxes])`` -> ``Poses`` (a list for a list)
        and ``.descriptor``.

    Raises:
        ValueError: a missing or unreadable file, or an unsupported format (one line).
    """
    p = pathlib.Path(path)
    if p.is_dir():
        if (p / "model.keras").is_file():
            p = p / "model.keras"
        elif (p / "model.tflite").is_file():
            p = p / "model.tflite"
        else:
            raise ValueError(f"{p}: neither a run folder (model.keras + config.json) nor an "
                             "export folder (model.tflite + model.json)")
    if not p.is_file():
        raise ValueError(f"{p}: file not found")
    protocol = options.pop("protocol", None)
    if p.suffix == ".tflite":
        if protocol not in (None, "default"):
            raise ValueError(f"protocol={protocol!r} needs the Keras model (several input sizes); "
                             f"{p} runs at its fixed input size")
        if descriptor is not None:
            raise ValueError("descriptor= is for .keras files; a .tflite reads its model.json")
        return TFLiteRunner(p, **options)
    if p.suffix != ".keras":
        raise ValueError(f"{p}: expected a run folder, a .keras or a .tflite file")
    model, config = load_keras_run(p)
    if descriptor is None:
        if not config:
            raise ValueError(f"{p}: no config.json beside it to say what the model is; "
                             "pass descriptor=")
        descriptor = read_descriptor(config, str(p.with_name("config.json")))
    if protocol is not None:
        if descriptor.task != "bottom_up":
            raise ValueError(f"protocol={protocol!r} is a bottom-up option; {p} is {descriptor.task}")
        options = protocol_options(protocol, **options)
    return predictor_for(model, descriptor, **options)


def predictor_for(model, descriptor: RunDescriptor, **options):
    """The task's predictor over a Keras ``model`` (or a network) described by ``descriptor``."""
    codec = descriptor.build_codec()
    cls = TopDownPredictor if descriptor.task == "top_down" else PosePredictor
    predictor = cls(model, codec, output=descriptor, **options)
    predictor.descriptor = descriptor
    return predictor


def load_keras_run(model_path):
    """(Keras model, config dict or {}) of a ``.keras`` file and the ``config.json`` beside it."""
    import keras

    import keras_pose.models  # noqa: F401 - registers the custom layers a saved model names
    model_path = pathlib.Path(model_path)
    if not model_path.is_file():
        raise ValueError(f"model file not found: {model_path}")
    config = {}
    cfg = model_path.with_name("config.json")
    if cfg.is_file():
        try:
            config = json.loads(cfg.read_text())
        except ValueError as e:
            raise ValueError(f"{cfg}: not valid JSON ({e})") from None
    try:
        model = keras.saving.load_model(str(model_path), compile=False)
    except Exception as e:  # noqa: BLE001 - a corrupt zip, an unknown layer, ...
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"cannot load Keras model {model_path}: {type(e).__name__}: {first}") from None
    return model, config
