"""samsar: SAM adapted to SAR semantic segmentation."""

import os

# OpenMP threads that spin while waiting for each other make a 2-thread CPU training step about
# 9x slower when another process holds a core (measured here: 7.7 s vs 0.85 s per tiny `cwsam`
# step with one core busy); passive waiting keeps a busy machine from stretching a run. It must be
# set before torch loads its OpenMP runtime, hence here; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
