"""A tiny functional bottom-up model for export/runtime tests (64x64 -> 16x16x50).

Conv/BN/LeakyReLU/SE(Multiply)/UpSampling with the normalisation (Rescaling) inside the
graph, like the real models; ~10k parameters so conversion takes about a second.
"""
import numpy as np


def tiny_pose_model(size=64, channels=50, width=16, seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    L = keras.layers
    x = inp = keras.Input((size, size, 3), name="image")
    x = L.Rescaling(1 / 255.0)(x)
    x = L.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(0.1)(x)
    x = L.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(0.1)(x)
    skip = x
    y = L.Conv2D(width, 3, strides=2, padding="same")(x)
    y = L.LeakyReLU(0.1)(y)
    g = L.GlobalAveragePooling2D(keepdims=True)(y)
    g = L.Dense(4, activation="relu")(g)
    g = L.Dense(width, activation="sigmoid")(g)
    y = L.Multiply()([y, g])
    y = L.UpSampling2D(2)(y)
    x = L.Add()([skip, y])
    out = L.Conv2D(channels, 1, activation="sigmoid", name="s0_x0")(x)
    return keras.Model(inp, out, name="tiny_pose")
