"""bpjax.data.pixels: packed images, exact in-graph scaling, and the device forms of a Dataset."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax
from bpjax import train
from bpjax.data import (
    IMAGE_FORMS,
    PackedImages,
    as_inputs,
    device_arrays,
    input_dtype,
    pack_pixels,
    scale_pixels,
    unpack_pixels,
)
from bpjax.data.dataset import Splits, make_dataset
from bpjax.data.pixels import device_images, pixels_of, slice_rows, take_rows

ALL = np.arange(256, dtype=np.uint8)


def random_pixels(n=64, n_in=784, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, n_in), dtype=np.uint8)


def forms(pixels):
    """The same images in the three device forms."""
    floats = pixels.astype(np.float32) / np.float32(255)
    return {
        "packed": pack_pixels(pixels),
        "uint8": jnp.asarray(pixels),
        "float32": jnp.asarray(floats),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scaling_is_bit_identical_to_host_division_for_every_pixel_value(x64, dtype):
    expected = ALL.astype(dtype) / np.asarray(255, dtype)
    got = np.asarray(jax.jit(lambda p: scale_pixels(p, dtype))(jnp.asarray(ALL)))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)


def test_scaling_to_half_precision_is_within_rounding():
    got = np.asarray(jax.jit(lambda p: scale_pixels(p, jnp.bfloat16))(jnp.asarray(ALL)))
    np.testing.assert_allclose(got.astype(np.float32), ALL / 255.0, rtol=2**-8)


@pytest.mark.slow  # a compile per drawn width
@settings(max_examples=10, deadline=None)
@given(n=st.integers(0, 9), n_in=st.integers(1, 13), seed=st.integers(0, 2**31))
def test_pack_then_unpack_is_the_identity_for_any_width(n, n_in, seed):
    pixels = random_pixels(n, n_in, seed)
    packed = pack_pixels(pixels)
    assert packed.shape == (n, n_in) and packed.words.shape == (n, -(-n_in // 4))
    assert packed.words.dtype == jnp.uint32
    np.testing.assert_array_equal(unpack_pixels(packed), pixels)


def test_pixel_4j_plus_k_is_byte_k_of_word_j():
    packed = pack_pixels(np.array([[1, 2, 3, 4, 5]], np.uint8))
    assert packed.words.tolist() == [[0x04030201, 0x00000005]]


def test_every_form_gives_the_network_the_same_bits():
    pixels = random_pixels()
    expected = pixels.astype(np.float32) / np.float32(255)
    for name, x in forms(pixels).items():
        got = jax.jit(lambda a: as_inputs(a, jnp.float32))(x)
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_packed_images_are_a_pytree_with_static_width():
    packed = pack_pixels(random_pixels(10, 6))
    assert jax.tree.leaves(packed) == [packed.words]
    # n_in is metadata: jit traces only the words and keeps the width.
    width = jax.jit(lambda p: jnp.zeros(p.shape[1]))(packed).shape
    assert width == (6,)
    rows = jax.vmap(lambda w: as_inputs(PackedImages(w[None], 6), jnp.float32)[0])(packed.words)
    np.testing.assert_array_equal(rows, as_inputs(packed, jnp.float32))


@pytest.mark.slow  # a compile per form and op
def test_take_and_slice_rows_keep_the_form_and_pick_the_same_images():
    pixels = random_pixels(20, 10)
    idx = jnp.array([3, 17, 0, 3])
    for name, x in forms(pixels).items():
        taken = jax.jit(take_rows)(x, idx)
        sliced = jax.jit(lambda a, s: slice_rows(a, s, 5))(x, 7)
        assert type(taken) is type(x) and type(sliced) is type(x), name
        np.testing.assert_array_equal(
            as_inputs(taken, jnp.float32), pixels[np.asarray(idx)] / np.float32(255)
        )
        np.testing.assert_array_equal(
            as_inputs(sliced, jnp.float32), pixels[7:12] / np.float32(255)
        )


def test_input_dtype_is_the_images_float_type_else_the_params():
    params64 = [{"w": np.zeros((2, 3), np.float64), "b": np.zeros(2, np.float64)}]
    floats16 = jnp.zeros((2, 3), jnp.float16)
    assert input_dtype(params64, floats16) == jnp.float16
    with jax.enable_x64(True):
        params64 = jax.tree.map(jnp.asarray, params64)
        for x in (jnp.zeros((2, 3), jnp.uint8), pack_pixels(np.zeros((2, 3), np.uint8))):
            assert input_dtype(params64, x) == jnp.float64
    assert input_dtype([{"w": jnp.zeros((2, 3), jnp.int32)}], jnp.zeros((2, 3), jnp.uint8)) == (
        jnp.float32
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 8), np.float32), "needs uint8 pixels"),
        (np.zeros(8, np.uint8), r"of shape \(N, n_in\)"),
        (np.zeros((2, 8), np.int32), "got int32"),
    ],
)
def test_pack_pixels_rejects_anything_but_uint8_matrices(bad, message):
    with pytest.raises(ValueError, match=message):
        pack_pixels(bad)


@pytest.mark.parametrize("dtype", [jnp.uint32, jnp.int32, jnp.int8])
def test_as_inputs_rejects_integer_arrays_that_are_not_uint8_pixels(dtype):
    with pytest.raises(TypeError, match="PackedImages"):
        as_inputs(jnp.zeros((2, 4), dtype), jnp.float32)


def test_pixels_of_inverts_the_float_images_exactly_and_rejects_other_floats():
    pixels = random_pixels()
    np.testing.assert_array_equal(pixels_of(pixels.astype(np.float32) / np.float32(255)), pixels)
    with pytest.raises(ValueError, match="not uint8 pixels / 255"):
        pixels_of(np.full((2, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="float64"):
        pixels_of(pixels.astype(np.float64) / 255)
    # Block by block: a bad row after the first block is still caught.
    floats = np.repeat(pixels.astype(np.float32) / np.float32(255), 3, axis=0)
    np.testing.assert_array_equal(pixels_of(floats, rows=5), np.repeat(pixels, 3, axis=0))
    floats[-1, -1] = 0.5
    with pytest.raises(ValueError, match="not uint8 pixels / 255"):
        pixels_of(floats, rows=5)
    with pytest.raises(ValueError, match="images='bogus'"):
        device_images(pixels, "bogus")


@pytest.mark.slow  # every split in every form
def test_device_arrays_hold_every_split_in_the_asked_form():
    splits = Splits(
        random_pixels(30, 784, 1), np.arange(30) % 10, random_pixels(8, 784, 2), np.arange(8) % 10
    )
    kinds = {"packed": PackedImages, "uint8": jax.Array, "float32": jax.Array}
    for images, validation in zip(IMAGE_FORMS, (0, 6, 6), strict=True):  # 0: an empty split
        ds = make_dataset(splits, "test", validation=validation)
        data = device_arrays(ds, images)
        assert sorted(data) == ["x_test", "x_train", "x_val", "y_test", "y_train", "y_val"]
        for split in ("train", "val", "test"):
            x = data[f"x_{split}"]
            assert isinstance(x, kinds[images]) and x.shape == getattr(ds, f"x_{split}").shape
            np.testing.assert_array_equal(as_inputs(x, jnp.float32), getattr(ds, f"x_{split}"))
            np.testing.assert_array_equal(data[f"y_{split}"], getattr(ds, f"y_{split}"))
    with pytest.raises(ValueError, match="choose one of"):
        device_arrays(ds, "float16")
    assert device_arrays(make_dataset(splits, "test"))["x_val"].shape == (0, 784)


# --- bpjax.train reads every form: the same inputs, so the same trajectory ----------------------


@pytest.mark.slow  # an epoch compiled per form
def test_an_epoch_on_any_form_follows_the_float32_trajectory_bit_for_bit():
    pixels = random_pixels(200, 784, 1)
    labels = jnp.asarray(np.arange(200) % 10)
    params = bpjax.init_params(jax.random.key(0), (784, 8, 10))
    tx = optax.sgd(1.0)
    epoch = train.make_sgd_epoch(train.make_train_step(tx), 20)
    runs = {
        name: epoch(params, tx.init(params), x, labels, jax.random.key(2))
        for name, x in forms(pixels).items()
    }
    for name in ("packed", "uint8"):
        for got, expected in zip(
            jax.tree.leaves(runs[name]), jax.tree.leaves(runs["float32"]), strict=True
        ):
            np.testing.assert_array_equal(got, expected, err_msg=name)


def test_full_batch_gradient_and_evaluation_read_packed_images():
    pixels = random_pixels(50, 784, 3)
    labels = jnp.asarray(np.arange(50) % 10)
    params = bpjax.init_params(jax.random.key(1), (784, 6, 10))
    grad_fn = train.make_grad_fn("autodiff")
    x = forms(pixels)
    full = jax.jit(lambda a: train.full_batch_cost_and_grad(grad_fn, params, a, labels, 16))
    evaluate = train.make_evaluate()
    for got, expected in zip(
        jax.tree.leaves(full(x["packed"])), jax.tree.leaves(full(x["float32"])), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    for k, v in evaluate(params, x["packed"], labels).items():
        np.testing.assert_allclose(v, evaluate(params, x["float32"], labels)[k], rtol=1e-6)
