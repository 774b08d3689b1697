"""Convert relation data in the JSON layout of `spacy_spanbert.relation_data` (CoNLL04's) to a spaCy DocBin.

Each record becomes one Doc with its entities in `doc.ents` (or `doc.spans[KEY]` with --spans-key, where they may
nest) and its relations in `doc._.spanbert_rels`, saved with user data so `spacy train` and `spacy evaluate` read
the gold relations. Any bad record stops the conversion before anything is written, with one line naming the file,
the record and the fix.

Usage: python scripts/convert_relations.py INPUT.json OUTPUT.spacy [--spans-key KEY] [--limit N]
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from project_io import write_atomic


def convert(input_path: Path, output_path: Path, spans_key: Optional[str] = None, limit: int = 0) -> dict:
    """Read, check and convert every record, then write the DocBin. RETURNS counts of docs, entities, relations."""
    import spacy
    from spacy.tokens import DocBin

    from spacy_spanbert.relation_data import read_records, records_to_docs
    from spacy_spanbert.relations import get_relations

    records = read_records(input_path)
    if limit:
        records = records[:limit]
    if not records:
        raise ValueError(f"{input_path}: no records: check the file (a JSON list of sentences)")
    docs = records_to_docs(spacy.blank("en").vocab, records, input_path.name, spans_key)
    db = DocBin(store_user_data=True, docs=docs)
    write_atomic(output_path, db.to_bytes())
    entities = sum(len(doc.ents) if spans_key is None else len(doc.spans[spans_key]) for doc in docs)
    return {"docs": len(docs), "entities": entities, "relations": sum(len(get_relations(d)) for d in docs)}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="JSON list (or JSON Lines) of {tokens, entities, relations} records")
    p.add_argument("output", type=Path, help=".spacy file to write")
    p.add_argument("--spans-key", default=None, help="put entities in doc.spans[KEY] (nested allowed), not doc.ents")
    p.add_argument("--limit", type=int, default=0, help="convert only the first N records (0 = all)")
    args = p.parse_args(argv)
    if not args.input.is_file():
        print(f"convert_relations: {args.input} does not exist: pass the JSON file (e.g. the CoNLL04 train.json)",
              file=sys.stderr)
        return 1
    try:
        counts = convert(args.input, args.output, args.spans_key, args.limit)
    except ValueError as err:
        print(f"convert_relations: {err}", file=sys.stderr)
        return 1
    print(f"{args.output}: {counts['docs']} docs, {counts['entities']} entities, {counts['relations']} relations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
