"""Local runner entry: ``python pipeline/run_local.py build --workdir runs/build --param InputData=data/``.

The same as ``forecaster pipeline run <pipeline> --local ...``: it walks the step table of
``forecaster.pipelines.catalog`` on this machine (see ``forecaster.pipelines.local`` and pipeline/README.md).
"""

import sys

from forecaster.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", "run", *sys.argv[1:], "--local"]))
