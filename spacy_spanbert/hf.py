"""Hugging Face checkpoint conventions that both pretraining and the spaCy models rely on.

Kept out of `models/` (thinc glue) and `pretraining/` so that neither imports the other for them.
"""
from pathlib import Path
from typing import Union

# Any one of these is enough for AutoTokenizer (fast tokenizer JSON, WordPiece, BPE or SentencePiece files).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def looks_cased(name: Union[str, Path]) -> bool:
    """True for checkpoint names that declare a cased vocabulary, e.g. 'SpanBERT/spanbert-base-cased'."""
    base = Path(str(name)).name.lower()
    return "cased" in base and "uncased" not in base


def check_tokenizer_files(directory: Union[str, Path], setting: str) -> None:
    """One-line error for a local checkpoint directory without tokenizer files.

    Without them AutoTokenizer falls through to converters and ends in a misleading "requires the protobuf
    library" ImportError, tens of lines deep. Hub ids and missing paths are left to the loader.
    """
    path = Path(str(directory)).expanduser()
    if path.is_dir() and not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(f"{setting} = {directory} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...): "
                         f"copy the tokenizer of the model it was trained from into it (tokenizer.save_pretrained)")
