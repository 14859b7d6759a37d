"""PosePredictor: the bottom-up (Simple Pose) predictor over a network.

image -> letterbox (``geometry``) -> network -> flip fusion -> multi-scale
averaging -> ONE ``codec.decode`` -> poses mapped back to the original image
(Li et al., AAAI 2020; ``docs/method_bottom_up.md`` §5.2). The network is a
Keras model or a LiteRT interpreter (``inference.networks``): the Keras path,
the TFLite path and COCO evaluation share this code.

Maps live at stride s (4): map cell q is centred on input pixel s*q + s/2 - 0.5
(the encoder's convention), so every frame change is an affine and maps of
different scales are resampled into the frame of scale 1.0 before averaging.
"""
from __future__ import annotations

import collections
import copy
import time

import cv2
import numpy as np

from keras_pose.codecs import BodyPartsCodec
from keras_pose.geometry import (compose, invert_affine, letterbox, letterbox_geometry,
                                 letterbox_to, map_affine, resize_affine)
from keras_pose.inference.networks import as_network
from keras_pose.io import load_image
from keras_pose.structures import Poses

__all__ = ["PosePredictor", "BottomUpPredictor", "decode_to_original", "PROTOCOLS",
           "protocol_options"]

# Test-time protocols: predictor options by name. "paper" is the authors' evaluation
# (Li et al., AAAI 2020; docs/paper_model.md): their height rule with a 512 px box
# and the scale search 0.5-3 of their published test-dev result, flip, and the
# maps of every scale brought to the original image (x stride bicubic, padding
# cropped, bicubic resize) and averaged there, then decoded at full resolution
# with their person assembly.
PROTOCOLS = {
    "default": {},
    "paper": {"input_height": 512, "scales": (0.5, 1.0, 1.5, 2.0, 3.0), "flip": True,
              "fuse_at": "image", "multiple": 64, "pad_value": 128, "grouping": "paper"},
}
FUSE_AT = ("map", "image")
_CHUNK_IMAGES = 16  # images per network round in predict(list): bounds memory


