"""Shared test helper: Keras serialisation round trips (every Layer, Model, Loss and Codec).

``assert_keras_roundtrip(obj, inputs, tmp_path)`` checks that a keras_pose
Layer, Loss or Model survives

1. ``get_config`` -> ``from_config`` (config is JSON-serialisable; the rebuilt
   object, given the same weights, gives identical outputs), and
2. a ``.keras`` file save/load (a Layer is wrapped in a functional model, a Loss
   is attached to a compiled identity model), again with identical outputs.

``inputs``: for a Layer or Model, what you would call it with (an array or a
list of arrays); for a Loss, the pair ``(y_true, y_pred)``.
Returns the object reloaded from the ``.keras`` file.
"""
from __future__ import annotations

import json

import keras
import numpy as np


def _to_numpy(x):
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_numpy(v) for v in x]
    return np.asarray(keras.ops.convert_to_numpy(x))


def _assert_same(a, b, atol, what):
    a, b = _to_numpy(a), _to_numpy(b)
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), f"{what}: output keys differ"
        for k in a:
            _assert_same(a[k], b[k], atol, f"{what}[{k!r}]")
        return
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{what}: output counts differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, atol, f"{what}[{i}]")
        return
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=what)


def _check_registered(obj):
    """keras_pose classes must be registered (else .keras load fails, docs/tf_stack_notes.md §2)."""
    cls = type(obj)
    if cls.__module__.startswith("keras_pose"):
        name = keras.saving.get_registered_name(cls)
        assert name.startswith("keras_pose>"), (
            f"{cls.__name__} is not registered with "
            "@keras.saving.register_keras_serializable(package='keras_pose')")


def _check_json_config(obj):
    cfg = obj.get_config()
    json.dumps(keras.saving.serialize_keras_object(obj))  # must not raise
    return cfg


def _roundtrip_model(model, inputs, tmp_path, atol):
    expected = model(inputs, training=False)
    cfg = _check_json_config(model)
    clone = model.__class__.from_config(cfg)
    clone.set_weights(model.get_weights())
    _assert_same(expected, clone(inputs, training=False), atol, "from_config")
    path = tmp_path / "roundtrip_model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [w.shape for w in loaded.get_weights()] == [w.shape for w in model.get_weights()]
    _assert_same(expected, loaded(inputs, training=False), atol, ".keras load")
    return loaded


def _roundtrip_layer(layer, inputs, tmp_path, atol):
    _check_registered(layer)
    expected = layer(inputs, training=False)
    cfg = _check_json_config(layer)
    clone = layer.__class__.from_config(cfg)
    clone(inputs, training=False)  # builds the weights
    clone.set_weights(layer.get_weights())
    _assert_same(expected, clone(inputs, training=False), atol, "from_config")
    # A .keras file holds models: wrap the layer in a one-layer functional model.
    xs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    tensors = [keras.Input(shape=np.shape(x)[1:], dtype=str(np.asarray(x).dtype)) for x in xs]
    model_in = tensors if isinstance(inputs, (list, tuple)) else tensors[0]
    model = keras.Model(model_in, layer(model_in))
    path = tmp_path / "roundtrip_layer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    reloaded_layer = loaded.layers[-1]
    assert type(reloaded_layer) is type(layer)
    _assert_same(expected, loaded(inputs, training=False), atol, ".keras load")
    return reloaded_layer


def _roundtrip_loss(loss, inputs, tmp_path, atol):
    _check_registered(loss)
    y_true, y_pred = inputs
    expected = loss(y_true, y_pred)
    cfg = _check_json_config(loss)
    clone = loss.__class__.from_config(cfg)
    _assert_same(expected, clone(y_true, y_pred), atol, "from_config")
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(revived) is type(loss)
    _assert_same(expected, revived(y_true, y_pred), atol, "serialize_keras_object")
    if isinstance(y_pred, (list, tuple, dict)):
        return revived  # multi-output losses: the JSON round trip above is what .keras stores
    # A .keras file stores the compiled loss: attach it to an identity model.
    inp = keras.Input(shape=np.shape(y_pred)[1:])
    model = keras.Model(inp, keras.layers.Identity()(inp))
    model.compile(loss=loss)
    path = tmp_path / "roundtrip_loss.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss) is type(loss), f"loaded loss is {type(loaded.loss).__name__}"
    _assert_same(expected, loaded.loss(y_true, y_pred), atol, ".keras load")
    return loaded.loss


def assert_keras_roundtrip(obj, inputs, tmp_path, atol=1e-6):
    """Assert ``obj`` (Layer, Loss or Model) survives config and ``.keras`` round trips.

    Outputs (a tensor, a list or a dict) must match to ``atol``. Returns the
    object reloaded from the ``.keras`` file (the loaded model for a Model).
    """
    if isinstance(obj, keras.Model):
        return _roundtrip_model(obj, inputs, tmp_path, atol)
    if isinstance(obj, keras.losses.Loss):
        return _roundtrip_loss(obj, inputs, tmp_path, atol)
    if isinstance(obj, keras.layers.Layer):
        return _roundtrip_layer(obj, inputs, tmp_path, atol)
    raise TypeError(f"assert_keras_roundtrip: unsupported object {type(obj).__name__}")
