"""Test configuration for zarrcrop: the hypothesis profile, the ``native`` marker (strict mode)
and the shared fixtures (tests/README.md lists them)."""

from __future__ import annotations

import os

# gcsfs (2026.10 and later) asks a gRPC control API what kind each bucket is, which a GCS
# emulator does not serve (a minute of retries per bucket); the plain JSON API client it
# falls back to is what the tests need. Set before anything imports gcsfs.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import numcodecs
import numpy as np
import pytest
import zarrcrop
from helpers import NATIVE_V2, create_array, make_data
from hypothesis import HealthCheck, settings

settings.register_profile(
    "zarrcrop",
    deadline=None,
    derandomize=True,
    max_examples=int(os.environ.get("ZARRCROP_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    print_blob=True,
)
settings.load_profile("zarrcrop")


NATIVE_MARKER = (
    "native: the arrays this test reads are meant to be read natively; it runs in strict mode "
    "(ZARRCROP_STRICT=1), so an array that falls back to zarr-python raises FallbackError"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", NATIVE_MARKER)


@pytest.fixture(autouse=True)
def _isolate_global_state(request, monkeypatch):
    """No test sees ZARRCROP_STRICT from the outer environment, and every test starts and
    ends with the default thread count. Tests marked ``native`` run with ZARRCROP_STRICT=1.

    Autouse, so it runs before the test's other function-scoped fixtures: arrays those open
    are strict too (and so is any process the test starts). Arrays opened by module- or
    session-scoped fixtures were opened before it and keep their own mode."""
    monkeypatch.delenv("ZARRCROP_STRICT", raising=False)
    if request.node.get_closest_marker("native") is not None:
        monkeypatch.setenv("ZARRCROP_STRICT", "1")
    default_threads = len(os.sched_getaffinity(0))
    zarrcrop.set_num_threads(default_threads)
    yield
    zarrcrop.set_num_threads(default_threads)


@pytest.fixture
def poisoned_output_pool(monkeypatch):
    """Every output zarrcrop allocates comes from the output pool (not only those from 8 MiB),
    filled with 0xA5 bytes first, new or reused: a byte a read leaves unwritten shows up as
    a difference from zarr-python. The test starts with an empty pool."""
    from zarrcrop import _output_pool

    monkeypatch.setattr(_output_pool, "POOL_FROM", 0)
    monkeypatch.setattr(_output_pool._POOL, "poison", 0xA5)
    monkeypatch.setattr(_output_pool._POOL, "bufs", [])  # restored (the old list) at the end


@pytest.fixture
def native_v2(tmp_path):
    """A native v2 array (helpers.NATIVE_V2: (10, 13, 3) int16, chunks (4, 5, 2), Blosc lz4,
    fill value -3) with one missing chunk and attrs {"units": "counts"}; returns (path, zarr
    array)."""
    path = tmp_path / "native.zarr"
    data = make_data(NATIVE_V2.shape, NATIVE_V2.dtype, seed=7)
    za = create_array(path, NATIVE_V2, data, missing=[(1, 1, 0)])
    za.attrs["units"] = "counts"
    return path, za


@pytest.fixture
def tutorial_group(tmp_path):
    """The tutorial layout: group with "gt" (2, 3, 216, 384) uint8, Blosc zstd 5 bitshuffle,
    chunks (1, 3, 96, 96), plus a nested "lr/720p/rgb" array. Returns (path, gt data)."""
    import zarr

    path = tmp_path / "clip.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.attrs["fps"] = 24
    group.attrs["name"] = "clip"
    compressor = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
    rng = np.random.default_rng(1234)
    gt = rng.integers(0, 256, size=(2, 3, 216, 384), dtype=np.uint8)
    gt[:, :, :40, :] //= 16  # some compressible area
    gt_array = group.create_array(
        "gt", shape=gt.shape, chunks=(1, 3, 96, 96), dtype="uint8", compressors=compressor
    )
    gt_array[...] = gt
    lr = rng.integers(0, 256, size=(2, 3, 54, 96), dtype=np.uint8)
    lr_array = group.create_array(
        "lr/720p/rgb", shape=lr.shape, chunks=(1, 3, 32, 32), dtype="uint8", compressors=compressor
    )
    lr_array[...] = lr
    lr_array.attrs["scale"] = 4
    return path, gt


@pytest.fixture
def small(tmp_path):
    """A small native int16 array (10, 12), chunks (4, 5), Blosc lz4 shuffle, values 0..119."""
    import zarr

    path = tmp_path / "s.zarr"
    za = zarr.create_array(
        store=str(path), shape=(10, 12), chunks=(4, 5), dtype="int16", zarr_format=2,
        compressors=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE), fill_value=0,
    )  # fmt: skip
    za[...] = np.arange(120, dtype=np.int16).reshape(10, 12)
    return zarrcrop.open(path)
