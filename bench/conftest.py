"""pytest configuration of zarrcrop's benchmark suite (bench/).

The suite runs only when bench/ (or a file in it) is named on the command line, e.g.
``python -m pytest bench``: the main test run (``python -m pytest``, ``python -m pytest tests``)
never collects it, because pyproject's ``testpaths`` is ``tests``, and if bench/ is reached by
a broader path (``python -m pytest .``) its tests are deselected here.

Options (see ``python -m pytest bench --help``): ``--bench-rounds``, ``--bench-per-round``,
``--bench-threads``, ``--bench-data``, ``--bench-decode-reps``, ``--bench-memory-reads``.
"""

from __future__ import annotations

import datetime
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
from zcbench.data import DataCache, default_data_root
from zcbench.environment import machine_info, versions
from zcbench.session import MEMORY_KEY, Settings, default_threads

BENCH_DIR = Path(__file__).resolve().parent
SETTINGS_KEY = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zarrcrop-bench", "zarrcrop benchmarks")
    group.addoption(
        "--bench-rounds",
        type=int,
        default=24,
        help="timed rounds per benchmark, each reading a different set of crops (default 24)",
    )
    group.addoption(
        "--bench-per-round",
        type=int,
        default=16,
        help="crops per round = read_crops batch size (default 16)",
    )
    group.addoption(
        "--bench-threads",
        type=int,
        default=None,
        help="threads for every reader (default: all usable cores)",
    )
    group.addoption(
        "--bench-data",
        default=None,
        help="dataset cache directory (default $ZARRCROP_BENCH_DATA or "
        "~/.cache/zarrcrop-bench/data-v<N>-t<frames>)",
    )
    group.addoption(
        "--bench-decode-reps",
        type=int,
        default=3,
        help="zarrcrop benchmarks read every batch this many times, and measure its decode "
        "bound as often; the fraction of the bound compares the fastest of each (default 3)",
    )
    group.addoption(
        "--bench-memory-reads",
        type=int,
        default=10_000,
        help="crops read by the memory check (default 10000; growth is checked from read 1000)",
    )


def _option(config: pytest.Config, name: str, default: Any) -> Any:
    # The options exist only when this conftest was loaded at startup (bench/ named on the
    # command line); otherwise fall back to the defaults.
    try:
        value = config.getoption(name)
    except ValueError:
        return default
    return default if value is None else value


def pytest_configure(config: pytest.Config) -> None:
    threads = int(_option(config, "--bench-threads", default_threads()))
    data = _option(config, "--bench-data", None)
    settings = Settings(
        rounds=int(_option(config, "--bench-rounds", 24)),
        per_round=int(_option(config, "--bench-per-round", 16)),
        threads=threads,
        data_root=Path(data).expanduser() if data else default_data_root(),
        decode_reps=int(_option(config, "--bench-decode-reps", 3)),
        memory_reads=int(_option(config, "--bench-memory-reads", 10_000)),
        memory_checkpoint=1_000,
    )
    if settings.rounds < 1 or settings.per_round < 1 or threads < 1:
        raise pytest.UsageError("--bench-rounds, --bench-per-round, --bench-threads must be >= 1")
    config.stash[SETTINGS_KEY] = settings

    # The same thread count for everyone, set before anything creates a pool: zarr-python
    # sizes its executor (and zarrs its Rust pool) from threading.max_workers on first use.
    import zarr
    import zarrcrop

    zarr.config.set({"threading.max_workers": threads})
    zarrcrop.set_num_threads(threads)


def _requested(config: pytest.Config) -> bool:
    if os.environ.get("ZARRCROP_BENCH") == "1":
        return True
    base = config.invocation_params.dir
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == BENCH_DIR or BENCH_DIR in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _requested(config):
        return
    bench_items = [item for item in items if BENCH_DIR in Path(item.path).resolve().parents]
    if bench_items:
        config.hook.pytest_deselected(items=bench_items)
        items[:] = [item for item in items if item not in bench_items]


@pytest.fixture(scope="session")
def bench_settings(pytestconfig: pytest.Config) -> Settings:
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def bench_data(bench_settings: Settings) -> DataCache:
    """The dataset cache; ``bench_data.array_path(spec)`` builds a dataset on first use."""
    return DataCache(bench_settings.data_root)


def _command(config: pytest.Config) -> dict[str, str]:
    pytest_command = shlex.join(["python", "-m", "pytest", *config.invocation_params.args])
    return {
        "command": os.environ.get("ZARRCROP_BENCH_COMMAND", pytest_command),
        "pytest_command": pytest_command,
        "cwd": os.fspath(config.invocation_params.dir),
    }


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]
) -> None:
    """Record in the benchmark JSON what report.py needs beyond the timings."""
    settings = config.stash[SETTINGS_KEY]
    output_json["zarrcrop_bench"] = {
        **_command(config),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "settings": settings.to_json(),
        "memory": config.stash.get(MEMORY_KEY, None),
    }
