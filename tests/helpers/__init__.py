"""Shared helpers of the zarrcrop test suite, by job (``from helpers import ...`` takes any name):

- ``helpers.arrays``: array builders: the configuration space (dtypes, Blosc settings, key
  encodings, native and fallback layouts), ``ArraySpec`` and ``create_array``;
- ``helpers.data``: data makers: ``make_data``, ``random_crop``, ``expected_crops`` (the NumPy
  reference of read_crops);
- ``helpers.checks``: comparisons: ``assert_same`` (bit-identical), fill values, what error
  messages name, ``expected_read``;
- ``helpers.strategies``: hypothesis strategies for array specs and basic selections;
- ``helpers.fuzz``: the arrays and outcome recording of the fuzz tests;
- ``helpers.process``: RSS measurement, ``run_python`` (a script in its own process) and
  ``wait_child`` (a forked child's exit code, with a timeout).

Fixtures live in tests/conftest.py.
"""

from __future__ import annotations

from .arrays import (
    BLOSC_CNAMES,
    BLOSC_SHUFFLES,
    DTYPES,
    FALLBACK_LAYOUTS,
    NATIVE_LAYOUTS,
    NATIVE_V2,
    REMOTE_SPECS,
    V2_KEY_ENCODINGS,
    V3_KEY_ENCODINGS,
    ArraySpec,
    Blosc,
    all_chunk_coords,
    chunk_grid,
    create_array,
)
from .checks import (
    assert_fill_value_same,
    assert_same,
    dtype_in_message,
    expected_read,
    has_negative_step,
    shape_in_message,
)
from .data import expected_crops, make_data, random_crop
from .fuzz import ARRAY_NAMES, CLEAN, NP_INT_TYPES, attempt, fuzz_arrays
from .process import rss_bytes, rss_check, run_python, wait_child
from .strategies import (
    ALL_BLOSC,
    array_specs,
    basic_selections,
    codecs,
    fill_values,
    shapes_and_chunks,
)

__all__ = [
    "ALL_BLOSC",
    "ARRAY_NAMES",
    "BLOSC_CNAMES",
    "BLOSC_SHUFFLES",
    "CLEAN",
    "DTYPES",
    "FALLBACK_LAYOUTS",
    "NATIVE_LAYOUTS",
    "NATIVE_V2",
    "NP_INT_TYPES",
    "REMOTE_SPECS",
    "V2_KEY_ENCODINGS",
    "V3_KEY_ENCODINGS",
    "ArraySpec",
    "Blosc",
    "all_chunk_coords",
    "array_specs",
    "assert_fill_value_same",
    "assert_same",
    "attempt",
    "basic_selections",
    "chunk_grid",
    "codecs",
    "create_array",
    "dtype_in_message",
    "expected_crops",
    "expected_read",
    "fill_values",
    "fuzz_arrays",
    "has_negative_step",
    "make_data",
    "random_crop",
    "rss_bytes",
    "rss_check",
    "run_python",
    "shape_in_message",
    "shapes_and_chunks",
    "wait_child",
]
