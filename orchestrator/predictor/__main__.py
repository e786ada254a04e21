"""``python -m orchestrator.predictor --model-dir DIR ...`` (see ``cli.py``)."""

import sys

if __name__ == "__main__":
    from orchestrator.predictor.cli import main

    sys.exit(main())
