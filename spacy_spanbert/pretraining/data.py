"""Read raw text, tokenise it once with the checkpoint's fast tokenizer and pack it into `[CLS] block [SEP]` blocks.

Documents stream from .txt (a blank line between documents, one sentence or paragraph per line), .jsonl (one
object with a "text" field per line; newlines inside the text separate sentences) or a spaCy .spacy DocBin
(its sentence boundaries when it has them). Consecutive sentences of ONE document are packed greedily into blocks
of at most `max_length` wordpieces; blocks never cross documents; there is no NSP and every segment id is 0.

Deliberate deviation from the reference implementation: a sentence longer than a block is split at word
boundaries into block-sized pieces instead of being dropped, so no text is lost (long paragraphs, tables).

The packed corpus is written to flat int32 files read through numpy memmaps, so corpora larger than memory stream
through tokenisation and training reads blocks by index (which is what makes data order and resume exact).
"""
import codecs
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

SUFFIXES = (".txt", ".jsonl", ".spacy")
MAX_DOC_LINES = 10_000
CharSpans = List[Tuple[int, int]]
Document = List[Tuple[str, CharSpans]]


def corpus_files(path: Path) -> List[Path]:
    """The corpus files of `path`: itself, or every .txt/.jsonl/.spacy file below a directory, in a stable order."""
    return sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES) if path.is_dir() else [path]


def check_corpus(path: Path) -> Path:
    """Fail early, in one line, on a missing, empty or unsupported corpus."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Corpus not found: {path}. Set --paths.raw_text to a .txt, .jsonl or .spacy file.")
    files = corpus_files(path)
    if path.is_file() and path.suffix not in SUFFIXES:
        raise ValueError(f"Unsupported corpus format {path.suffix!r} ({path}): use .txt, .jsonl or .spacy.")
    if not files or all(f.stat().st_size == 0 for f in files):
        raise ValueError(f"Corpus {path} is empty: give --paths.raw_text a file with text in it.")
    for file in files:
        if file.suffix != ".spacy":
            check_utf8(file)
    return path


def check_utf8(file: Path, chunk_size: int = 1 << 20) -> None:
    """One-line error naming the file, line and byte when a text corpus is not UTF-8 (streamed: any size)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with file.open("rb") as handle:
        while True:
            chunk = handle.read(chunk_size)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                bad = offset + max(err.start, 0)
                line += chunk[: max(err.start, 0)].count(b"\n")
                raise ValueError(f"Corpus file {file} is not UTF-8 (line {line}, byte {bad}: {err.reason}): "
                                 f"re-encode it, e.g. `iconv -f latin1 -t utf-8`") from None
            if not chunk:
                return
            offset += len(chunk)
            line += chunk.count(b"\n")


def iter_documents(path: Path, nlp=None, candidate_kind: Optional[str] = None) -> Iterator[Document]:
    """Yield documents as lists of (sentence, candidate char spans).

    candidate_kind ("named_entity" | "noun_phrase" | None): which spans of each sentence the masking may prefer;
        found with `nlp` (or taken from a DocBin's own annotation when it has it).
    """
    path = Path(path)
    files = corpus_files(path)
    for file in files:
        if file.suffix == ".spacy":
            yield from _docbin_documents(file, nlp, candidate_kind)
            continue
        for sentences in _text_documents(file):
            yield _annotate(sentences, nlp, candidate_kind)


def _text_documents(file: Path) -> Iterator[List[str]]:
    with file.open(encoding="utf8") as handle:
        if file.suffix == ".jsonl":
            for n, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        text = json.loads(line)["text"]
                    except (ValueError, KeyError, TypeError) as err:
                        raise ValueError(f"{file}:{n}: each .jsonl line must be an object with a 'text' field") from err
                    sents = [s.strip() for s in text.split("\n") if s.strip()]
                    if sents:
                        yield sents
            return
        doc: List[str] = []
        for line in handle:
            line = line.strip()
            if line:
                doc.append(line)
            if len(doc) >= MAX_DOC_LINES or (not line and doc):
                # a huge document is handed on in parts to bound memory; packing restarts a block there
                yield doc
                doc = []
        if doc:
            yield doc


