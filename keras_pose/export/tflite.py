"""TFLite export: batch-1 export model, conversion (fp32/fp16/dynamic/int8/qat), sidecar, validation.

Pipeline (the exported model carries its metadata in ``model.json``;
``docs/tf_stack_notes.md`` §3):

1. ``load_keras_model``: a ``.keras`` file or a training output dir (``model.keras`` +
   ``config.json``).
2. ``build_export_model``: the inference sub-model (the run descriptor's inference output,
   e.g. IMHN's last stack's finest map (1, H/4, W/4, C)) re-instantiated on ``keras.Input(batch_size=1)`` with a
   fixed H x W - a static batch removes the SHAPE/PACK ops a dynamic batch adds.
3. ``convert``: ``TFLiteConverter.from_keras_model`` with explicit builtin op sets (never
   Flex); int8 is full-integer with a representative dataset drawn through the same
   letterbox as inference.
4. ``write_sidecar`` + ``validate_export``: ``model.json`` beside ``model.tflite`` with the
   run descriptor (task, KeypointSpec, codec, input; ``keras_pose.descriptor``), I/O dtypes
   and quantization, and the Keras-vs-TFLite agreement.

Decoding stays outside the graph (one decoder: the codec, NumPy).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import sys

import numpy as np

from keras_pose import __version__
from keras_pose.checks import check_output_dir
from keras_pose.data import synthetic
from keras_pose.inference import tflite_runner as _rt
from keras_pose.inference.loader import load_keras_run
from keras_pose.io import atomic_path, atomic_write_json
from keras_pose.train.config import read_descriptor

QUANTIZE_MODES = ("fp32", "fp16", "dynamic", "int8", "qat")
IO_DTYPES = ("uint8", "int8", "float32")
SIDECAR_FORMAT = _rt.SIDECAR_FORMAT


# ---------------------------------------------------------------------- loading
def load_keras_model(model_path=None, model_dir=None):
    """Load a Keras model from a ``.keras`` file or a training output dir.

    Returns (model, config dict or {}): the run's ``config.json`` (the dir's, or
    the one beside the ``.keras`` file) when present.
    """
    if (model_path is None) == (model_dir is None):
        raise ValueError("give exactly one of --model (a .keras file) or --model_dir")
    if model_dir is not None:
        model_path = pathlib.Path(model_dir) / "model.keras"
    return load_keras_run(model_path)


def _output_name(tensor) -> str:
    return tensor._keras_history.operation.name


def build_export_model(model, descriptor, input_size=None):
    """A batch-1, fixed-size, single-output copy of ``model`` sharing its weights.

    Args:
        model: a Keras functional model with input (B, H, W, 3) RGB 0..255.
        descriptor: its RunDescriptor (names the inference output).
        input_size: (H, W); default the descriptor's (required when the model's
            spatial dims are None and the descriptor has no size).
    Returns:
        keras.Model: (1, H, W, 3) -> (1, h, w, C), output named after the source output.
    """
    import keras

    from keras_pose.models.heads import inference_model
    shape = tuple(model.inputs[0].shape[1:])
    h, w, c = shape
    size = input_size or (descriptor.input_size if None in (h, w) else None)
    if size is not None:
        h, w = int(size[0]), int(size[1])
    if h is None or w is None:
        raise ValueError("the model has a dynamic input size: pass input_size=(H, W)")
    sub = inference_model(model, descriptor)  # drops unused heads
    out = sub.outputs[0]
    x = keras.Input((h, w, c), batch_size=1, name="image")
    try:
        # A flat clone on the fixed-batch input keeps one graph level (no nested model).
        em = keras.models.clone_model(sub, input_tensors=x)
        em.set_weights(sub.get_weights())
    except Exception:  # noqa: BLE001 - e.g. a layer whose config cannot be cloned
        y = keras.layers.Identity(name=_output_name(out))(sub(x))
        em = keras.Model(x, y, name="export")
    return em


def export_descriptor(descriptor, export_model):
    """The descriptor an export carries: the run's, with the exported input size."""
    hw = [int(v) for v in export_model.inputs[0].shape[1:3]]
    if descriptor.task == "top_down":
        want = [int(v) for v in descriptor.codec["config"]["input_size"]]
        if hw != want:
            raise ValueError(f"a top-down model decodes {want[0]}x{want[1]} crops (its codec); "
                             f"it cannot be exported at {hw[0]}x{hw[1]}")
    return descriptor.replace(input={**descriptor.input, "size": hw})


