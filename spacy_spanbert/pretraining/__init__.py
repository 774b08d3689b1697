"""SpanBERT pretraining: span masking + Span Boundary Objective on top of transformers' Trainer.

Modules (imported on demand, so this package stays light for spaCy's entry points):
masking (pure numpy masking schemes), data (reading and packing corpora), collator (SpanMaskingCollator),
model (SpanBertForPretraining), trainer (Trainer subclass and callbacks), checkpoint (layout and atomic
publication), run (`pretrain(...)`), evaluate (`heldout_mlm_loss(...)`), registry and cli (spaCy integration).
"""
