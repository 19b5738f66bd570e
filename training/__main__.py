"""`python -m cmim_hf.training ARGS` and `accelerate launch -m cmim_hf.training ARGS`: same as `cmim-hf train ARGS`."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
