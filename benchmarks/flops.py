"""Parameters, true MACs and HRNet-convention GFLOPs of every model preset.

Builds each preset with random weights (no downloads) and counts it with
``keras_pose.models.flops.count_model``: ``params`` (count_params, BN moving
statistics included), ``trainable_params``, ``macs``/``gmacs`` (true
multiply-accumulates, a transposed conv counted on its input grid) and
``hrnet_gflops`` (weight.numel x output pixels over conv/deconv/dense layers,
/1024^3 - the convention of the SimpleBaseline/HRNet/FasterPose tables, see
``docs/method_top_down.md`` §2.2), plus the output shapes. A ``comparison`` block puts
FasterPose (r = 8) beside SimpleBaseline at 256x192 for ResNet-50 and
MobileNetV2.

    python benchmarks/flops.py [--presets imhn_tiny,fasterpose_tiny]

Prints one JSON object. The two paper IMHNs take ~5 s each to build.
"""
from __future__ import annotations

import argparse
import json
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="", help="comma-separated preset names (default: all)")
    args = parser.parse_args(argv)

    from keras_pose.models import presets
    from keras_pose.models.flops import count_model

    names = [n for n in args.presets.split(",") if n] or presets.list_presets()
    result = {"presets": {}}
    for name in names:
        t0 = time.perf_counter()
        model = presets.from_preset(name)
        entry = count_model(model)
        entry["config"] = presets.get_preset(name).to_dict()
        entry["build_s"] = round(time.perf_counter() - t0, 2)
        result["presets"][name] = entry
        del model

    pairs = {"resnet50": ("fasterpose_r50_256x192", "simple_baseline_r50_256x192"),
             "mobilenetv2": ("fasterpose_mnv2_256x192", "simple_baseline_mnv2_256x192")}
    comparison = {}
    for backbone, (fp_name, sb_name) in pairs.items():
        fp, sb = result["presets"].get(fp_name), result["presets"].get(sb_name)
        if fp is None or sb is None:
            continue
        comparison[backbone] = {
            "fasterpose": {k: fp[k] for k in ("params", "trainable_params", "gmacs", "hrnet_gflops")},
            "simple_baseline": {k: sb[k] for k in ("params", "trainable_params", "gmacs", "hrnet_gflops")},
            "ratio_hrnet_gflops": round(fp["hrnet_gflops"] / sb["hrnet_gflops"], 3),
            "ratio_true_macs": round(fp["macs"] / sb["macs"], 3),
            "ratio_params": round(fp["params"] / sb["params"], 3),
        }
    if comparison:
        result["comparison_256x192"] = comparison
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
