"""What the benchmark scripts share: one LiteRT loader, one timer, one ground-truth-map oracle.

* ``load_litert(model, num_threads)`` -> (interpreter, kernels): the library's loader
  (``keras_pose.inference.networks.make_interpreter``: XNNPACK first, the builtin kernels
  when XNNPACK refuses an int8 model; ``docs/tf_stack_notes.md`` §3), plus which of the
  two ran, so a table can say so.
* ``time_rounds(calls, runs, warmup)`` -> {name: [ms, ...]}: every callable is warmed up,
  then each round calls every one of them once, in turn. Load swings on a shared CPU
  then hit all candidates alike, so their *ratios* stay meaningful even when absolute
  times drift. ``summary(ms)`` gives median / percentiles.
* ``oracle_results(items, codec, size)``: the bottom-up representation's ceiling - each
  image's ground truth encoded into maps at the model-input frame, decoded by the same
  codec, mapped back to original pixels. Score it with pycocotools to read the AP a
  perfect network would get with these codec settings and this framing.

Imports without TensorFlow (``export/benchmark_tflite.py`` must stay TensorFlow-free).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Iterable, Optional

import numpy as np

__all__ = ["load_litert", "feed_random", "time_rounds", "summary", "oracle_results",
           "cpu_name"]


class _Fallbacks(logging.Handler):
    """Counts the loader's 'XNNPACK failed ... retrying without default delegates' notes."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = 0

    def emit(self, record):
        if "without default delegates" in record.getMessage():
            self.seen += 1


def load_litert(model, num_threads: int = 2):
    """(allocated interpreter, "xnnpack" | "builtin_without_default_delegates") for a
    .tflite path or its bytes."""
    from keras_pose.inference.networks import make_interpreter

    logger = logging.getLogger("keras_pose")
    watch = _Fallbacks()
    logger.addHandler(watch)
    try:
        interp = make_interpreter(model, num_threads=num_threads)
    finally:
        logger.removeHandler(watch)
    return interp, ("builtin_without_default_delegates" if watch.seen else "xnnpack")


def feed_random(interp, seed: int = 0) -> None:
    """Set the interpreter's input to a random image-like tensor of its shape and dtype
    (0..255; integer inputs rounded). Latency does not depend on the values."""
    d = interp.get_input_details()[0]
    x = np.random.default_rng(seed).uniform(0, 255, d["shape"]).astype(np.float32)
    if d["dtype"] != np.float32:
        x = np.clip(np.round(x), 0, 255).astype(d["dtype"])
    interp.set_tensor(d["index"], x)


def time_rounds(calls: Dict[str, Callable[[], object]], runs: int, warmup: int = 5,
                on_call: Optional[Callable[[str, object], None]] = None) -> Dict[str, list]:
    """{name: [milliseconds per call]} over ``runs`` alternating rounds.

    Each callable first runs ``warmup`` times untimed (XNNPACK packs its weights on the
    first invoke, caches fill). Then every round calls each one once, in the order given.
    ``on_call(name, result)`` runs after each timed call, outside the timing (e.g. to
    collect a runner's per-stage times).
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            out = fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
            if on_call is not None:
                on_call(name, out)
    return times


def summary(ms, percentiles=(10, 90)) -> dict:
    """{"median_ms", "p10_ms", "p90_ms", "min_ms"} (as floats) of a list of milliseconds."""
    v = np.asarray(ms, np.float64)
    out = {"median_ms": float(np.median(v))}
    for p in percentiles:
        out[f"p{p}_ms"] = float(np.percentile(v, p))
    out["min_ms"] = float(v.min())
    return out


def oracle_results(items: Iterable, codec, size) -> dict:
    """{image_id: Poses in original pixels} decoded from ground-truth maps.

    Args:
        items: (image_id, keypoints (N, K, 3) [x, y, v] in original pixels, affine)
            with ``affine`` the (2, 3) original -> model-input transform the evaluation
            uses (a letterbox), or None when the image already is the model input.
        codec: a bottom-up codec (``encode(kps, size)["heatmaps"]`` and ``decode``).
        size: (H, W) model input.
    """
    from keras_pose.geometry import apply_affine, invert_affine

    found = {}
    for image_id, kps, affine in items:
        kps = np.asarray(kps, np.float64).copy()
        if affine is not None:
            kps[..., :2] = apply_affine(kps[..., :2], affine)
            kps[kps[..., 2] == 0] = 0.0
        maps = codec.encode(kps, tuple(size))["heatmaps"]
        poses = codec.decode(maps, image_height=float(size[0]))
        found[image_id] = poses if affine is None else poses.transform(invert_affine(affine))
    return found


def randomise_weights(model, seed: int = 0, bias_std: float = 0.0) -> None:
    """Weights of real magnitude in place: He-like conv/dense kernels, plausible BatchNorm.

    Untrained builders initialise near zero (every output would look alike) and int8
    calibration needs real activation ranges. BN layers (4 arrays) get gamma U(0.6, 1.4),
    beta and mean N(0, 0.1), variance U(0.5, 2); other biases N(0, ``bias_std``).
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if len(ws) == 4:  # BN: gamma, beta, mean, var
            n = ws[0].shape[0]
            ws = [rng.uniform(0.6, 1.4, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                  rng.uniform(0.5, 2.0, n)]
        else:
            fan_in = int(np.prod(ws[0].shape[:-1]))
            ws = [rng.normal(0, 1 / np.sqrt(fan_in), ws[0].shape)] + \
                 [rng.normal(0, bias_std, w.shape) if bias_std else np.zeros(w.shape)
                  for w in ws[1:]]
        layer.set_weights([np.asarray(w, np.float32) for w in ws])


def cpu_name() -> str:
    """The CPU model name (``lscpu``'s "Model name"), or the platform's best guess."""
    import platform
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
