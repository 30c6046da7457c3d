"""Fuzzing the decoder (issue 17): random shapes, dtypes, layouts, memory layouts, strides, configs
and NaN placement give either well-formed Poses or a ValueError (edgepose.InputError), never a crash
or another exception. Under HYPOTHESIS_PROFILE=ci (tests/conftest.py) the examples are derandomized."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepose import BODYPOSENET, DecoderConfig, InputError, Poses
from edgepose.config import ASSEMBLY_ORDERS, LIMB_SCORE_MODES, MATCHING_MODES, PERSON_SCORE_MODES, REFINE_MODES
from edgepose.decode import Decoder

N, K = BODYPOSENET.num_keypoints, BODYPOSENET.num_limbs

SANE_STRIDES = st.sampled_from([8.0, 8.0, 8.0, 4.0, 2.0, 1.0])
ODD_STRIDES = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                        st.sampled_from([0.0, -8.0, 1e-30, 0.01, 1024.0, 1e37]))


def rarely(draw, odd, usual, one_in=8):
    """`odd` with chance 1/one_in, else `usual` (values): most examples get past validation."""
    return draw(odd) if draw(st.integers(0, one_in - 1)) == 0 else usual


@st.composite
def configs(draw):
    samples = draw(st.integers(2, 12))
    return DecoderConfig(
        peak_threshold=draw(st.floats(0, 1.0)), nms_radius=draw(st.integers(0, 3)),
        refine=draw(st.sampled_from(REFINE_MODES)), max_peaks=draw(st.integers(1, 40)), paf_samples=samples,
        paf_sample_step=draw(st.sampled_from([0.0, 0.3, 1.0])), max_paf_samples=samples + draw(st.integers(0, 8)),
        paf_threshold=draw(st.floats(-1, 1)), min_sample_fraction=draw(st.floats(0, 1)),
        limb_score=draw(st.sampled_from(LIMB_SCORE_MODES)), length_prior=draw(st.sampled_from([0.0, 0.5])),
        min_limb_score=draw(st.floats(-1, 1)), matching=draw(st.sampled_from(MATCHING_MODES)),
        peak_score_weight=draw(st.floats(0, 1)), nearest_partners=draw(st.integers(0, 4)),
        assembly_order=draw(st.sampled_from(ASSEMBLY_ORDERS)), merge=draw(st.booleans()),
        min_parts=draw(st.integers(1, 4)), min_person_score=draw(st.floats(-1, 0.8)),
        person_score=draw(st.sampled_from(PERSON_SCORE_MODES)), parts_exponent=draw(st.floats(0, 4)),
        max_persons=draw(st.integers(1, 6)),
    )


def memory_layout(draw, a: np.ndarray) -> np.ndarray:
    """The same values in another memory layout: as is, strided, reversed, misaligned, or (for a
    batch of one image) broadcast."""
    kind = draw(st.sampled_from(["plain", "strided", "reversed", "misaligned", "broadcast", "fortran"]))
    if kind == "strided":
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        big[tuple(slice(None, None, 2) for _ in a.shape)] = a
        return big[tuple(slice(None, None, 2) for _ in a.shape)]
    if kind == "reversed":
        return np.ascontiguousarray(a[..., ::-1, :])[..., ::-1, :]  # same values, a negative-stride view
    if kind == "misaligned" and a.dtype.itemsize > 1:
        buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
        out = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
        out[...] = a
        return out
    if kind == "broadcast" and a.ndim == 4 and a.shape[0] == 1:
        return np.broadcast_to(a, (1,) + a.shape[1:])  # a batch axis of stride 0
    if kind == "fortran":
        return np.asfortranarray(a)
    return a


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float16, np.float64, np.int32, np.uint8, np.bool_]))
    batch = draw(st.sampled_from([None, None, 1, 2, 0]))
    h = rarely(draw, st.integers(0, 8), draw(st.integers(1, 8)))
    w = rarely(draw, st.integers(0, 8), draw(st.integers(1, 8)))
    factor = draw(st.sampled_from([1, 2]))
    hc = rarely(draw, st.sampled_from([N, N + 2, 2 * K]), N + 1)
    pc = rarely(draw, st.sampled_from([2 * K - 1, N + 1]), 2 * K)
    ph, pw = rarely(draw, st.sampled_from([h * factor - 1, h * factor + 3, 0]), h * factor), w * factor
    lead = () if batch is None else (batch,)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Sparse bumps and a PAF that mostly points one way: limbs and persons do form.
    heat = rng.uniform(-0.2, 1.2, lead + (h, w, hc)) * (rng.random(lead + (h, w, hc)) < 0.3)
    paf = rng.normal(draw(st.sampled_from([0.0, 0.5, -0.5])), 0.5, lead + (max(ph, 0), pw, pc)).clip(-1.2, 1.2)
    nan = rarely(draw, st.sampled_from(["heatmap", "paf"]), None, one_in=5)
    target = heat if nan == "heatmap" else paf
    placed = nan is not None and target.size > 0 and np.issubdtype(dtype, np.floating)
    if placed:
        target.flat[draw(st.integers(0, target.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    heat, paf = heat.astype(dtype), paf.astype(dtype)
    layout = draw(st.sampled_from(["NHWC", "NCHW"]))
    if layout == "NCHW":
        heat, paf = np.moveaxis(heat, -1, -3), np.moveaxis(paf, -1, -3)
    heat, paf = memory_layout(draw, np.ascontiguousarray(heat)), memory_layout(draw, np.ascontiguousarray(paf))
    stride = rarely(draw, ODD_STRIDES, draw(SANE_STRIDES))
    paf_stride = rarely(draw, st.one_of(st.none(), ODD_STRIDES), stride / factor)
    return heat, paf, layout, stride, paf_stride, draw(configs()), placed


def check_poses(poses: Poses, config: DecoderConfig) -> None:
    assert isinstance(poses, Poses)
    kp, sc = poses.keypoints, poses.scores
    assert kp.dtype == np.float32 and kp.shape[1:] == (N, 3) and sc.shape == (len(poses),)
    assert len(poses) <= config.max_persons
    assert np.all(np.isfinite(kp)) and np.all(np.isfinite(sc))
    assert np.all(kp[~poses.visible] == 0)
    assert np.all(poses.visible.sum(axis=1) >= config.min_parts)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_decode_gives_poses_or_a_value_error(case):
    heat, paf, layout, stride, paf_stride, config, placed = case
    try:
        out = Decoder(config=config).decode(heat, paf, heatmap_stride=stride, paf_stride=paf_stride, layout=layout)
    except ValueError as e:
        assert isinstance(e, InputError), f"{type(e).__name__}: {e}"
        assert str(e)
        return
    assert not placed, "a NaN or infinity in the maps was not reported"
    if isinstance(out, list):
        assert heat.ndim == 4 and len(out) == heat.shape[0]
        for poses in out:
            check_poses(poses, config)
    else:
        assert heat.ndim == 3
        check_poses(out, config)
