"""Tiny bottom-up models for the export/runtime tests (64x64 input -> 16x16x50 maps).

``tiny_imhn_config``: the ``imhn_test`` preset (1 stack, order 2, width 16, 64 x 64). ``train_tiny`` fits its finest output for a few dozen steps on
a few synthetic scenes, so the maps hold real peaks and the decoder finds persons.
"""
import numpy as np

SIZE = 64


def tiny_imhn_config():
    """The ``imhn_test`` preset: 1 stack, order 2, width 16, 64 x 64 input."""
    from keras_pose.models.presets import get_preset
    cfg = get_preset("imhn_test")
    assert tuple(cfg.input_size) == (SIZE, SIZE)
    return cfg


def synthetic_set(num, seed=0, size=SIZE):
    """(images (N, H, W, 3) float32 0..255, keypoint arrays [(P, 17, 3)] per image)."""
    from keras_pose.data import synthetic
    rng = np.random.default_rng(seed)
    cfg = synthetic.get_preset("easy").replace(max_figures=2, min_height=0.6, max_height=0.9)
    imgs, kps = [], []
    for _ in range(num):
        img, anns = synthetic.make_scene(rng, (size, size), cfg)
        imgs.append(img.astype(np.float32))
        k = [np.asarray(a["keypoints"], np.float32).reshape(17, 3) for a in anns
             if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)]
        kps.append(np.stack(k) if k else np.zeros((0, 17, 3), np.float32))
    return np.stack(imgs), kps


def train_tiny(steps=40, num_images=8, seed=0):
    """(full IMHN model, its config, images): the finest output fitted to the codec's targets.

    Loss: masked squared error on the 50 channels of the finest scale (enough for a smoke
    test; the real training uses the focal L2 over all scales).
    """
    import keras
    from keras_pose.codecs import BodyPartsCodec
    from keras_pose.models.imhn import build_imhn
    keras.utils.set_random_seed(seed)
    cfg = tiny_imhn_config()
    model = build_imhn(cfg)
    codec = BodyPartsCodec()
    x, kps = synthetic_set(num_images, seed)
    tg = [codec.encode(k, (SIZE, SIZE)) for k in kps]
    y = np.stack([np.concatenate([t["heatmaps"], t["mask"]], -1) for t in tg]).astype(np.float32)
    finest = keras.Model(model.inputs[0], model.get_layer(f"s{cfg.stacks - 1}_x0").output)

    def loss(yt, yp):
        return keras.ops.mean(yt[..., -1:] * keras.ops.square(yp - yt[..., :-1]))

    finest.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, jit_compile=False)
    ds_x = np.concatenate([x] * ((steps * 4) // len(x) + 1))[: steps * 4]
    ds_y = np.concatenate([y] * ((steps * 4) // len(y) + 1))[: steps * 4]
    finest.fit(ds_x, ds_y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    return model, cfg, x


_CACHE = {}


def trained_export():
    """Train once per pytest process and export fp32; returns a dict of paths and objects.

    Keys: model (full Keras IMHN), config, descriptor, images (N, 64, 64, 3), dir (a run
    folder: model.keras + config.json, and fp32/model.tflite + model.json). Cached at module level: every test file shares it; the
    directory is removed when the process exits.
    """
    if "v" not in _CACHE:
        import atexit
        import pathlib
        import shutil
        import tempfile
        from keras_pose.export import tflite as export_lib
        from keras_pose.descriptor import describe
        from keras_pose.train.config import TrainConfig
        model, cfg, images = train_tiny(steps=80)
        desc = describe(cfg, preset="imhn_test")
        d = pathlib.Path(tempfile.mkdtemp(prefix="kp_export_"))
        atexit.register(shutil.rmtree, d, ignore_errors=True)
        model.save(d / "model.keras")  # a run folder: model.keras + config.json
        TrainConfig(preset="imhn_test", model_dir=str(d)).save(str(d / "config.json"), desc)
        side = export_lib.export_tflite(model, d / "fp32", "fp32", images, log=lambda m: None,
                                        descriptor=desc)
        _CACHE["v"] = {"model": model, "config": cfg, "images": images, "dir": d,
                       "descriptor": desc, "fp32": d / "fp32" / "model.tflite",
                       "fp32_sidecar": side,
                       "export_model": export_lib.build_export_model(model, desc)}
    return _CACHE["v"]
