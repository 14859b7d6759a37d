"""RunDescriptor: round trip, one codec builder, version refusal, runs written before it."""
import json

import numpy as np
import pytest

from keras_pose.codecs import BodyPartsCodec, HeatmapCodec
from keras_pose.descriptor import (FORMAT_VERSION, DescriptorError, RunDescriptor, build_codec,
                                   describe)
from keras_pose.skeleton import COCO


def _configs():
    from keras_pose.models.presets import get_preset
    return get_preset("imhn_test"), get_preset("fasterpose_tiny"), get_preset("simple_baseline_tiny")


def test_describe_presets_name_task_codec_and_output():
    imhn, fp, sb = _configs()
    d = describe(imhn, {"sigma": 3.5}, preset="imhn_test")
    assert d.task == "bottom_up" and d.preset == "imhn_test" and d.input_size == (64, 64)
    assert d.output == {"layer": "s0_x0", "activation": None}
    codec = build_codec(d)
    assert isinstance(codec, BodyPartsCodec)
    assert codec.config.sigma == 3.5 and codec.config.num_scales == imhn.num_scales == 3
    f = describe(fp)
    assert f.task == "top_down" and f.output == {"layer": "heatmaps", "activation": "sigmoid"}
    hc = f.build_codec()
    assert isinstance(hc, HeatmapCodec) and hc.heatmap_size == tuple(fp.output_size)
    assert describe(sb).output == {"layer": "heatmaps", "activation": None}
    deeper = imhn.replace(stacks=3)
    assert describe(deeper).output_layer == "s2_x0"  # the last stack's finest map


def test_round_trip_through_json():
    imhn, fp, _ = _configs()
    spec = COCO
    for d in (describe(imhn, preset="imhn_test"), describe(fp, spec=spec)):
        back = RunDescriptor.from_dict(json.loads(d.to_json()))
        assert back == d
        assert back.build_codec().get_config() == d.build_codec().get_config()
        assert back.spec == spec


def test_saved_codec_config_is_used_as_is():
    imhn, _, _ = _configs()
    codec = BodyPartsCodec(sigma=4.0, num_scales=3, min_limb_length=4.0)
    for given in (codec, codec.get_config()):
        d = describe(imhn, given)
        assert d.build_codec().config == codec.config


@pytest.mark.parametrize("change,match", [
    ({"version": FORMAT_VERSION + 1}, "version 2 is not supported"),
    ({"version": None}, "version None is not supported"),
    ({"format": "something.else"}, "not supported"),
    ({"task": "sideways"}, "task 'sideways'"),
    ({"codec": {"type": "HeatmapCodec", "config": {}}}, "needs codec type BodyPartsCodec"),
])
def test_bad_descriptors_are_refused_in_one_line(change, match):
    imhn, _, _ = _configs()
    d = {**describe(imhn).to_dict(), **change}
    with pytest.raises(DescriptorError, match=match) as e:
        RunDescriptor.from_dict(d, "run/config.json")
    assert "\n" not in str(e.value) and "run/config.json" in str(e.value)


def test_missing_fields_and_bad_codec_config():
    imhn, _, _ = _configs()
    d = describe(imhn).to_dict()
    del d["output"]
    with pytest.raises(DescriptorError, match="lacks output"):
        RunDescriptor.from_dict(d)
    bad = describe(imhn).replace(codec={"type": "BodyPartsCodec", "config": {"stride": 0}})
    with pytest.raises(DescriptorError, match="invalid config"):
        bad.build_codec()


def test_config_json_round_trip_and_old_runs(tmp_path):
    """config.json carries the descriptor; a config.json from before gets one derived once."""
    from keras_pose.train.config import TrainConfig, read_descriptor
    imhn, _, _ = _configs()
    desc = describe(imhn, {"sigma": 3.5}, preset="imhn_test")
    cfg = TrainConfig(preset="imhn_test", model_dir=str(tmp_path), codec=desc.build_codec().get_config())
    path = tmp_path / "config.json"
    cfg.save(str(path), desc)
    assert TrainConfig.load(str(path)).to_json() == cfg.to_json()  # not a TrainConfig field
    assert read_descriptor(str(path)) == desc
    old = cfg.to_dict()                                  # written before descriptors existed
    (tmp_path / "old.json").write_text(json.dumps(old))
    derived = read_descriptor(str(tmp_path / "old.json"))
    assert derived.build_codec().config == desc.build_codec().config
    assert derived.output == desc.output and derived.task == "bottom_up"
    newer = json.loads(path.read_text())
    newer["descriptor"]["version"] = 99
    path.write_text(json.dumps(newer))
    with pytest.raises(ValueError, match="version 99 is not supported"):
        read_descriptor(str(path))


def test_descriptor_module_imports_without_tensorflow():
    import subprocess
    import sys
    code = ("import sys, keras_pose.descriptor\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_custom_model_descriptor():
    codec = HeatmapCodec(input_size=(64, 48), heatmap_size=(16, 12))
    d = RunDescriptor.create(codec, (64, 48), "heatmaps", "sigmoid")
    assert d.task == "top_down" and d.output_activation == "sigmoid"
    assert np.array_equal(d.build_codec().input_size, (64, 48))
    with pytest.raises(DescriptorError, match="unknown codec"):
        RunDescriptor.create(object(), None, "x")
