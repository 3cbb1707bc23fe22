"""Thin script for the VADER + all-MiniLM-L6-v2 recipe: the same as ``hf-skmm run``.

python recipes/vader_minilm/run.py                                  # linear probing, SkMM vs uniform
python recipes/vader_minilm/run.py --config recipes/vader_minilm/lora.yaml
python recipes/vader_minilm/run.py --config recipes/vader_minilm/classification.yaml --seeds 0 1 2 3 4
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from hf_skmm.cli.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
