"""displaCy pictures of entities and the relations between them.

displaCy draws entities (style "ent") or arcs between words (style "dep"), not both; its manual mode takes any words
and arcs. So each entity becomes one "word" tagged with its label, and each relation an arc from head to tail,
labelled with the relation (and its score when `spanbert_rel` predicted it); with `spanbert_ner`'s entities the tag
carries the entity's probability too. Nested entities keep the outer one.
"""
from typing import Any, Dict, List, Optional

from spacy import displacy
from spacy.tokens import Doc

from .relations import get_relations


def relation_graph(doc: Doc, show_scores: bool = True) -> Dict[str, Any]:
    """displaCy's manual "dep" input: words (entities merged, tagged with their label and, with `show_scores`,
    `spanbert_ner`'s probability) and one arc per relation."""
    starts = {}
    for record in get_relations(doc):
        for side in ("head", "tail"):
            start, end = record[side]
            if end - start > starts.get(start, (0, ""))[0]:
                starts[start] = (end - start, record.get(f"{side}_label") or "")
    for ent in doc.ents:
        score = getattr(ent._, "spanbert_score", None) if ent.has_extension("spanbert_score") else None
        tag = f"{ent.label_} {score:.2f}" if show_scores and score is not None else ent.label_
        if starts.get(ent.start, (0, ""))[0] <= len(ent):
            starts[ent.start] = (len(ent), tag)
    words: List[Dict[str, str]] = []
    unit_of: Dict[int, int] = {}
    i = 0
    while i < len(doc):
        width, label = starts.get(i, (1, ""))
        unit_of[i] = len(words)
        words.append({"text": doc[i : i + width].text, "tag": label})
        i += width
    arcs = []
    for record in get_relations(doc):
        head, tail = unit_of.get(record["head"][0]), unit_of.get(record["tail"][0])
        if head is None or tail is None or head == tail:
            continue
        label = record["label"]
        if show_scores and record.get("score") is not None:
            label = f"{label} {record['score']:.2f}"
        arcs.append({"start": min(head, tail), "end": max(head, tail), "label": label,
                     "dir": "right" if head < tail else "left"})
    return {"words": words, "arcs": arcs}


def render_relations(doc: Doc, show_scores: bool = True, options: Optional[Dict[str, Any]] = None,
                     page: bool = False) -> str:
    """SVG (or a whole HTML page) of the doc's entities and relations; `options` go to displaCy's dep renderer."""
    settings = {"compact": True, "distance": 110, **(options or {})}
    return displacy.render(relation_graph(doc, show_scores), style="dep", manual=True, options=settings, page=page,
                           jupyter=False)
