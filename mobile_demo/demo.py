"""Pose demo on an image, a video or a camera with an exported TFLite model.

  python mobile_demo/demo.py --model exported/int8/model.tflite --input photo.jpg --output out.png
  python mobile_demo/demo.py --model model.tflite --input clip.mp4 --output out.mp4
  python mobile_demo/demo.py --model model.tflite --input 0 --display

``keras_pose.load`` of a .tflite needs only NumPy, OpenCV and ai-edge-litert (no TensorFlow).
Skeletons, person ids (videos: greedy OKS tracking + One-Euro smoothing) and FPS are drawn.
"""
import argparse
import pathlib
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from keras_pose.inference.loader import load  # noqa: E402
from keras_pose.io import load_image  # noqa: E402
from keras_pose.tracking import PoseTracker  # noqa: E402
from keras_pose.visualize import draw_poses  # noqa: E402

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DemoError(Exception):
    """A one-line, user-facing problem (bad input or output)."""


def run_image(runner, path, output, display):
    image = load_image(path)
    t = time.perf_counter()
    poses = runner(image)
    fps = 1.0 / max(time.perf_counter() - t, 1e-9)
    out = draw_poses(image, poses, runner.codec.spec, ids=np.arange(len(poses)), fps=fps)
    if output:
        if not cv2.imwrite(str(output), cv2.cvtColor(out, cv2.COLOR_RGB2BGR)):
            raise DemoError(f"cannot write {output} (unknown extension or unwritable folder)")
    if display:
        _show(out, wait=0)
    return {"frames": 1, "persons": [len(poses)]}


def _open_capture(src):
    if src.isdigit():
        cap = cv2.VideoCapture(int(src))
        if not cap.isOpened():
            raise DemoError(f"camera {src} is not available (no device or no permission)")
        return cap, None
    if not pathlib.Path(src).is_file():
        raise DemoError(f"input not found: {src}")
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise DemoError(f"cannot open video {src} (unsupported or corrupt file)")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return cap, (n if n > 0 else None)


def run_stream(runner, src, output, display, max_frames=None):
    cap, expected = _open_capture(src)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 30.0
    fps_in = fps_in if 1 <= fps_in <= 240 else 30.0
    tracker, writer, fps, persons = PoseTracker(runner.codec.spec), None, None, []
    try:
        while max_frames is None or len(persons) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # OpenCV gives BGR; the runner wants RGB
            t = time.perf_counter()
            poses, ids = tracker.update(runner(rgb), dt=1.0 / fps_in)
            dt = time.perf_counter() - t
            fps = 1.0 / max(dt, 1e-9) if fps is None else 0.9 * fps + 0.1 / max(dt, 1e-9)
            out = cv2.cvtColor(draw_poses(rgb, poses, runner.codec.spec, ids=ids, fps=fps),
                               cv2.COLOR_RGB2BGR)
            if output:
                if writer is None:
                    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps_in,
                                             (out.shape[1], out.shape[0]))
                    if not writer.isOpened():
                        raise DemoError(f"cannot write video {output} (use a .mp4 path)")
                writer.write(out)
            if display and _show(out, wait=1) == 27:  # Esc stops a live stream
                break
            persons.append(len(poses))
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if not persons:
        raise DemoError(f"no frame could be read from {src}")
    want = min(expected, max_frames) if expected and max_frames else expected
    if want is not None and len(persons) < want:
        raise DemoError(f"video {src} ended early: read {len(persons)} of {want} frames "
                        f"(truncated file?); {output or 'nothing'} holds the frames read")
    return {"frames": len(persons), "persons": persons}


def _show(img_bgr_or_rgb, wait):
    try:
        cv2.imshow("keras_pose", img_bgr_or_rgb)
        return cv2.waitKey(wait) & 0xFF
    except cv2.error as e:
        raise DemoError("no display available (headless OpenCV or no $DISPLAY); "
                        "use --output instead") from e


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model.tflite (model.json beside it), or a "
                    "run folder / .keras (imports TensorFlow)")
    ap.add_argument("--input", required=True, help="image, video file or camera index (0)")
    ap.add_argument("--output", default=None, help="out.png for an image, out.mp4 for a video")
    ap.add_argument("--display", action="store_true", help="show a window")
    ap.add_argument("--num_threads", type=int, default=2)
    ap.add_argument("--max_frames", type=int, default=None, help="stop a video after N frames")
    a = ap.parse_args(argv)
    if not a.output and not a.display:
        ap.error("give --output and/or --display")
    for flag, value in (("--num_threads", a.num_threads), ("--max_frames", a.max_frames)):
        if value is not None and value < 1:
            sys.exit(f"demo: {flag} {value}: must be >= 1")
    try:
        lite = a.model.endswith(".tflite") or pathlib.Path(a.model, "model.tflite").is_file()
        runner = load(a.model, **({"num_threads": a.num_threads} if lite else {}))
        if a.input.lower().endswith(IMAGE_EXT):
            if a.output and not a.output.lower().endswith(IMAGE_EXT):
                raise DemoError(f"--output {a.output}: an image input needs an image output (.png)")
            res = run_image(runner, a.input, a.output, a.display)
        else:
            if a.output and not a.output.lower().endswith((".mp4", ".avi")):
                raise DemoError(f"--output {a.output}: a video/camera input needs a .mp4 output")
            res = run_stream(runner, a.input, a.output, a.display, a.max_frames)
    except (DemoError, ValueError) as e:  # TFLiteRunnerError and ImageReadError included
        print(f"demo: {e}", file=sys.stderr)
        return 1
    print(f"demo: {res['frames']} frame(s), persons per frame {res['persons'][:10]}"
          f"{' ...' if len(res['persons']) > 10 else ''}; wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
