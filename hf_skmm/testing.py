"""Tiny models, a tokenizer and a text dataset built entirely in code, for tests and benchmarks.

Nothing here touches the network or the Hub: the tokenizer is a word-level ``tokenizers`` model over
a fixed vocabulary and every model is built from a config with seeded random weights.
Sizes are chosen so a forward + backward on a batch of 8 takes milliseconds on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_WORDS = (
    "the a an this that movie film plot actor story scene music ending it was is very really quite "
    "good great excellent wonderful superb fun lovely bad awful terrible boring dull poor weak not "
    "never always so too and but with without i we they loved hated liked enjoyed"
).split()
_POSITIVE = {
    "good",
    "great",
    "excellent",
    "wonderful",
    "superb",
    "fun",
    "lovely",
    "loved",
    "liked",
    "enjoyed",
}
_NEGATIVE = {"bad", "awful", "terrible", "boring", "dull", "poor", "weak", "hated"}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB: dict[str, int] = {w: i for i, w in enumerate(SPECIAL_TOKENS + _WORDS)}


def tiny_tokenizer():
    """A word-level fast tokenizer (BERT-style ``[CLS] ... [SEP]``) over a 60-word vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def tiny_texts(num: int = 64, seed: int = 0) -> dict[str, list[Any]]:
    """``num`` random short sentences with a sentiment label (1 = more positive words) and a score.

    Returns a column dict ready for ``datasets.Dataset.from_dict``: ``text``, ``label`` (int),
    ``score`` (float, positive minus negative word count). Lengths vary (3-12 words) so padding matters.
    """
    gen = torch.Generator().manual_seed(seed)
    texts, labels, scores = [], [], []
    for _ in range(num):
        length = int(torch.randint(3, 13, (1,), generator=gen))
        idx = torch.randint(0, len(_WORDS), (length,), generator=gen).tolist()
        words = [_WORDS[i] for i in idx]
        score = sum(w in _POSITIVE for w in words) - sum(w in _NEGATIVE for w in words)
        texts.append(" ".join(words))
        labels.append(int(score > 0))
        scores.append(float(score))
    return {"text": texts, "label": labels, "score": scores}


def _seeded(seed: int):
    torch.manual_seed(seed)


def tiny_bert_config(**overrides: Any):
    from transformers import BertConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=VOCAB["[PAD]"],
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def tiny_bert_classifier(num_labels: int = 3, seed: int = 0, **overrides: Any):
    """``BertForSequenceClassification`` with 2 layers of width 16 (≈ 13k parameters).

    ``num_labels=1`` gives a regression head (MSE loss), as in transformers.
    """
    from transformers import BertForSequenceClassification

    _seeded(seed)
    return BertForSequenceClassification(tiny_bert_config(num_labels=num_labels, **overrides))


def tiny_bert_token_classifier(num_labels: int = 3, seed: int = 0, **overrides: Any):
    """``BertForTokenClassification`` with the same tiny backbone."""
    from transformers import BertForTokenClassification

    _seeded(seed)
    return BertForTokenClassification(tiny_bert_config(num_labels=num_labels, **overrides))


def tiny_gpt2(seed: int = 0, **overrides: Any):
    """``GPT2LMHeadModel`` with 2 layers of width 16, vocabulary shared with :func:`tiny_tokenizer`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    kwargs: dict[str, Any] = dict(
        vocab_size=len(VOCAB),
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=64,
        pad_token_id=VOCAB["[PAD]"],
        bos_token_id=VOCAB["[CLS]"],
        eos_token_id=VOCAB["[SEP]"],
    )
    kwargs.update(overrides)
    _seeded(seed)
    return GPT2LMHeadModel(GPT2Config(**kwargs))


class TinyMLP(nn.Module):
    """A plain ``nn.Module`` classifier: ``features -> hidden -> head``.

    ``forward(features, labels=None)`` returns the logits tensor, like a bare PyTorch model would.
    The last layer is called ``head`` so head detection by name can be tested.
    """

    def __init__(self, in_dim: int = 8, hidden: int = 16, num_classes: int = 3, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(depth):
            layers += [nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(0.1)]
            dim = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.body(features))


def tiny_mlp(
    in_dim: int = 8, hidden: int = 16, num_classes: int = 3, depth: int = 2, seed: int = 0
) -> TinyMLP:
    _seeded(seed)
    return TinyMLP(in_dim, hidden, num_classes, depth)


def gaussian_mixture(
    num: int = 200, dim: int = 10, clusters: int = 4, seed: int = 0, spread: float = 8.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded Gaussian mixture ``(X [num, dim], cluster id [num])`` with clusters of random sizes."""
    gen = torch.Generator().manual_seed(seed)
    centers = spread * torch.randn(clusters, dim, generator=gen)
    weights = torch.rand(clusters, generator=gen) + 0.2
    ids = torch.multinomial(weights / weights.sum(), num, replacement=True, generator=gen)
    return centers[ids] + torch.randn(num, dim, generator=gen), ids
