"""zarrcrop.torch.geometry, without torch: crop sizes and scales across resolutions, snapping,
the seeded sample draws and their read_crops starts (property tests), flip helpers, and that
the module imports without torch. The hypothesis profile is conftest's "zarrcrop" (no
deadline, derandomized)."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from zarrcrop.torch.geometry import (
    CropGeometry,
    SamplePlan,
    apply_flips,
    crop_size,
    flip_span,
    scale_ratio,
)

Shapes = dict[str, tuple[int, int, int, int]]

# -- import without torch --------------------------------------------------------------------


def _run(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_geometry_does_not_import_torch() -> None:
    _run("import sys, zarrcrop.torch.geometry; assert 'torch' not in sys.modules, 'torch imported'")


def test_geometry_works_without_torch_installed() -> None:
    # sys.modules["torch"] = None makes "import torch" fail as if torch were not installed.
    _run(
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from zarrcrop.torch import SamplePlan\n"
        "from zarrcrop.torch.geometry import CropGeometry\n"
        "g = CropGeometry.from_shapes({'a': (3, 1, 40, 40), 'b': (3, 2, 20, 10)}, (8, 8), 2)\n"
        "plan = g.sample_plan(range(5), seed=0, epoch=0, length=5, flips=True)\n"
        "assert isinstance(plan, SamplePlan) and len(plan) == 5\n"
        "assert g.plan_starts(plan)['b'].shape == (5, 4)\n"
        "try:\n"
        "    from zarrcrop.torch import CropDataset\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('CropDataset imported without torch')\n"
    )


# -- strategies --------------------------------------------------------------------------------


@st.composite
def layouts(draw: st.DrawFn) -> tuple[Shapes, tuple[int, int], int]:
    """Aligned (T, C, H, W) shapes (the first is the reference), a crop that fits and maps to
    whole pixels in each, and a frame count."""
    others = draw(st.integers(0, 3))
    # Per other array and axis: +m (m times the reference) or -d (1/d of it).
    factor = st.one_of(st.integers(1, 4).map(lambda d: -d), st.integers(2, 3))
    factors = [(draw(factor), draw(factor)) for _ in range(others)]
    down_y = math.lcm(1, *(-fy for fy, _ in factors if fy < 0))
    down_x = math.lcm(1, *(-fx for _, fx in factors if fx < 0))
    ref_h = down_y * draw(st.integers(1, 8))
    ref_w = down_x * draw(st.integers(1, 8))
    crop = (down_y * draw(st.integers(1, ref_h // down_y)),
            down_x * draw(st.integers(1, ref_w // down_x)))  # fmt: skip
    frames_total = draw(st.integers(1, 6))
    frames = draw(st.integers(1, frames_total))

    def scaled(size: int, f: int) -> int:
        return size * f if f > 0 else size // -f

    shapes: Shapes = {"ref": (frames_total, draw(st.integers(1, 4)), ref_h, ref_w)}
    for i, (fy, fx) in enumerate(factors):
        channels = draw(st.integers(1, 4))
        shapes[f"a{i}"] = (frames_total, channels, scaled(ref_h, fy), scaled(ref_w, fx))
    return shapes, crop, frames


def _indices(data: st.DataObject, length: int) -> list[int]:
    return data.draw(st.lists(st.integers(0, length - 1), min_size=1, max_size=20))


# -- geometry properties -----------------------------------------------------------------------


@given(layout=layouts(), data=st.data(), seed=st.integers(0, 2**32), epoch=st.integers(0, 50))
def test_crops_inside_bounds_and_aligned(
    layout: Any, data: st.DataObject, seed: int, epoch: int
) -> None:
    shapes, crop, frames = layout
    g = CropGeometry.from_shapes(shapes, crop, frames)
    length = g.default_length
    indices = _indices(data, length)
    plan = g.sample_plan(indices, seed=seed, epoch=epoch, length=length, flips=True)
    starts = g.plan_starts(plan)
    assert len(plan) == len(indices)
    assert np.all(plan.y % g.snap[0] == 0) and np.all(plan.x % g.snap[1] == 0)
    for name, shape in shapes.items():
        (ny, dy), (nx, dx) = g.scale[name]
        k, c, h, w = g.crop_shapes[name]
        assert (k, c) == (frames, shape[1])
        # The crop and its position cover the same scene: exact ratios, no rounding.
        assert h * dy == crop[0] * ny and w * dx == crop[1] * nx
        s = starts[name]
        assert s.dtype == np.int64 and s.shape == (len(indices), 4)
        assert np.all(s[:, 0] == plan.t) and np.all(s[:, 1] == 0)
        assert np.all(s[:, 2] * dy == plan.y * ny) and np.all(s[:, 3] * dx == plan.x * nx)
        assert np.all(s >= 0)
        assert np.all(s[:, 0] + k <= shape[0])
        assert np.all(s[:, 2] + h <= shape[2]) and np.all(s[:, 3] + w <= shape[3])


@given(layout=layouts())
def test_scale_and_snapping_consistent(layout: Any) -> None:
    shapes, crop, frames = layout
    g = CropGeometry.from_shapes(shapes, crop, frames)
    assert g == CropGeometry.from_shapes(shapes, crop, frames)
    assert g.names == tuple(shapes) and g.crop == crop and g.frames == frames
    ref = shapes["ref"]
    assert g.scale["ref"] == ((1, 1), (1, 1)) and g.crop_shapes["ref"] == (frames, ref[1], *crop)
    for name, shape in shapes.items():
        for (num, den), size, ref_size in zip(g.scale[name], shape[2:], ref[2:], strict=True):
            assert min(num, den) == 1 and size * den == ref_size * num
    # Snapping: the smallest step whose positions map to whole pixels in every array.
    assert g.snap == (
        math.lcm(*(g.scale[n][0][1] for n in shapes)),
        math.lcm(*(g.scale[n][1][1] for n in shapes)),
    )
    # Every snapped position where the crop fits, and only those, can be drawn.
    for axis in (0, 1):
        last = (g.positions[axis] - 1) * g.snap[axis]
        assert last + crop[axis] <= ref[2 + axis] < last + g.snap[axis] + crop[axis]
    assert g.t_positions == ref[0] - frames + 1
    assert g.default_length == g.t_positions * max(1, (ref[2] // crop[0]) * (ref[3] // crop[1]))


@given(
    layout=layouts(),
    data=st.data(),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 50),
    flips=st.booleans(),
)
def test_sample_plan_deterministic(
    layout: Any, data: st.DataObject, seed: int, epoch: int, flips: bool
) -> None:
    shapes, crop, frames = layout
    g = CropGeometry.from_shapes(shapes, crop, frames)
    length = g.default_length
    indices = _indices(data, length)
    kwargs = {"seed": seed, "epoch": epoch, "length": length}
    plan = g.sample_plan(indices, flips=flips, **kwargs)
    again = CropGeometry.from_shapes(shapes, crop, frames).sample_plan(
        np.array(indices), flips=flips, **kwargs
    )
    one_by_one = [g.sample_plan([i], flips=flips, **kwargs) for i in indices]
    for field in ("t", "y", "x", "hflip", "vflip"):
        got = getattr(plan, field)
        assert np.array_equal(got, getattr(again, field))
        # A sample does not depend on the other indices drawn with it.
        assert np.array_equal(got, np.concatenate([getattr(p, field) for p in one_by_one]))
    assert np.all((plan.t >= 0) & (plan.t < g.t_positions))
    # Flips do not change the frames and positions drawn.
    other = g.sample_plan(indices, flips=not flips, **kwargs)
    assert np.array_equal(plan.t, other.t) and np.array_equal(plan.y, other.y)
    assert np.array_equal(plan.x, other.x)
    if not flips:
        assert not plan.hflip.any() and not plan.vflip.any()


def test_sample_plan_draws_vary_with_seed_and_epoch() -> None:
    g = CropGeometry.from_shapes({"a": (8, 1, 256, 256)}, (16, 16), 1)

    def starts(seed: int, epoch: int) -> np.ndarray:
        plan = g.sample_plan(range(64), seed=seed, epoch=epoch, length=64, flips=True)
        return np.stack([plan.t, plan.y, plan.x, plan.hflip, plan.vflip])

    assert np.array_equal(starts(0, 0), starts(0, 0))
    assert not np.array_equal(starts(0, 0), starts(0, 1))
    assert not np.array_equal(starts(0, 0), starts(1, 0))


def test_sample_plan_index_out_of_range() -> None:
    g = CropGeometry.from_shapes({"a": (2, 1, 8, 8)}, (4, 4), 1)
    for bad in (-1, 10):
        with pytest.raises(IndexError, match=f"sample index {bad} out of range for length 10"):
            g.sample_plan([0, bad], seed=0, epoch=0, length=10, flips=False)
    assert len(g.sample_plan([], seed=0, epoch=0, length=0, flips=False)) == 0


def _aligns(size: int, ref: int, crop: int) -> bool:
    """Whether an axis of ``size`` aligns with a reference axis of ``ref`` for ``crop``."""
    if size >= ref:
        return size % ref == 0
    return ref % size == 0 and crop % (ref // size) == 0


@given(
    ref=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    others=st.lists(st.tuples(st.integers(1, 60), st.integers(1, 60)), max_size=3),
    crop=st.tuples(st.integers(1, 24), st.integers(1, 24)),
)
def test_from_shapes_rejects_exactly_misaligned_layouts(ref: Any, others: Any, crop: Any) -> None:
    shapes = {"ref": (2, 1, *ref)}
    shapes.update({f"a{i}": (2, 1, *hw) for i, hw in enumerate(others)})
    fits = crop[0] <= ref[0] and crop[1] <= ref[1]
    aligned = all(
        _aligns(size, r, c) for hw in others for size, r, c in zip(hw, ref, crop, strict=True)
    )
    if fits and aligned:
        g = CropGeometry.from_shapes(shapes, crop, 1)
        plan = g.sample_plan(range(4), seed=1, epoch=0, length=4, flips=False)
        for name, s in g.plan_starts(plan).items():
            _, _, h, w = g.crop_shapes[name]
            assert np.all(s[:, 2] + h <= shapes[name][2]) and np.all(s[:, 3] + w <= shapes[name][3])
    else:
        with pytest.raises(ValueError):
            CropGeometry.from_shapes(shapes, crop, 1)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "crop", "frames", "match"),
    [
        ({"a": (2, 1, 8)}, (4, 4), 1, r"array 'a' must have 4 dimensions \(T, C, H, W\)"),
        ({"a": (2, 1, 8, 8)}, (9, 4), 1, r"crop \(9, 4\) does not fit in the reference array 'a'"),
        ({"a": (2, 1, 8, 8)}, (4, 4), 3, "frames=3 exceeds the 2 frames of the data"),
        ({"a": (2, 1, 8, 8), "b": (3, 1, 8, 8)}, (4, 4), 1, "'b' has 3 frames but the reference"),
        ({"a": (2, 1, 8, 8), "b": (2, 1, 3, 8)}, (4, 4), 1, "the height of array 'b' \\(3\\)"),
        ({"a": (2, 1, 9, 9), "b": (2, 1, 3, 9)}, (4, 4), 1, "crop height 4 is not a multiple of 3"),
    ],
)
def test_from_shapes_errors(shapes: Any, crop: Any, frames: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CropGeometry.from_shapes(shapes, crop, frames)


def test_crop_size() -> None:
    assert crop_size(5) == (5, 5)
    assert crop_size(np.int64(3)) == (3, 3)
    assert crop_size((4, 6)) == (4, 6)
    assert crop_size([np.int32(2), 7]) == (2, 7)
    with pytest.raises(ValueError, match="crop must be an int or"):
        crop_size((8, 8, 8))
    with pytest.raises(ValueError, match="crop must be positive"):
        crop_size((0, 4))
    with pytest.raises(ValueError, match="crop must be positive"):
        crop_size(-1)


def test_scale_ratio() -> None:
    assert scale_ratio("a", "height", 12, 4) == (3, 1)
    assert scale_ratio("a", "height", 4, 12) == (1, 3)
    assert scale_ratio("a", "height", 4, 4) == (1, 1)
    for size in (0, 5, 8):
        with pytest.raises(ValueError, match="not an integer multiple or fraction"):
            scale_ratio("a", "width", size, 12)


# -- flips -------------------------------------------------------------------------------------


@given(n=st.integers(1, 12), data=st.data())
def test_flip_span(n: int, data: st.DataObject) -> None:
    values = np.arange(n)
    start = data.draw(st.integers(0, n - 1))
    size = data.draw(st.integers(1, n - start))
    assert np.array_equal(values[flip_span(start, size, False)], values[start : start + size])
    assert np.array_equal(values[flip_span(start, size, True)], values[start : start + size][::-1])


@given(
    flips=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=6),
    hw=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    dtype=st.sampled_from(["uint8", ">u2", "float32"]),
)
def test_apply_flips_matches_numpy(flips: Any, hw: Any, dtype: str) -> None:
    n = len(flips)
    batch = np.arange(n * 2 * hw[0] * hw[1]).reshape(n, 2, *hw).astype(dtype)
    expected = batch.copy()
    for i, (hf, vf) in enumerate(flips):
        if hf:
            expected[i] = expected[i][..., ::-1]
        if vf:
            expected[i] = expected[i][..., ::-1, :]
    zeros = np.zeros(n, dtype=np.int64)
    plan = SamplePlan(
        t=zeros,
        y=zeros,
        x=zeros,
        hflip=np.array([hf for hf, _ in flips]),
        vflip=np.array([vf for _, vf in flips]),
    )
    apply_flips(batch, plan)
    assert np.array_equal(batch, expected)
