"""`python -m cmim_hf.benchmarks [--quick] [--output_dir DIR]`."""

import sys

from .suite import main

sys.exit(main())