# ------------------------------------------------------------------ calibration
def calibration_images(source, num, input_hw, seed=0):
    """Up to ``num`` calibration inputs (N, H, W, 3) float32 RGB 0..255.

    Each image goes through the runner's letterbox, i.e. the same preprocessing as
    inference. ``source``: a folder of images (e.g. COCO's), or "synthetic".
    """
    if num < 1:
        raise ValueError(f"--calibration_images must be >= 1, got {num}")
    if str(source) == "synthetic":
        originals = _synthetic_images(num, input_hw, seed)
    else:
        folder = pathlib.Path(source)
        if not folder.is_dir():
            raise ValueError(f"calibration folder not found: {folder}")
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        if not files:
            raise ValueError(f"no .jpg/.png images in calibration folder {folder}")
        # Cycle through the folder; on repeat passes mirror the image so calibration
        # does not just see the same statistics again.
        originals = [_rt.read_image(files[i % len(files)]) for i in range(num)]
        originals = [im[:, ::-1] if (i // len(files)) % 2 else im for i, im in enumerate(originals)]
    out = [_rt.letterbox(np.ascontiguousarray(img), input_hw)[0] for img in originals]
    return np.stack(out).astype(np.float32)


def _synthetic_images(num, input_hw, seed):
    """Synthetic multi-person scenes (keras_pose.data.synthetic) as RGB uint8 images."""
    rng = np.random.default_rng(seed)
    # The 'easy' preset: 1-4 figures with some clutter and noise, a range that covers
    # the quickstart scenes (and a little beyond) for the activation statistics.
    imgs = [synthetic.make_scene(rng, tuple(input_hw), synthetic.get_preset("easy"))[0]
            for _ in range(num)]
    return imgs


# ------------------------------------------------------------------- conversion
@contextlib.contextmanager
def _quiet_stdout():
    """from_keras_model prints 'Saved artifact ...' to stdout; scripts emit JSON there."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def convert(export_model, quantize="fp32", calibration=None, io_dtype=None) -> bytes:
    """Convert a batch-1 Keras 3 model to TFLite bytes.

    Args:
        quantize: fp32 | fp16 | dynamic | int8 (full-integer, needs ``calibration``).
            ('qat' models are converted with 'int8': their fake-quant ranges are used.)
        calibration: (N, H, W, 3) float32 inputs for the representative dataset.
        io_dtype: int8 only - uint8 (default: feeds raw pixels), int8 or float32.
    """
    import tensorflow as tf
    if quantize not in ("fp32", "fp16", "dynamic", "int8"):
        raise ValueError(f"quantize must be one of fp32/fp16/dynamic/int8, got {quantize!r}")
    conv = tf.lite.TFLiteConverter.from_keras_model
    with _quiet_stdout():
        c = conv(export_model)
        _configure(c, tf, quantize, calibration, io_dtype)
        return c.convert()


def _configure(c, tf, quantize, calibration, io_dtype):
    # Explicit op sets: the Keras exporter's default would allow Flex (SELECT_TF_OPS).
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "fp16":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 export needs calibration images")
        io_dtype = io_dtype or "uint8"
        if io_dtype not in IO_DTYPES:
            raise ValueError(f"--io_dtype must be one of {IO_DTYPES}, got {io_dtype!r}")
        cal = np.asarray(calibration, np.float32)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([x[None]] for x in cal)
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                       tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        dt = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[io_dtype]
        c.inference_input_type = dt
        c.inference_output_type = dt


# ---------------------------------------------------------------------- sidecar
def write_sidecar(path, tflite_path, descriptor, quantize, extra=None) -> dict:
    """Write ``model.json`` (atomically): the descriptor plus what the graph's I/O needs (seam 5).

    ``tflite_sha256`` ties the sidecar to the exact graph bytes it describes, so a
    runner refuses a ``model.tflite`` that another export replaced.
    """
    interp = _rt.make_interpreter(str(tflite_path), num_threads=1)
    ind = interp.get_input_details()[0]
    outs = interp.get_output_details()
    def q(d):
        s, z = d["quantization"]
        return {"scale": float(s), "zero_point": int(z)}
    side = {
        "format": SIDECAR_FORMAT,
        "keras_pose_version": __version__,
        "descriptor": descriptor.to_dict(),
        "quantize": quantize,
        "input": {"shape": [int(v) for v in ind["shape"]], "dtype": np.dtype(ind["dtype"]).name,
                  "quantization": q(ind)},
        "outputs": [{"name": d["name"], "shape": [int(v) for v in d["shape"]],
                     "dtype": np.dtype(d["dtype"]).name, "quantization": q(d)} for d in outs],
        "tflite_sha256": hashlib.sha256(pathlib.Path(tflite_path).read_bytes()).hexdigest(),
    }
    side.update(extra or {})
    atomic_write_json(path, side)
    return side


# -------------------------------------------------------------------- validation
def match_persons(a, b, max_dist=None):
    """Greedy match of two Poses by mean distance over keypoints found in both.

    Returns a list of (i, j, mean_distance_px), closest pairs first.
    """
    pairs = []
    for i in range(len(a)):
        for j in range(len(b)):
            both = (a.keypoints[i, :, 2] > 0) & (b.keypoints[j, :, 2] > 0)
            if both.any():
                d = np.linalg.norm(a.keypoints[i, both, :2] - b.keypoints[j, both, :2], axis=1)
                pairs.append((float(d.mean()), i, j))
    pairs.sort()
    used_a, used_b, out = set(), set(), []
    for d, i, j in pairs:
        if i in used_a or j in used_b or (max_dist is not None and d > max_dist):
            continue
        used_a.add(i), used_b.add(j)
        out.append((i, j, d))
    return out


def compare_maps_and_poses(ref_maps, test_maps, codec, task="bottom_up") -> dict:
    """Agreement of two map batches (N, h, w, C): max abs diff, correlation, poses.

    Poses are decoded with the same codec from both; persons are matched greedily.
    """
    ref_maps = np.asarray(ref_maps, np.float32)
    test_maps = np.asarray(test_maps, np.float32)
    res = {"max_abs_diff": float(np.max(np.abs(ref_maps - test_maps))),
           "correlation": float(np.corrcoef(ref_maps.ravel(), test_maps.ravel())[0, 1])
           if ref_maps.std() > 0 and test_maps.std() > 0 else None}
    if task != "bottom_up":
        return res
    n_ref = n_test = n_match = 0
    dists = []
    for r, t in zip(ref_maps, test_maps):
        try:
            pr, pt = codec.decode(r), codec.decode(t)
        except Exception as e:  # noqa: BLE001 - a decoder bug must not lose the export
            res["pose_agreement"] = f"decode failed: {type(e).__name__}: {e}"
            return res
        n_ref, n_test = n_ref + len(pr), n_test + len(pt)
        m = match_persons(pr, pt)
        n_match += len(m)
        dists += [d for _, _, d in m]
    res.update({"persons_keras": n_ref, "persons_tflite": n_test, "persons_matched": n_match,
                "mean_keypoint_distance_px": float(np.mean(dists)) if dists else None,
                "matched_distances_px": [round(float(d), 4) for d in dists]})
    return res


def validate_export(tflite_path, export_model, images, codec, task, num_threads=2) -> dict:
    """Run Keras and the TFLite interpreter on ``images`` (N, H, W, 3) and compare."""
    runner = _rt.NetRunner(str(tflite_path), num_threads=num_threads)
    ref = np.asarray(export_model.predict(images, batch_size=1, verbose=0), np.float32)
    test = np.stack([runner.run(x) for x in images])
    res = compare_maps_and_poses(ref, test, codec, task)
    res["num_images"] = int(len(images))
    return res


# ------------------------------------------------------------------------ main
def export_tflite(model, output_dir, quantize="fp32", calibration=None, io_dtype=None,
                  config=None, input_size=None, qat_kwargs=None, log=print,
                  descriptor=None) -> dict:
    """Export ``model`` to ``output_dir/model.tflite`` + ``model.json``; returns the sidecar.

    Args:
        model: a Keras model (training or inference form).
        calibration: (N, H, W, 3) float32 letterboxed inputs (int8/qat calibration and the
            validation images; required).
        config: the training ``config.json`` dict (its descriptor; the preset for qat).
        descriptor: the model's RunDescriptor (default: read from ``config``).
        qat_kwargs: forwarded to ``keras_pose.export.qat.qat_export`` for quantize='qat'.
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"--quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if io_dtype is not None and quantize not in ("int8", "qat") and io_dtype != "float32":
        raise ValueError(f"--io_dtype {io_dtype} needs --quantize int8 or qat")
    if calibration is None or len(calibration) == 0:
        raise ValueError("export needs calibration images (also used to validate the export)")
    if descriptor is None:
        if not config:
            raise ValueError("export needs the model's run descriptor: export a run folder "
                             "(--model_dir, with its config.json) or pass descriptor=")
        descriptor = read_descriptor(config)
    out = pathlib.Path(output_dir)
    check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    em = build_export_model(model, descriptor, input_size)
    descriptor = export_descriptor(descriptor, em)
    codec = descriptor.build_codec()
    if quantize == "qat":
        from keras_pose.export import qat
        data = qat.qat_export(model, config or {}, calibration, em,
                              io_dtype=io_dtype or "uint8", **(qat_kwargs or {}))
    else:
        data = convert(em, quantize, calibration, io_dtype)
    # An earlier export in this folder stays whole until the new one is: the graph is
    # validated and its sidecar written under temporary names, then the graph is
    # renamed into place and the sidecar LAST (keras_pose/io.py). The sidecar's
    # tflite_sha256 makes a runner refuse the pair in the instant between the renames.
    tfl = out / "model.tflite"
    # (with-items exit in reverse: the graph is renamed first, the sidecar last)
    with atomic_path(out / "model.json") as tmp_side, atomic_path(tfl) as tmp_tfl:
        pathlib.Path(tmp_tfl).write_bytes(data)
        val = validate_export(tmp_tfl, em, calibration, codec, descriptor.task)
        side = write_sidecar(tmp_side, tmp_tfl, descriptor, quantize,
                             extra={"validation": val, "size_bytes": len(data),
                                    "keras_output_names": [_output_name(o) for o in em.outputs],
                                    "io_dtype": io_dtype or ("uint8" if quantize in ("int8", "qat")
                                                             else "float32")})
    log(f"wrote {tfl} ({len(data) / 1024:.1f} KiB, {quantize}); validation on "
        f"{val['num_images']} images: {json.dumps(val)}")
    return side
