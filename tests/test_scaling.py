"""bpjax.scaling: the fit of S_min, E_min recovers known hyperbolas, and rejects bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpjax import scaling

BATCH_SIZES = np.array([1, 4, 16, 64, 256, 1024, 4096, 16384, 50000], dtype=np.float64)


def on_hyperbola(s_min, e_min, batch_sizes=BATCH_SIZES):
    steps = s_min + e_min / batch_sizes
    return steps, steps * batch_sizes


@pytest.mark.parametrize(("s_min", "e_min"), [(50.0, 4e4), (1.0, 10.0), (300.0, 3e7), (2e3, 5e3)])
def test_recovers_exact_hyperbola(s_min, e_min):
    steps, examples = on_hyperbola(s_min, e_min)
    fit = scaling.fit_steps_examples(steps, examples)
    assert fit.s_min == pytest.approx(s_min, rel=1e-6)
    assert fit.e_min == pytest.approx(e_min, rel=1e-6)
    assert fit.b_crit == pytest.approx(e_min / s_min, rel=1e-6)
    assert fit.rms_log_error < 1e-6
    # Every point satisfies the model's defining relation.
    lhs = (steps / fit.s_min - 1) * (examples / fit.e_min - 1)
    np.testing.assert_allclose(lhs, 1.0, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_noisy_hyperbola_within_noise(seed):
    # 5% multiplicative noise on S (and so on E = B S): the fit stays within ~15%.
    rng = np.random.default_rng(seed)
    s_min, e_min = 80.0, 6e4
    steps, _ = on_hyperbola(s_min, e_min)
    steps = steps * np.exp(rng.normal(0, 0.05, steps.shape))
    fit = scaling.fit_steps_examples(steps, steps * BATCH_SIZES)
    assert fit.s_min == pytest.approx(s_min, rel=0.15)
    assert fit.e_min == pytest.approx(e_min, rel=0.15)
    assert 0.01 < fit.rms_log_error < 0.15


@settings(max_examples=40, deadline=None)
@given(
    s_min=st.floats(1.0, 1e4),
    b_crit=st.floats(2.0, 1e4),
    scale=st.floats(0.01, 100.0),
)
def test_scaling_steps_scales_s_min_only(s_min, b_crit, scale):
    # Multiplying every S (at fixed B) by c multiplies S_min and E_min by c; B_crit is unchanged.
    steps, examples = on_hyperbola(s_min, s_min * b_crit)
    base = scaling.fit_steps_examples(steps, examples)
    scaled = scaling.fit_steps_examples(steps * scale, examples * scale)
    assert scaled.s_min == pytest.approx(base.s_min * scale, rel=1e-5)
    assert scaled.b_crit == pytest.approx(base.b_crit, rel=1e-5)


def test_model_curves_are_consistent():
    fit = scaling.fit_steps_examples(*on_hyperbola(40.0, 2e4))
    s = scaling.steps_for_batch(fit, BATCH_SIZES)
    np.testing.assert_allclose(scaling.examples_on_hyperbola(fit, s), s * BATCH_SIZES, rtol=1e-6)
    assert np.isinf(scaling.examples_on_hyperbola(fit, [fit.s_min * 0.5])).all()


@pytest.mark.parametrize(
    ("steps", "examples", "match"),
    [
        ([10.0], [100.0], "at least 2"),
        ([10.0, 20.0], [100.0], "one E per S"),
        ([10.0, 20.0], [100.0, 200.0], "2 different batch sizes"),
        ([10.0, -1.0], [100.0, 10.0], "finite and > 0"),
        ([10.0, np.nan], [100.0, 10.0], "finite and > 0"),
        ([10.0, 20.0], [5.0, 400.0], "examples must be >= steps"),
    ],
)
def test_bad_input_raises(steps, examples, match):
    with pytest.raises(ValueError, match=match):
        scaling.fit_steps_examples(steps, examples)
