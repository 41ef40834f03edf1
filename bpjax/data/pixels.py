"""Images as the network reads them: float inputs, uint8 pixels, or pixels packed four to a word.

An image set can be stored on device in three exact forms, all scaled to ``pixel / 255``
in-graph, one mini-batch at a time (``as_inputs``):

- floats (N, n_in): used as they are;
- uint8 pixels (N, n_in): 4x fewer bytes than float32;
- ``PackedImages``: four uint8 pixels per uint32 word (N, ceil(n_in / 4)). XLA:CPU gathers a
  mini-batch element by element, so 4x fewer (wider) elements gather ~4x faster.

The in-graph scaling is bit-identical to ``bpjax.data``'s host floats ``float32(p) / 255``
(``scale_pixels``), so a model trained on any form follows the float32 trajectory.
See docs/performance.md for the measurements.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

IMAGE_FORMS = ("packed", "uint8", "float32")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedImages:
    """``n_in`` uint8 pixels per image, packed four to a uint32 word (``pack_pixels``).

    ``words``: (N, ceil(n_in / 4)) uint32; pixel ``4 j + k`` of an image is byte k of its word j
    (little-endian), a zero byte pads the last word. ``n_in`` is static pytree metadata, so
    jit, vmap and ``jax.device_put`` see only ``words``. ``shape`` is the unpacked (N, n_in).
    """

    words: jax.Array
    n_in: int = dataclasses.field(metadata={"static": True})

    @property
    def shape(self) -> tuple[int, int]:
        return (self.words.shape[0], self.n_in)


def pack_pixels(pixels) -> PackedImages:
    """uint8 pixels (N, n_in) -> ``PackedImages`` on the default device; made once, on the host."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError(
            f"pack_pixels needs uint8 pixels of shape (N, n_in), got {pixels.dtype} {pixels.shape}"
        )
    n, n_in = pixels.shape
    padded = np.zeros((n, -(-n_in // 4) * 4), np.uint8)
    padded[:, :n_in] = pixels
    # "<u4": byte k of a word is its bits 8k..8k+7 on every host, as unpack_pixels reads them.
    return PackedImages(jnp.asarray(padded.view("<u4")), n_in)


def unpack_pixels(images: PackedImages) -> jax.Array:
    """``PackedImages`` (N, n_in) -> the pixels (N, n_in) uint8; jit-compatible."""
    words = images.words
    width = 4 * words.shape[-1]
    # Each word repeated 4x and shifted by 0, 8, 16, 24 bits: one elementwise pass that fuses
    # with the gather before it and the scaling after it. (lax.bitcast_convert_type to uint8
    # breaks that fusion: measured ~10x slower inside an epoch's scan.)
    repeated = jnp.broadcast_to(words[..., None], words.shape + (4,)).reshape(-1, width)
    shifts = (jax.lax.broadcasted_iota(jnp.uint32, (1, width), 1) % 4) * 8
    return ((repeated >> shifts) & 0xFF).astype(jnp.uint8)[:, : images.n_in]


def _reciprocal_255(dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """``(c1, c2)`` with ``c1 + c2 ~ 1/255`` and ``c1`` short enough that ``p * c1`` is exact for
    every 8-bit p; None for floats too narrow for that (float16, bfloat16)."""
    bits = jnp.finfo(dtype).nmant + 1 - 8  # significand bits left once p's 8 bits are in
    if bits < 16:
        return None
    third = Fraction(1, 255)  # in [2**-8, 2**-7): scaled by 2**(7 + bits) it has `bits` bits
    c1 = Fraction(int(third * 2 ** (7 + bits)), 2 ** (7 + bits))
    return np.asarray(float(c1), dtype), np.asarray(float(third - c1), dtype)


def scale_pixels(pixels: jax.Array, dtype=jnp.float32) -> jax.Array:
    """Integer pixels 0..255 -> ``pixel / 255`` in ``dtype``, correctly rounded (bit-identical to
    ``np.float32(p) / 255`` for float32, likewise float64; tested on all 256 values)."""
    dtype = jnp.dtype(dtype)
    # Through int32: XLA converts signed ints to floats with vector instructions.
    p = pixels.astype(jnp.int32).astype(dtype)
    split = _reciprocal_255(dtype)
    if split is None:
        return p / jnp.asarray(255, dtype)
    # XLA rewrites p / 255 as p * fl(1/255), 1 ulp off for about half of the 256 values. p * c1
    # is exact and p * c2 a tiny correction, so the sum rounds once, to the right float: p / 255
    # is periodic in binary and never close to a rounding midpoint. Costs one fused multiply-add.
    c1, c2 = split
    return p * c1 + p * c2


def input_dtype(params, x) -> jnp.dtype:
    """The float dtype a batch of ``x`` is computed in: ``x``'s own if it holds floats, else
    (pixels) the params' float dtype, else float32."""
    if not isinstance(x, PackedImages) and jnp.issubdtype(x.dtype, jnp.floating):
        return x.dtype
    dtype = jnp.result_type(*jax.tree.leaves(params))
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.dtype(jnp.float32)


def as_inputs(x, dtype) -> jax.Array:
    """Images in any of the three forms (``IMAGE_FORMS``) -> network inputs (N, n_in) of
    ``dtype``: floats cast, uint8 pixels and ``PackedImages`` scaled to ``pixel / 255``."""
    if isinstance(x, PackedImages):
        return scale_pixels(unpack_pixels(x), dtype)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x.astype(dtype)
    if x.dtype == jnp.uint8:
        return scale_pixels(x, dtype)
    raise TypeError(
        f"images must be floats, uint8 pixels or PackedImages (bpjax.data.pack_pixels), got "
        f"{x.dtype} {x.shape}"
    )


def take_rows(x, idx: jax.Array, out_sharding=None):
    """Rows ``idx`` of images in any form (a gather; the packed form stays packed).

    ``out_sharding``: where the gathered rows live under explicit sharding (a gather from
    row-sharded data needs its output layout given); None leaves it to the gather."""
    if isinstance(x, PackedImages):
        return PackedImages(take_rows(x.words, idx, out_sharding), x.n_in)
    return x[idx] if out_sharding is None else x.at[idx].get(out_sharding=out_sharding)


def slice_rows(x, start, size: int):
    """Rows ``start .. start + size`` of images in any form (``start`` may be traced)."""
    if isinstance(x, PackedImages):
        return PackedImages(jax.lax.dynamic_slice_in_dim(x.words, start, size), x.n_in)
    return jax.lax.dynamic_slice_in_dim(x, start, size)


_SCALED = np.arange(256, dtype=np.float32) / np.float32(255)  # every float32(p) / 255


def pixels_of(x: np.ndarray, rows: int = 2048) -> np.ndarray:
    """Float images that are ``float32(p) / 255`` (as ``bpjax.data`` makes them) -> the uint8
    pixels p, exactly; ValueError if they are not of that form."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"images of dtype {x.dtype} are not float32 pixels / 255")
    pixels = np.empty(x.shape, np.uint8)
    buf = np.empty((min(rows, len(x)),) + x.shape[1:], np.float32)
    # Block by block, so each pass reads the cache, not memory (~4x faster for MNIST).
    for start in range(0, len(x), rows):
        block, b = x[start : start + rows], buf[: min(rows, len(x) - start)]
        np.multiply(block, np.float32(255), out=b)
        np.clip(np.rint(b, out=b), 0, 255, out=b)
        pixels[start : start + rows] = b
        if not np.array_equal(_SCALED[pixels[start : start + rows]], block):
            raise ValueError(
                "images are not uint8 pixels / 255 in float32: store them as "
                "images='float32' instead"
            )
    return pixels


def device_images(x, images: str = "packed"):
    """``bpjax.data``'s float32 images (N, n_in) on the default device in the form ``images``
    (one of ``IMAGE_FORMS``); all three give the network the same inputs (``as_inputs``)."""
    if images not in IMAGE_FORMS:
        raise ValueError(f"images={images!r}; choose one of {IMAGE_FORMS}")
    if images == "float32":
        return jnp.asarray(x)
    pixels = pixels_of(x)
    return pack_pixels(pixels) if images == "packed" else jnp.asarray(pixels)
