"""Regression gate: ``python bench/gate.py FILE.json [--update]``.

Exits 1 listing the cases whose zarrcrop / zarr-python ratio fell more than 10% below
bench/baselines.json. See bench/README.md; the code is in zcbench/gate.py.
"""

from zcbench.gate import main

if __name__ == "__main__":
    raise SystemExit(main())
