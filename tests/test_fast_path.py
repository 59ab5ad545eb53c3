"""The compiled path runs on every common input, and a fallback to the NumPy reference is
counted with its reason (runtime/dispatch.py, runtime/chain.py, runtime/preprocess.py)."""

from __future__ import annotations

import numpy as np
import pytest

from nmrladder.runtime import preprocess, reference
from nmrladder.runtime.chain import chain_refusal
from nmrladder.runtime.dispatch import fallback_counts, fallbacks_since
from nmrladder.runtime.errors import InputError

pytestmark = pytest.mark.skipif(not preprocess.KERNELS_BUILT, reason="kernels not built")

LENGTHS = [1024, 2048, 4096, 5000, 8192, 16384, 32768, 65536]
# ">": byte-swapped, as read from big-endian files
DTYPES = ["float32", "float64", ">f4", ">f8", "int32", "int16"]
LAYOUTS = ["contiguous", "fortran", "strided"]
CHAIN_OPTIONS = [{}, {"reference": "fused"}, {"local": True}, {"weights": "t", "w_max": 0.4}]


def ladder(rng, rungs: int, length: int) -> np.ndarray:
    """Lorentzian lines at fixed fractions of the length, rung k with noise 2**-k, on a
    baseline offset: the rungs of one sample."""
    i = np.arange(length)
    lines = sum(h / (1 + ((i - f * length) / 3.0) ** 2)
                for f, h in ((0.15, 40.0), (0.4, 25.0), (0.62, 60.0), (0.8, 15.0)))
    return np.stack([lines + 5.0 + rng.normal(0, 2.0**-k, length) for k in range(rungs)])


def as_input(values: np.ndarray, dtype: str, layout: str) -> np.ndarray:
    """``values`` in ``dtype`` and ``layout`` (integers: scaled to counts first)."""
    if np.dtype(dtype).kind == "i":
        values = np.round(values * (100 if np.dtype(dtype).itemsize == 2 else 1e5))
    if layout == "fortran":
        return np.asfortranarray(values.astype(dtype))
    if layout == "strided":  # every other point of a twice-as-long array
        wide = np.zeros((*values.shape[:-1], 2 * values.shape[-1]), dtype=dtype)
        wide[..., ::2] = values
        return wide[..., ::2]
    return np.ascontiguousarray(values.astype(dtype))


@pytest.mark.parametrize("length", LENGTHS)
def test_the_ladder_chain_runs_compiled_on_every_common_input(length):
    rng = np.random.default_rng(length)
    values = np.stack([ladder(rng, 4, length) for _ in range(2)])
    before = fallback_counts()
    for dtype in DTYPES:
        for layout in LAYOUTS:
            batch = as_input(values, dtype, layout)
            assert batch.dtype == np.dtype(dtype)
            for options in CHAIN_OPTIONS:
                opts = reference.make_options(**options)
                assert chain_refusal(batch, opts, ndim=3) is None, (dtype, layout, options)
                assert chain_refusal(batch[0], opts, ndim=2) is None, (dtype, layout, options)
                preprocess.preprocess_ladders(batch, threads=1, **options)
                preprocess.preprocess_ladder(batch[1], **options)
    for rungs in (2, 3, 8):
        preprocess.preprocess_ladder(ladder(rng, rungs, length).astype(np.float32))
    assert fallbacks_since(before) == {}


@pytest.mark.parametrize(("dtype", "layout"), [("float64", "fortran"), (">f4", "strided"),
                                               ("int32", "contiguous")])
def test_the_compiled_chain_gives_the_references_result_on_those_inputs(dtype, layout):
    rng = np.random.default_rng(5)
    one = as_input(ladder(rng, 3, 4096), dtype, layout)
    compiled = preprocess.preprocess_ladder(one, reference="fused")
    expected = reference.preprocess_ladder(one, reference="fused")
    assert np.array_equal(compiled.peak_mask, expected.peak_mask)
    np.testing.assert_allclose(compiled.s_hat, expected.s_hat, rtol=1e-4,
                               atol=1e-4 * np.abs(expected.s_hat).max())
    np.testing.assert_allclose(compiled.shifts, expected.shifts, atol=1e-3)
    np.testing.assert_allclose(compiled.sigma, expected.sigma, rtol=1e-4)


@pytest.mark.parametrize("length", LENGTHS)
def test_the_input_scaling_runs_compiled_on_every_common_input(length):
    # robust_scale(_batch) and standardise: what the denoiser runs on every spectrum
    rng = np.random.default_rng(length + 1)
    values = ladder(rng, 3, length)
    before = fallback_counts()
    for dtype in DTYPES:
        for layout in LAYOUTS:
            spectra = as_input(values, dtype, layout)
            centers, sigmas = preprocess.robust_scale_batch(spectra, threads=1)
            expected = reference.robust_scale_batch(np.asarray(spectra, dtype=np.float64))
            np.testing.assert_allclose(centers, expected[0], rtol=1e-5,
                                       atol=1e-5 * np.abs(expected[0]).max())
            np.testing.assert_allclose(sigmas, expected[1], rtol=1e-4)
            center, sigma = preprocess.robust_scale(spectra[1])
            assert (center, sigma) == pytest.approx((centers[1], sigmas[1]), rel=1e-12)
            padded = length + (-length) % 64
            z = preprocess.standardise(spectra, centers, sigmas, padded)
            assert z.shape == (3, padded) and z.dtype == np.float32
            np.testing.assert_array_equal(
                z, reference.standardise(spectra, centers, sigmas, padded)
            )
    assert fallbacks_since(before) == {}


def test_a_fallback_is_counted_with_its_reason():
    rng = np.random.default_rng(3)
    one = ladder(rng, 3, 2048)
    before = fallback_counts()
    # complex input: the reference takes its real part, the kernels do not take it at all
    with pytest.warns(np.exceptions.ComplexWarning):
        computed = preprocess.preprocess_ladder(one + 0j)
    assert np.array_equal(computed.peak_mask, reference.preprocess_ladder(one).peak_mask)
    assert fallbacks_since(before) == {
        "preprocess_ladder: dtype complex128: integers and real floats only": 1
    }
    before = fallback_counts()
    with preprocess.use_reference():
        preprocess.preprocess_ladders(one[None])
        preprocess.robust_scale_batch(one)
        preprocess.robust_scale_batch(one)
    assert fallbacks_since(before) == {
        "preprocess_ladders: use_reference()": 1,
        "robust_scale_batch: use_reference()": 2,
    }
    # a refused input is not a fallback: the reference raises its own error
    before = fallback_counts()
    with pytest.raises(InputError, match="at least 2 rungs"):
        preprocess.preprocess_ladder(one[:1])
    assert fallbacks_since(before) == {}
