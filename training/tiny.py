"""A tiny BERT encoder built locally from a config, with a WordPiece tokenizer trained on given text.

For tests and smoke runs on machines without a model hub: no download, seconds to build.

Example::

    path = build_tiny_encoder(texts, Path("models/tiny"), hidden=64, layers=2)
    SentenceTransformer(str(path))
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_encoder(texts: Iterable[str], out: Path, hidden: int = 64, layers: int = 2, heads: int = 2,
                       vocab_size: int = 3000, max_len: int = 256, seed: int = 0, pooling: str = "mean",
                       intermediate: int | None = None) -> Path:
    """Train a tokenizer on ``texts``, build a randomly initialised BERT and save a sentence-transformers model.

    ``intermediate`` is the feed-forward width (default ``2 * hidden``; BERT-base uses ``4 * hidden``).
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id),
                                                                                       ("[SEP]", sep_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_len)
    hf_dir = out / "_hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate or hidden * 2,
                        max_position_embeddings=max_len)
    BertModel(config).save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    encoder = Transformer(str(hf_dir), max_seq_length=max_len)
    model = SentenceTransformer(modules=[encoder, Pooling(hidden, pooling)])
    model.save(str(out))
    return out