def _candidate_spans(doc, kind: Optional[str]) -> CharSpans:
    if kind == "named_entity":
        return [(e.start_char, e.end_char) for e in doc.ents]
    if kind == "noun_phrase":
        return [(c.start_char, c.end_char) for c in doc.noun_chunks]
    return []


def _annotate(sentences: List[str], nlp, kind: Optional[str]) -> Document:
    if kind is None:
        return [(s, []) for s in sentences]
    return [(doc.text, _candidate_spans(doc, kind)) for doc in nlp.pipe(sentences)]


def _docbin_documents(file: Path, nlp, kind: Optional[str]) -> Iterator[Document]:
    import spacy
    from spacy.tokens import DocBin

    vocab = nlp.vocab if nlp is not None else spacy.blank("xx").vocab
    for doc in DocBin().from_disk(file).get_docs(vocab):
        has_own = (kind == "named_entity" and doc.has_annotation("ENT_IOB")) or (
            kind == "noun_phrase" and doc.has_annotation("DEP")
        )
        if kind is not None and not has_own:
            doc = nlp(doc.text)
        sents = list(doc.sents) if doc.has_annotation("SENT_START") or doc.has_annotation("DEP") else [doc[:]]
        out = []
        for sent in sents:
            spans = [(s - sent.start_char, e - sent.start_char) for s, e in _candidate_spans(doc, kind)
                     if s >= sent.start_char and e <= sent.end_char]
            if sent.text.strip():
                out.append((sent.text, spans))
        if out:
            yield out


class BlockWriter:
    """Append packed blocks to flat int32 files: input ids, block-global word ids, candidate ranges."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ids = (directory / "ids.bin").open("wb")
        self._words = (directory / "words.bin").open("wb")
        self.offsets = [0]
        self.cands: List[Tuple[int, int, int]] = []

    def add(self, ids: np.ndarray, words: np.ndarray, cands: Sequence[Tuple[int, int]]) -> None:
        block = len(self.offsets) - 1
        self._ids.write(np.asarray(ids, dtype=np.int32).tobytes())
        self._words.write(np.asarray(words, dtype=np.int32).tobytes())
        self.offsets.append(self.offsets[-1] + len(ids))
        self.cands.extend((block, s, e) for s, e in cands)

    def abort(self) -> None:
        """Close the array files without writing the index (close() does both)."""
        self._ids.close()
        self._words.close()

    def close(self, meta: dict) -> None:
        self.abort()
        np.save(self.dir / "offsets.npy", np.asarray(self.offsets, dtype=np.int64))
        np.save(self.dir / "cands.npy", np.asarray(self.cands, dtype=np.int64).reshape(-1, 3))
        (self.dir / "meta.json").write_text(json.dumps(meta, indent=2))


def pack_corpus(path: Path, tokenizer, max_length: int, out_dir: Path, nlp=None, candidate_kind=None) -> Path:
    """Tokenise and pack the corpus into `out_dir`; reuse it when corpus, tokenizer and settings are unchanged."""
    path = check_corpus(path)
    files = corpus_files(path)
    meta = {
        "corpus": str(path.resolve()),
        "files": [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files],
        "vocab": hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest(),
        "max_length": max_length,
        "candidates": candidate_kind,
    }
    if _packed_from(out_dir, meta):
        return out_dir
    # Pack into a sibling temp dir and swap it in when complete: an interrupted pack never leaves arrays that a
    # stale meta.json would vouch for.
    _remove_dead_temp_dirs(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    writer = BlockWriter(tmp)
    content = max_length - 2
    try:
        for doc in iter_documents(path, nlp, candidate_kind):
            _pack_document(doc, tokenizer, content, writer)
        n_blocks = len(writer.offsets) - 1
        writer.close({"source": meta, "n_blocks": n_blocks})
        if n_blocks == 0:
            raise ValueError(f"Corpus {path} holds no text the tokenizer can read: check its format and encoding.")
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process (a rank on another node) swapped in its pack first: use it if it is ours
        shutil.rmtree(tmp, ignore_errors=True)
        if not _packed_from(out_dir, meta):
            raise
    return out_dir


def _packed_from(out_dir: Path, meta: dict) -> bool:
    """Whether `out_dir` holds a complete pack of exactly this corpus, tokenizer and settings."""
    meta_file = out_dir / "meta.json"
    return meta_file.exists() and json.loads(meta_file.read_text()).get("source") == meta


def _remove_dead_temp_dirs(out_dir: Path) -> None:
    """Delete temp packs left by processes that died (SIGKILL, out of memory); a live process's pack is kept."""
    for tmp in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def _pack_document(doc: Document, tokenizer, content: int, writer: BlockWriter) -> None:
    texts = [s for s, _ in doc]
    # verbose=False: a sentence longer than a block is split below on purpose, so transformers' "sequence length
    # is longer than the specified maximum ... indexing errors" warning would be a false alarm here
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids: List[int] = []
    words: List[int] = []
    cands: List[Tuple[int, int]] = []
    next_word = 0

    def flush():
        nonlocal ids, words, cands
        if ids:
            writer.add(
                [tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id],
                [-1] + words + [-1],
                [(s + 1, e + 1) for s, e in cands],
            )
        ids, words, cands = [], [], []

    for i, (_, char_spans) in enumerate(doc):
        s_ids = enc["input_ids"][i]
        if not s_ids:
            continue
        w = [next_word + (x if x is not None else 0) for x in enc.word_ids(i)]
        next_word = max(w) + 1
        s_cands = _char_to_piece_spans(char_spans, enc["offset_mapping"][i])
        for c_ids, c_words, c_cands in _split(s_ids, w, s_cands, content):
            if len(ids) + len(c_ids) > content:
                flush()
            base = len(ids)
            ids += c_ids
            words += c_words
            cands += [(s + base, e + base) for s, e in c_cands]
    flush()


