"""Tables from a benchmark JSON: ``python bench/report.py FILE.json [--write-results PATH]``.

See bench/README.md; the code is in zcbench/report.py.
"""

from zcbench.report import main

if __name__ == "__main__":
    raise SystemExit(main())
