"""The restricted ``.pth`` reader: both torch formats, dtypes, hostile pickles refused.

No PyTorch: files are written by tests/_torch_writer.py (torch's layouts) or
taken from the shared sample, which torch itself wrote.
"""
import collections
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import _torch_writer as tw
from keras_pose.export.torch_checkpoint import (CheckpointFormatError, UnsafeCheckpointError,
                                                load_torch_checkpoint)

REPO = pathlib.Path(__file__).resolve().parents[1]


def _sample():
    rng = np.random.default_rng(0)
    return {"epoch": 52,
            "weights": collections.OrderedDict([
                ("posenet.a.weight", rng.normal(size=(4, 3, 3, 3)).astype(np.float16)),
                ("posenet.a.bias", rng.normal(size=(4,)).astype(np.float32)),
                ("posenet.bn.num_batches_tracked", np.array(7, np.int64)),
                ("posenet.t", np.asfortranarray(rng.normal(size=(3, 5))))]),
            "note": ["x", 1.5, (2, None)]}


@pytest.mark.parametrize("legacy", [False, True])
def test_roundtrip_both_formats(tmp_path, legacy):
    src = _sample()
    path = tmp_path / "c.pth"
    tw.save(src, path, legacy=legacy)
    got = load_torch_checkpoint(path)
    assert got["epoch"] == 52 and got["note"] == ["x", 1.5, (2, None)]
    assert isinstance(got["weights"], collections.OrderedDict)
    assert list(got["weights"]) == list(src["weights"])
    for k, v in src["weights"].items():
        assert got["weights"][k].dtype == v.dtype and got["weights"][k].shape == v.shape
        assert np.array_equal(got["weights"][k], v)


def test_shared_sample_formats_agree(ibp_sample_dir):
    zip_ = load_torch_checkpoint(ibp_sample_dir / "checkpoint.pth")
    legacy = load_torch_checkpoint(ibp_sample_dir / "checkpoint_legacy.pth")
    assert zip_["epoch"] == legacy["epoch"] == 52
    a, b = zip_["weights"], legacy["weights"]
    assert list(a) == list(b) and len(a) == 480
    assert a["posenet.pre.conv1.weight"].shape == (64, 3, 7, 7)
    assert a["posenet.pre.conv1.weight"].dtype == np.float16
    assert a["posenet.pre.bn1.num_batches_tracked"].dtype == np.int64
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("legacy", [False, True])
def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    tw.save_hostile(path, f"touch {marker}", legacy=legacy)
    with pytest.raises(UnsafeCheckpointError, match=r"system.*nothing from the file was executed"):
        load_torch_checkpoint(path)
    assert not marker.exists()


def test_hostile_pickle_refused_through_the_script(tmp_path):
    """The command-line converter refuses it in one line, and nothing ran."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    tw.save_hostile(path, f"touch {marker}")
    r = subprocess.run([sys.executable, str(REPO / "export" / "convert_checkpoint.py"),
                        "--checkpoint", str(path), "--model_dir", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode != 0
    assert "refusing to load" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists() and not (tmp_path / "out" / "model.keras").exists()


def test_other_globals_refused(tmp_path):
    import pickle
    path = tmp_path / "g.pth"
    with zipfile.ZipFile(path, "w") as zf:  # a harmless-looking builtin is refused too
        zf.writestr("archive/data.pkl", pickle.dumps({"w": print}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"builtin\w*\.print"):
        load_torch_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x80\x02K\x05."])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError, match=str(path)):
        load_torch_checkpoint(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated(tmp_path, legacy):
    path = tmp_path / "c.pth"
    tw.save(_sample(), path, legacy=legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(CheckpointFormatError):
        load_torch_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_torch_checkpoint(tmp_path / "nope.pth")


def test_reader_imports_no_tensorflow():
    code = ("import sys, keras_pose.export.torch_checkpoint as t; "
            "assert 'tensorflow' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
