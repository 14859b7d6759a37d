"""Codecs: one object per output representation, owning encode and decode.

Imports without TensorFlow (the TFLite runner uses them on phone-side Python).
"""
from keras_pose.codecs.body_parts import BodyPartsCodec, BodyPartsCodecConfig
from keras_pose.codecs.heatmap import HeatmapCodec, HeatmapCodecConfig

__all__ = ["BodyPartsCodec", "BodyPartsCodecConfig", "HeatmapCodec", "HeatmapCodecConfig"]
