"""`python -m cmim_hf.benchmarks [--quick] [--output_dir DIR]`."""

import sys

from .cli import main

sys.exit(main())