def protocol_options(name: str, **overrides) -> dict:
    """PosePredictor keyword options of protocol ``name``, with ``overrides``
    (``None`` values are ignored, so absent flags keep the protocol's)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return {**PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None}}


def decode_to_original(codec, maps, affine, content_hw) -> Poses:
    """ONE ``codec.decode`` of (h, w, C) maps, mapped back to original pixels.

    ``affine`` is the letterbox's (2, 3) original -> input transform and
    ``content_hw`` the image's size inside the input: the length prior of the
    grouping uses the image height (§5.4), here in input pixels.
    """
    poses = codec.decode(maps, image_height=float(content_hw[0]))
    return poses.transform(invert_affine(affine))


class PosePredictor:
    """Bottom-up poses for images, in original image pixels.

    Args:
        network: a ``KerasNetwork`` / ``LiteRTNetwork`` or a Keras model (wrapped
            in a ``KerasNetwork``). Input: RGB 0..255, (B, H, W, 3). A network
            with a fixed H x W runs at that size (``letterbox_to``) unless
            ``input_height`` or several scales are given: then a Keras model is
            re-built on a (None, None) input (it must be fully convolutional)
            and gets the ``letterbox`` by height.
        codec: the BodyPartsCodec that decodes the maps (default: the paper's).
        input_height: letterbox height at scale 1.0 (default: 640, the
            authors' boxsize; a fixed-size model's own size).
        scales: multipliers of ``input_height``, averaged (§5.2 step 9).
        flip: also run the mirrored image and fuse (§5.2 step 6).
        multiple: pad to multiples of this (64: the coarsest output is /64).
        pad_value: grey level of the padding (the authors' 128).
        batch_size: images per network batch.
        fuse_at: where scales are averaged and decoded. "map": in the stride-s
            map frame of scale 1.0 (fast). "image": each scale's maps are
            upsampled x stride (bicubic), cropped to the image and resized to
            the original image size, averaged there and decoded at full
            resolution - the authors' evaluation (§5.2 steps 7-9).
            ``protocol_options("paper")`` gives all of their settings.
        grouping: decode with this person assembly instead of the codec's
            ("paper": the authors', "matched": keras_pose's; docs/grouping.md).
        output: which output of a multi-output Keras model is decoded (a
            RunDescriptor or its ``output`` dict, e.g. the last stack's finest).

    After each ``predict``/``maps`` call, ``last_timing`` holds the seconds
    spent in load, preprocess, network, fuse (flip + scale resampling) and
    decode.
    """

    def __init__(self, network, codec=None, input_height: int | None = None,
                 scales=(1.0,), flip: bool = False, multiple: int = 64,
                 pad_value: int = 128, batch_size: int = 8, output=None, fuse_at: str = "map",
                 grouping: str | None = None):
        self.codec = codec if codec is not None else BodyPartsCodec()
        if not isinstance(self.codec, BodyPartsCodec):
            raise NotImplementedError(
                f"PosePredictor decodes bottom-up maps with a BodyPartsCodec, got "
                f"{type(self.codec).__name__}: top-down models need "
                "keras_pose.inference.TopDownPredictor")
        if grouping is not None and grouping != self.codec.config.grouping:
            self.codec = copy.copy(self.codec)
            self.codec.config = self.codec.config.replace(grouping=grouping)
        self.spec = self.codec.spec
        self.stride = int(self.codec.config.stride)
        if fuse_at not in FUSE_AT:
            raise ValueError(f"fuse_at must be one of {', '.join(FUSE_AT)}, got {fuse_at!r}")
        self.fuse_at = fuse_at
        # Full-resolution maps are decoded by the same codec at stride 1.
        self._image_codec = None
        if fuse_at == "image":
            self._image_codec = copy.copy(self.codec)
            self._image_codec.config = self.codec.config.replace(stride=1)
        self.scales = tuple(float(s) for s in np.atleast_1d(scales))
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive, got {scales}")
        self.flip = bool(flip)
        self.multiple, self.pad_value = int(multiple), int(pad_value)
        self.last_timing = {}
        # A fixed-size network runs at its own size (letterbox_to) unless a height
        # or several scales are asked for: then a fully convolutional copy on a
        # (None, None) input takes the authors' height letterbox.
        want_dynamic = input_height is not None or self.scales != (1.0,)
        self.network = as_network(network, output, dynamic=want_dynamic, batch_size=batch_size)
        self.fixed_size = self.network.input_size
        if want_dynamic and self.fixed_size is not None:
            raise ValueError(f"this network runs at a fixed {self.fixed_size[0]}x"
                             f"{self.fixed_size[1]} input: input_height and scales need a "
                             "Keras model that can be re-built for other sizes")
        channels = getattr(self.network, "channels", None)
        if channels is not None and channels != self.spec.num_channels:
            raise NotImplementedError(
                f"the network outputs {channels} channels, not the {self.spec.num_channels} "
                "bottom-up maps: top-down (heatmap) models need "
                "keras_pose.inference.TopDownPredictor")
        if self.fixed_size is not None:
            self.input_height = self.fixed_size[0]
        else:
            # A fixed-size model made dynamic for several scales keeps its own
            # height as scale 1.0; a model built dynamic gets the authors' 640.
            trained = getattr(self.network, "trained_size", None)
            self.input_height = int(input_height or (trained[0] if trained else 640))
        if self.input_height <= 0:
            raise ValueError(f"input_height must be positive, got {input_height}")

    @property
    def net(self):
        """The Keras inference model of a ``KerasNetwork`` (one output)."""
        return getattr(self.network, "model", None)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 -> (n, H/s, W/s, C) float32 maps."""
        out = np.asarray(self.network.run(batch.astype(np.float32)), np.float32)
        expect = (batch.shape[1] // self.stride, batch.shape[2] // self.stride)
        if out.ndim != 4 or out.shape[1:3] != expect:
            raise ValueError(f"model output {out.shape[1:3]} for a {batch.shape[1:3]} input; "
                             f"expected {expect} at the codec's stride {self.stride}")
        return out

    # ---------------------------------------------------------- preprocessing
    def _frame(self, image_hw, scale: float):
        """(content (h, w), padded (H, W), M) of one scale's letterbox."""
        if self.fixed_size is not None:
            h, w = image_hw[:2]
            s = min(self.fixed_size[0] / h, self.fixed_size[1] / w)
            # The same sizes as letterbox_to.
            content = (min(self.fixed_size[0], max(1, int(round(h * s)))),
                       min(self.fixed_size[1], max(1, int(round(w * s)))))
            return content, self.fixed_size, resize_affine(content[1] / w, content[0] / h)
        return letterbox_geometry(image_hw, int(round(scale * self.input_height)), self.multiple)

    def _prepare(self, image, scale: float):
        if self.fixed_size is not None:
            return letterbox_to(image, self.fixed_size, pad_value=self.pad_value)
        return letterbox(image, int(round(scale * self.input_height)), self.multiple,
                         pad_value=self.pad_value)

    # ------------------------------------------------------------------- maps
    def _to_reference(self, maps, m_scale, m_ref, ref_hw):
        """Resample one scale's (h, w, C) maps into the scale-1.0 map frame."""
        out_h, out_w = ref_hw[0] // self.stride, ref_hw[1] // self.stride
        a = map_affine(self.stride)
        t = compose(compose(a, m_ref), invert_affine(compose(a, m_scale)))
        if maps.shape[:2] == (out_h, out_w) and np.allclose(t, [[1, 0, 0], [0, 1, 0]], atol=1e-9):
            return maps
        # Bilinear: cv2's bicubic warp is limited to 4 channels; maps are smooth anyway.
        return cv2.warpAffine(maps, t, (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def maps_batch(self, images) -> list:
        """Fused maps for several images: a list of (maps (h, w, C), M, content_hw).

        maps are at stride s in the scale-1.0 letterbox frame of each image,
        M is that frame's original -> input affine and content_hw the size of
        the image inside it (input pixels). Inputs of equal padded size share a
        network batch (with their mirrors when ``flip``). With
        ``fuse_at="image"`` the maps are at stride 1 in original image pixels
        (M the identity, content_hw the image size).
        """
        self.last_timing = {}
        t = time.perf_counter()
        imgs = [load_image(im) for im in images]
        self._tick("load", t)
        results = []
        for start in range(0, len(imgs), _CHUNK_IMAGES):
            results.extend(self._maps_chunk(imgs[start:start + _CHUNK_IMAGES]))
        return results

    def _tick(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.last_timing[stage] = self.last_timing.get(stage, 0.0) + (t1 - t0)
        return t1

    def _maps_chunk(self, imgs) -> list:
        t = time.perf_counter()
        groups = collections.defaultdict(list)
        for i, img in enumerate(imgs):
            for s in self.scales:
                x, m = self._prepare(img, s)
                groups[x.shape].append((i, x, m))
        n = 2 if self.flip else 1
        per_image = [[] for _ in imgs]
        for group in groups.values():
            inputs = []
            for _, x, _ in group:
                inputs.append(x)
                if self.flip:
                    # Mirror the padded input: with padded sizes a multiple of the
                    # stride, the flipped-back map aligns cell for cell.
                    inputs.append(x[:, ::-1])
            batch = np.stack(inputs)
            t = self._tick("preprocess", t)
            out = self._run(batch)
            t = self._tick("network", t)
            for k, (i, _, m) in enumerate(group):
                maps = out[k * n]
                if self.flip:
                    maps = np.asarray(self.codec.fuse_flip(maps, out[k * n + 1]), np.float32)
                per_image[i].append((maps, m))
            t = self._tick("fuse", t)
        if self.fuse_at == "image":
            results = [self._fuse_in_image(img, scale_maps) for img, scale_maps in zip(imgs, per_image)]
            self._tick("fuse", t)
            return results
        results = []
        for img, scale_maps in zip(imgs, per_image):
            content, ref_hw, m_ref = self._frame(img.shape, 1.0)
            acc = np.zeros((ref_hw[0] // self.stride, ref_hw[1] // self.stride,
                            self.spec.num_channels), np.float32)
            for maps, m in scale_maps:
                acc += self._to_reference(maps, m, m_ref, ref_hw)
            results.append((acc / len(scale_maps), m_ref, content))
        self._tick("fuse", t)
        return results

    def _fuse_in_image(self, img, scale_maps):
        """Average of the scales' maps at the original image size (the authors' §5.2
        steps 7-9): (H0, W0, C) at stride 1, the identity affine, (H0, W0)."""
        h0, w0 = img.shape[:2]
        acc = np.zeros((h0, w0, self.spec.num_channels), np.float32)
        for maps, m in scale_maps:
            # The letterbox content: the top-left part of the input, sized by the affine.
            ch = max(1, int(round(h0 * m[1][1])))
            cw = max(1, int(round(w0 * m[0][0])))
            h, w = maps.shape[:2]
            up = cv2.resize(maps, (w * self.stride, h * self.stride),
                            interpolation=cv2.INTER_CUBIC)[:ch, :cw]
            acc += cv2.resize(up, (w0, h0), interpolation=cv2.INTER_CUBIC)
        return acc / len(scale_maps), np.array([[1.0, 0, 0], [0, 1.0, 0]]), (h0, w0)

    def maps(self, image):
        """Fused maps of one image: (maps (h, w, C), M, content_hw); see ``maps_batch``."""
        return self.maps_batch([image])[0]

    # ---------------------------------------------------------------- predict
    def _decode(self, maps, m_ref, content) -> Poses:
        codec = self._image_codec if self.fuse_at == "image" else self.codec
        return decode_to_original(codec, maps, m_ref, content)

    def predict(self, image, boxes=None):
        """Poses in original image pixels.

        Args:
            image: a path, an RGB uint8 (H, W, 3) array (or anything
                ``load_image`` takes), or a list of them.
            boxes: must be None (a bottom-up model finds the persons itself);
                the argument keeps one ``predict`` signature for both tasks.

        Returns:
            ``Poses`` (P persons, K keypoints) for one image, a list for a list.
        """
        if boxes is not None:
            raise ValueError("a bottom-up model finds the persons itself: predict(image) "
                             "takes no boxes")
        single = not isinstance(image, (list, tuple))
        results = self.maps_batch([image] if single else image)
        t = time.perf_counter()
        poses = [self._decode(*r) for r in results]
        self._tick("decode", t)
        return poses[0] if single else poses

    __call__ = predict


BottomUpPredictor = PosePredictor
