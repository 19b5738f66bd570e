"""`python -m cmim_hf.benchmarks [--quick] [--output_dir DIR]`."""

import sys

from cmim_hf.commands.benchmark import main

sys.exit(main())
