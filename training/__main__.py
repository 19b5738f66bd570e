"""`python -m cmim_hf.training ARGS` and `accelerate launch -m cmim_hf.training ARGS`: same as `cmim-hf train ARGS`."""

import sys

from cmim_hf.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
