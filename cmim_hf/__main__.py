"""`python -m cmim_hf`: the `cmim-hf` command, so that `accelerate launch -m cmim_hf embed ...` runs it in every
process."""

import sys

from .cli import main

sys.exit(main())
