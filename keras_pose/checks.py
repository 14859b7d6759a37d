"""Checks of user arguments that need no TensorFlow, run by the scripts before importing it.

Importing TensorFlow costs 5-15 s; a typo in a flag should cost a second. Each
check raises ``ValueError`` with one line naming the flag (or file) and the
problem; the scripts print it and exit non-zero. Imports only the standard library.

``PRESET_NAMES`` lists the model presets without importing ``keras_pose.models``
(whose package imports Keras); ``keras_pose.models.presets`` refuses to import if
its table and this list ever disagree.
"""
from __future__ import annotations

import os

PRESET_NAMES = (
    "fasterpose_mnv2_256x192", "fasterpose_r50_256x192", "fasterpose_r50_384x288",
    "fasterpose_tiny", "imhn_3s_384", "imhn_4s_512", "imhn_mobile", "imhn_test", "imhn_tiny",
    "simple_baseline_mnv2_256x192", "simple_baseline_r50_256x192", "simple_baseline_tiny",
)


def list_presets() -> list:
    """Names of all model presets, sorted (``keras_pose.list_presets``; no TensorFlow)."""
    return list(PRESET_NAMES)


def check_preset(name, flag: str = "--preset") -> None:
    """``name`` is a known preset (``None`` passes: the caller's default applies)."""
    if name is not None and name not in PRESET_NAMES:
        raise ValueError(f"{flag} {name!r}: unknown preset; choose one of "
                         f"{', '.join(PRESET_NAMES)}")


def check_positive(value, flag: str, minimum: int = 1) -> None:
    """``value`` is ``None`` or ``>= minimum``."""
    if value is not None and value < minimum:
        raise ValueError(f"{flag} {value}: must be >= {minimum}")


def check_output_dir(path, flag: str = "--output") -> None:
    """``path`` is an existing folder or can become one (it is not a file)."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a file; the output is a folder (give a folder path)")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path}: {parent} is a file, so the folder cannot be created")


def check_conversion_target(path, flag: str = "--model_dir") -> None:
    """A checkpoint conversion may replace only its own earlier output: ``path``
    must not hold a ``model.keras`` without the ``conversion.json`` a conversion
    writes beside it (a training run's model would be lost)."""
    path = os.fspath(path)
    if (os.path.isfile(os.path.join(path, "model.keras"))
            and not os.path.isfile(os.path.join(path, "conversion.json"))):
        raise ValueError(f"{flag} {path}: holds a model that no conversion wrote (a training "
                         "run?); give a new folder so that it is kept")


def check_output_file(path, flag: str = "--output") -> None:
    """``path`` can be written as a file (it is not a folder; its folder is not a file)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a folder; give a file path")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"{flag} {path}: {parent} is a file, not a folder")


def check_input_file(path, flag: str) -> None:
    """``path`` is an existing, non-empty file."""
    if path is None:
        return
    if not os.path.exists(path):
        raise ValueError(f"{flag} {path}: not found")
    if not os.path.isfile(path):
        raise ValueError(f"{flag} {path}: is a folder, expected a file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{flag} {path}: is empty (0 bytes)")


def check_model_source(model=None, model_dir=None, need=("model.keras",)) -> None:
    """Exactly one of ``--model`` (a file) / ``--model_dir`` (a folder holding ``need``)."""
    if (model is None) == (model_dir is None):
        raise ValueError("give exactly one of --model (a .keras file) or --model_dir "
                         "(a run folder)")
    if model is not None:
        check_input_file(model, "--model")
        return
    if not os.path.exists(model_dir):
        raise ValueError(f"--model_dir {model_dir}: not found")
    if not os.path.isdir(model_dir):
        raise ValueError(f"--model_dir {model_dir}: is a file, expected a run folder")
    missing = [n for n in need if not os.path.isfile(os.path.join(model_dir, n))]
    if missing:
        have = sorted(os.listdir(model_dir))
        raise ValueError(f"--model_dir {model_dir}: no {' or '.join(missing)} "
                         f"({'empty folder' if not have else 'holds ' + ', '.join(have[:6])}); "
                         "is the training finished?")