def _char_to_piece_spans(char_spans: CharSpans, offsets) -> List[Tuple[int, int]]:
    out = []
    for cs, ce in char_spans:
        pieces = [j for j, (a, b) in enumerate(offsets) if a < ce and b > cs]
        if pieces:
            out.append((pieces[0], pieces[-1]))
    return out


def _split(ids: List[int], words: List[int], cands, content: int):
    """Cut an over-long sentence into block-sized pieces at word starts (mid-word only for a giant word)."""
    start = 0
    while len(ids) - start > content:
        cut = start + content
        while cut > start + 1 and words[cut] == words[cut - 1]:
            cut -= 1
        if cut == start + 1 and words[cut] == words[cut - 1]:
            cut = start + content
        yield ids[start:cut], words[start:cut], [(s - start, e - start) for s, e in cands if start <= s and e < cut]
        start = cut
    yield ids[start:], words[start:], [(s - start, e - start) for s, e in cands if start <= s]


class PackedBlocks:
    """Random access to packed blocks (a torch map-style dataset without importing torch)."""

    def __init__(self, directory: Path) -> None:
        directory = Path(directory)
        self.offsets = np.load(directory / "offsets.npy")
        n = int(self.offsets[-1])
        self.ids = np.memmap(directory / "ids.bin", dtype=np.int32, mode="r", shape=(n,)) if n else np.zeros(0)
        self.words = np.memmap(directory / "words.bin", dtype=np.int32, mode="r", shape=(n,)) if n else np.zeros(0)
        cands = np.load(directory / "cands.npy")
        order = np.argsort(cands[:, 0], kind="stable")
        self.cands = cands[order]
        self.cand_bounds = np.searchsorted(self.cands[:, 0], np.arange(len(self.offsets)))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> dict:
        a, b = int(self.offsets[index]), int(self.offsets[index + 1])
        c = self.cands[self.cand_bounds[index] : self.cand_bounds[index + 1], 1:]
        return {"index": int(index), "input_ids": np.array(self.ids[a:b]), "word_ids": np.array(self.words[a:b]),
                "candidates": c}

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])
