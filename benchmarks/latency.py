#!/usr/bin/env python
"""CPU/GPU latency benchmark; the same as ``zoo bench`` (see zoo/bench/ and benchmarks/README.md).

    python benchmarks/latency.py --preset main --threads 2 --out benchmarks/results
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
