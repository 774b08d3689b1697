"""End-to-end pretraining on a tiny BERT: learning, exact resume, atomic checkpoints, bad input, loading."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import TrainerCallback

from spacy_spanbert.pretraining import checkpoint_io as ckpt
from spacy_spanbert.pretraining.masking import MaskingConfig
from spacy_spanbert.pretraining.run import pretrain
from spacy_spanbert.pretraining.trainer import SpanBertTrainer

CONFIG = Path(__file__).parents[2] / "configs" / "pretrain.cfg"


def overrides(model, corpus, **extra):
    base = {"paths.raw_text": str(corpus), "paths.init_model": str(model), "training.max_length": 32,
            "training.batch_size": 4, "training.max_steps": 12, "training.save_steps": 6,
            "training.logging_steps": 1, "training.warmup_steps": 2, "training.learning_rate": 0.003,
            "training.progress_bar": False}
    base.update(extra)
    return base


def log_rows(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


class Crash(RuntimeError):
    pass


class CrashAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Crash(f"interrupted at {self.step}")


@pytest.fixture(scope="module")
def memo_corpus(tmp_path_factory, corpus_writer):
    return corpus_writer(tmp_path_factory.mktemp("memo") / "memo.txt", n_docs=6, seed=3, sents_per_doc=(2, 2))


@pytest.fixture(scope="module")
def trained_run(tiny_bert_dir, memo_corpus, tmp_path_factory):
    """600 tiny steps on six short documents."""
    out = tmp_path_factory.mktemp("trained")
    ov = overrides(tiny_bert_dir, memo_corpus, **{"training.max_steps": 600, "training.batch_size": 8,
                                                 "training.learning_rate": 0.01, "training.warmup_steps": 10,
                                                 "training.logging_steps": 10, "training.save_steps": 300})
    pretrain(CONFIG, out, ov)
    return out


def test_loss_drops_below_a_fifth(trained_run):
    rows = log_rows(trained_run)
    assert rows[0]["step"] == 1 and rows[-1]["step"] == 600
    assert {"mlm_loss", "sbo_loss", "learning_rate", "tokens_per_s", "masked_ratio", "mean_span_len_words",
            "grad_norm"} <= set(rows[0])
    # every logged window says how often the clip fired, consistently with the largest pre-clip norm in it
    from spacy.util import load_config

    clip = load_config(trained_run / "config.cfg")["training"]["max_grad_norm"]
    assert {"grad_norm_max", "clipped_share"} <= set(rows[1])
    for r in rows[1:]:
        assert (r["clipped_share"] > 0) == (r["grad_norm_max"] > clip)
    end = (rows[-1]["loss"] + rows[-2]["loss"]) / 2
    assert end < 0.2 * rows[0]["loss"]
    assert (trained_run / "loss.png").stat().st_size > 1000
    assert [p.name for p in ckpt.list_checkpoints(trained_run)] == ["step-300", "step-600"]


def test_encoder_loads_in_transformers_and_spacy(trained_run):
    import spacy
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    enc_dir = trained_run / "encoder"
    model = AutoModel.from_pretrained(str(enc_dir))
    saved = load_file(str(trained_run / "checkpoints" / "step-600" / "encoder" / "model.safetensors"))
    assert torch.equal(model.embeddings.word_embeddings.weight, saved["embeddings.word_embeddings.weight"])
    tok = AutoTokenizer.from_pretrained(str(enc_dir))
    assert tok.do_lower_case and tok.model_max_length == 128
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(enc_dir),
        "tokenizer_config": {"use_fast": True}, "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1",
                                                             "window": 64, "stride": 48}}})
    nlp.initialize()
    doc = nlp("The old man saw the big river near the city.")
    assert doc._.trf_data.tensors[0].shape[-1] == 32
    assert len(doc._.trf_data.align) == len(doc) and all(len(a) > 0 for a in doc._.trf_data.align)


def test_resume_reproduces_uninterrupted_losses(tiny_bert_dir, memo_corpus, tmp_path):
    ov = overrides(tiny_bert_dir, memo_corpus)
    pretrain(CONFIG, tmp_path / "straight", ov)
    with pytest.raises(Crash):
        pretrain(CONFIG, tmp_path / "resumed", ov, callbacks=[CrashAt(8)])
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "resumed")] == ["step-6"]
    pretrain(CONFIG, tmp_path / "resumed", ov, resume=True)
    a, b = log_rows(tmp_path / "straight"), log_rows(tmp_path / "resumed")
    assert [r["step"] for r in b] == list(range(1, 13))
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-6, abs=1e-6), ra["step"]
        assert rb["masked_ratio"] == ra["masked_ratio"]
    # the epoch count passed the corpus several times: masks differ between epochs
    assert a[-1]["epoch"] > 1.0


def test_cased_checkpoint_without_tokenizer_config_stays_cased(tiny_bert_dir, tiny_text_corpus, tmp_path):
    # the SpanBERT hub files ship only vocab.txt: BertTokenizerFast would lower-case their cased vocabulary
    cased = tmp_path / "tiny-bert-cased"
    shutil.copytree(tiny_bert_dir, cased)
    for name in ("tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"):
        (cased / name).unlink(missing_ok=True)
    ov = overrides(cased, tiny_text_corpus, **{"training.max_steps": 2, "training.save_steps": 2})
    from transformers import AutoTokenizer

    out = pretrain(CONFIG, tmp_path / "run", ov)
    assert AutoTokenizer.from_pretrained(str(out)).do_lower_case is False


def test_checkpoint_is_never_half_written(tiny_bert_dir, tiny_text_corpus, tmp_path, monkeypatch):
    def broken(self, output_dir):
        raise Crash("disk full")

    monkeypatch.setattr(SpanBertTrainer, "_save_optimizer_and_scheduler", broken)
    with pytest.raises(Crash):
        pretrain(CONFIG, tmp_path, overrides(tiny_bert_dir, tiny_text_corpus))
    assert ckpt.list_checkpoints(tmp_path) == []
    assert not (tmp_path / "checkpoints" / "step-6").exists()
    monkeypatch.undo()
    pretrain(CONFIG, tmp_path, overrides(tiny_bert_dir, tiny_text_corpus), resume=True)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-6", "step-12"]


def test_resume_refuses_corrupt_checkpoint_and_other_runs(tiny_bert_dir, tiny_text_corpus, tmp_path):
    ov = overrides(tiny_bert_dir, tiny_text_corpus, **{"training.max_steps": 6})
    pretrain(CONFIG, tmp_path, ov)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        pretrain(CONFIG, tmp_path, ov)
    with pytest.raises(ValueError, match="holds another run"):
        pretrain(CONFIG, tmp_path, {**ov, "masking.scheme": "subword"}, resume=True)
    weights = tmp_path / "checkpoints" / "step-6" / "encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as after a power loss
    with pytest.raises(ValueError, match="corrupt.*delete it"):
        pretrain(CONFIG, tmp_path, ov, resume=True)
    (tmp_path / "checkpoints" / "step-6" / "heads.safetensors").unlink()
    with pytest.raises(ValueError, match="corrupt"):
        pretrain(CONFIG, tmp_path, ov, resume=True)


def test_bad_input_is_refused_before_training(tiny_bert_dir, tiny_text_corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="Corpus not found"):
        pretrain(CONFIG, tmp_path / "a", overrides(tiny_bert_dir, tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no text|empty"):
        pretrain(CONFIG, tmp_path / "b", overrides(tiny_bert_dir, empty))
    with pytest.raises(ValueError, match="Cannot load"):
        pretrain(CONFIG, tmp_path / "c", overrides(tmp_path / "no-such-model", tiny_text_corpus))
    with pytest.raises(ValueError, match="exceeds the model's 128 positions"):
        pretrain(CONFIG, tmp_path / "d", overrides(tiny_bert_dir, tiny_text_corpus, **{"training.max_length": 512}))
    with pytest.raises(ValueError, match="Unknown masking scheme"):
        pretrain(CONFIG, tmp_path / "e", overrides(tiny_bert_dir, tiny_text_corpus, **{"masking.scheme": "words"}))
    no_mask = tmp_path / "no_mask"
    shutil.copytree(tiny_bert_dir, no_mask)
    cfg = json.loads((no_mask / "tokenizer_config.json").read_text())
    cfg["mask_token"] = None
    cfg.get("added_tokens_decoder", {}).pop("4", None)
    (no_mask / "tokenizer_config.json").write_text(json.dumps(cfg))
    special = json.loads((no_mask / "special_tokens_map.json").read_text())
    special.pop("mask_token", None)
    (no_mask / "special_tokens_map.json").write_text(json.dumps(special))
    with pytest.raises(ValueError, match="no mask token"):
        pretrain(CONFIG, tmp_path / "f", overrides(no_mask, tiny_text_corpus))
    assert not (tmp_path / "a").exists() and not (tmp_path / "f" / "checkpoints").exists()


def test_heldout_mlm_loss_tracks_training(trained_run, memo_corpus, tiny_bert_dir, tmp_path):
    import math

    from spacy_spanbert.pretraining.evaluate import heldout_mlm_loss

    final = heldout_mlm_loss(trained_run / "encoder", memo_corpus, max_length=32)
    early = heldout_mlm_loss(trained_run / "checkpoints" / "step-300" / "encoder", memo_corpus, max_length=32)
    assert final["n_mlm_targets"] > 0 and final["n_sbo_targets"] > 0
    assert final["mlm_loss"] < early["mlm_loss"] < math.log(200)
    assert final == heldout_mlm_loss(trained_run / "encoder", memo_corpus, max_length=32)  # fixed masks
    with pytest.raises(ValueError, match="heads.safetensors"):
        heldout_mlm_loss(tiny_bert_dir, memo_corpus)


def test_heads_warmup_keeps_encoder_frozen(tiny_bert_dir, tiny_text_corpus, tmp_path):
    import torch
    from safetensors.torch import load_file

    ov = overrides(tiny_bert_dir, tiny_text_corpus, **{"training.max_steps": 5, "training.save_steps": 3,
                                                      "training.heads_warmup_steps": 3})
    pretrain(CONFIG, tmp_path, ov)
    start = load_file(str(tiny_bert_dir / "model.safetensors"))
    at3 = load_file(str(tmp_path / "checkpoints" / "step-3" / "encoder" / "model.safetensors"))
    at5 = load_file(str(tmp_path / "checkpoints" / "step-5" / "encoder" / "model.safetensors"))
    key = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(start[key], at3[key]) and not torch.equal(at3[key], at5[key])
    assert torch.equal(start["embeddings.word_embeddings.weight"], at3["embeddings.word_embeddings.weight"])
    heads = load_file(str(tmp_path / "checkpoints" / "step-3" / "heads.safetensors"))
    assert heads["mlm_head.bias"].abs().sum() > 0


def test_named_entity_scheme_runs_with_a_spacy_pipeline(tiny_bert_dir, tiny_text_corpus, tmp_path):
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": "Mary"},
                                               {"label": "GPE", "pattern": "London"}])
    nlp.to_disk(tmp_path / "ner")
    ov = overrides(tiny_bert_dir, tiny_text_corpus, **{"training.max_steps": 2, "training.save_steps": 2,
                                                      "masking.scheme": "named_entity"})
    with pytest.raises(ValueError, match="paths.spacy_model"):
        pretrain(CONFIG, tmp_path / "run0", ov)
    pretrain(CONFIG, tmp_path / "run", {**ov, "paths.spacy_model": str(tmp_path / "ner")})
    assert len(log_rows(tmp_path / "run")) == 2
    # noun_phrase needs dependency parses: an entity ruler has none, so the run stops with the fix, before packing
    with pytest.raises(ValueError, match="needs dependency parses.*use a pipeline with a parser"):
        pretrain(CONFIG, tmp_path / "run2", {**ov, "masking.scheme": "noun_phrase",
                                             "paths.spacy_model": str(tmp_path / "ner")})
    assert not (tmp_path / "run2" / "data").exists()
    with pytest.raises(ValueError, match="is not an installed pipeline or a pipeline directory"):
        pretrain(CONFIG, tmp_path / "run3", {**ov, "paths.spacy_model": str(tmp_path / "no_such_pipeline")})


def test_from_scratch_with_a_model_config(tiny_bert_dir, tiny_text_corpus, tmp_path):
    from transformers import AutoModel

    ov = overrides(None, tiny_text_corpus, **{"paths.tokenizer": str(tiny_bert_dir), "training.max_steps": 2,
                                             "training.save_steps": 2, "model.hidden_size": 16,
                                             "model.num_hidden_layers": 1, "model.num_attention_heads": 2,
                                             "model.intermediate_size": 32, "model.max_position_embeddings": 64})
    ov["paths.init_model"] = None
    pretrain(CONFIG, tmp_path, ov)
    model = AutoModel.from_pretrained(str(tmp_path / "encoder"))
    assert model.config.hidden_size == 16 and model.config.num_hidden_layers == 1
    assert "scheme = \"span\"" in (tmp_path / "config.cfg").read_text()
    assert log_rows(tmp_path)[0]["lr"] == log_rows(tmp_path)[0]["learning_rate"]


def test_a_pipeline_package_missing_its_dependencies_is_one_clear_error(monkeypatch):
    import spacy

    from spacy_spanbert.pretraining.run import load_candidate_pipeline

    def broken(name):
        raise ImportError("No module named 'spacy_lookups_data'")

    monkeypatch.setattr(spacy, "load", broken)
    with pytest.raises(ValueError, match=r"paths.spacy_model = en_core_web_sm cannot be loaded .*spacy_lookups_data"):
        load_candidate_pipeline("en_core_web_sm", "named_entity")


def _direct_trainer(tiny_bert_dir, tmp_path, items, **trainer_kwargs):
    """A SpanBertTrainer on a dropout-free tiny BERT and fixed items, built without the CLI."""
    import copy

    from transformers import AutoTokenizer, BertConfig, TrainingArguments

    from spacy_spanbert.pretraining.collator import SpanMaskingCollator
    from spacy_spanbert.pretraining.model import SpanBertForPretraining

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    config = BertConfig.from_pretrained(str(tiny_bert_dir), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = SpanBertForPretraining.from_config(config)
    start = copy.deepcopy(model)
    collator = SpanMaskingCollator.from_tokenizer(tok, masking=MaskingConfig(mask_ratio=0.3))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2,
                             gradient_accumulation_steps=2, max_grad_norm=0.0, learning_rate=1e-3, report_to=[],
                             remove_unused_columns=False, use_cpu=True, save_strategy="no", logging_steps=1,
                             disable_tqdm=True)
    trainer = SpanBertTrainer(model=model, args=args, train_dataset=items, data_collator=collator, run_dir=tmp_path,
                              keep_checkpoints=1, save_tokenizer=tok, **{"max_grad_norm": 1.0, **trainer_kwargs})
    return trainer, start, collator


def _items(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    texts = ["the old man saw the big river near the city .", "a cat found the green door in the house .",
             "mary visited the small village after the game .", "the young teacher bought a red car ."]
    enc = tok(texts)
    return [{"index": i, "input_ids": np.array(ids), "word_ids": np.array([-1 if w is None else w
                                                                          for w in enc.word_ids(i)])}
            for i, ids in enumerate(enc["input_ids"])]


class GradCapture(TrainerCallback):
    """Record the gradients the optimizer is about to apply (after clipping)."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


class BatchRecorder:
    def __init__(self, collator):
        self.collator, self.batches = collator, []

    def __call__(self, items):
        batch = self.collator(items)
        self.batches.append(dict(batch))
        return batch


def _atol(grad) -> float:
    """An absolute tolerance at the tensor's own scale: float32 sums in another order (another CPU's kernels, AVX2
    against AVX512) move its near-zero elements by about 1e-7 of its largest, which a fixed 1e-8 does not allow."""
    return max(1e-5 * float(grad.abs().max()), 1e-12)


def _one_update(tiny_bert_dir, tmp_path, grad_normalization):
    """One optimizer step of 2 micro-batches: the trainer, the untouched start model (in train mode), the batches
    it saw, the gradients it applied and the update's masked tokens."""
    trainer, start, collator = _direct_trainer(tiny_bert_dir, tmp_path, _items(tiny_bert_dir),
                                               grad_normalization=grad_normalization)
    recorder = BatchRecorder(collator)
    trainer.data_collator = recorder
    capture = GradCapture()
    trainer.add_callback(capture)
    trainer.train()
    n_masked = sum(int((b["labels"] != -100).sum()) for b in recorder.batches)
    start.train()
    return trainer, start, recorder.batches, capture, n_masked


def test_masked_tokens_update_is_the_summed_losses_gradient_over_the_masked_tokens(tiny_bert_dir, tmp_path):
    # "masked_tokens": the MLM and SBO cross-entropies summed over their targets, the gradient divided by the
    # update's masked tokens (2 micro-batches here), then clipped at 1.0
    import torch

    trainer, start, batches, capture, n_masked = _one_update(tiny_bert_dir, tmp_path, "masked_tokens")
    assert len(batches) == 2
    for batch in batches:
        batch = {k: v for k, v in batch.items() if k != "mask_stats"}
        out = start(**batch)
        n_sbo = batch["sbo_labels"].numel()
        assert out["loss_sum"].item() == pytest.approx(
            out["mlm_loss"].item() * int((batch["labels"] != -100).sum()) + out["sbo_loss"].item() * n_sbo, rel=1e-5)
        out["loss_sum"].backward()
    expected = {n: p.grad / n_masked for n, p in start.named_parameters() if p.grad is not None}
    norm = torch.sqrt(sum((g ** 2).sum() for g in expected.values())).item()
    clip = min(1.0, trainer.max_grad_norm / (norm + 1e-6))  # what the 1.0 clip leaves of the gradient
    for name, grad in expected.items():
        torch.testing.assert_close(capture.grads[name], grad * clip, rtol=1e-4, atol=_atol(grad * clip))
    row = trainer.state.log_history[0]
    assert row["grad_norm"] == pytest.approx(norm, rel=1e-4)
    assert row["clipped_share"] == (1.0 if norm > trainer.max_grad_norm else 0.0)
    # the logged loss is still the per-token mean, not the scaled value that was backpropagated
    assert 2.0 < row["loss"] < 20.0


def test_reference_update_is_the_mean_losses_gradient_over_the_masked_tokens(tiny_bert_dir, tmp_path):
    # SpanBERT's criterion returns each micro-batch's MLM mean + SBO mean (sample size = its masked tokens), and its
    # fairseq trainer multiplies the summed gradient by world size / the update's masked tokens before the clip
    import torch

    trainer, start, batches, capture, n_masked = _one_update(tiny_bert_dir, tmp_path, "reference")
    for batch in batches:
        out = start(**{k: v for k, v in batch.items() if k != "mask_stats"})
        out["loss"].backward()
    expected = {n: p.grad / n_masked for n, p in start.named_parameters() if p.grad is not None}
    norm = torch.sqrt(sum((g ** 2).sum() for g in expected.values())).item()
    assert norm < trainer.max_grad_norm  # a healthy step: the clip leaves it alone
    for name, grad in expected.items():
        torch.testing.assert_close(capture.grads[name], grad, rtol=1e-4, atol=_atol(grad))
    assert trainer.state.log_history[0]["grad_norm"] == pytest.approx(norm, rel=1e-4)
    assert trainer.state.log_history[0]["clipped_share"] == 0.0


def test_head_lr_factor_speeds_up_only_the_heads(tiny_bert_dir, tmp_path):
    trainer, _, _ = _direct_trainer(tiny_bert_dir, tmp_path, _items(tiny_bert_dir), head_lr_factor=10.0)
    optimizer = trainer.create_optimizer()
    model = trainer.model
    heads = set(model.head_parameter_names())
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert lr_of[id(param)] == pytest.approx(1e-2 if name in heads else 1e-3), name
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(
        p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="head_lr_factor"):
        _direct_trainer(tiny_bert_dir, tmp_path, _items(tiny_bert_dir), head_lr_factor=0.0)
    with pytest.raises(ValueError, match="grad_normalization"):
        _direct_trainer(tiny_bert_dir, tmp_path, _items(tiny_bert_dir), grad_normalization="sum")


def test_a_clip_set_on_the_training_arguments_is_one_line_naming_the_fix(tiny_bert_dir, tmp_path):
    """SpanBertTrainer clips (and counts the clipped steps) itself: Trainer must not clip first."""
    from transformers import TrainingArguments

    trainer, _, _ = _direct_trainer(tiny_bert_dir, tmp_path, _items(tiny_bert_dir))
    args = TrainingArguments(output_dir=str(tmp_path), max_grad_norm=1.0, report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="pass max_grad_norm to it and 0 to TrainingArguments") as err:
        SpanBertTrainer(trainer.model, args, run_dir=tmp_path, keep_checkpoints=1, save_tokenizer=None)
    assert "\n" not in str(err.value)


def test_torn_last_log_line_does_not_block_resume(tmp_path, caplog):
    from spacy_spanbert.pretraining.trainer import read_log

    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.9}\n{"step": 3, "lo')
    assert [r["step"] for r in read_log(log)] == [1, 2]
    assert "cut short" in caplog.text
    log.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "lo\n{"step": 3, "loss": 2.9}\n')
    with pytest.raises(ValueError, match=r"log.jsonl, line 2 .*repair or delete that line"):
        read_log(log)


def test_dataloader_workers_give_the_same_batches_and_an_exact_resume(tiny_bert_dir, memo_corpus, tmp_path):
    # masking runs in the DataLoader workers; each block's masks are seeded by (seed, epoch, index), so the
    # losses are those of the in-process run, and an interrupted run resumes onto the very same batches
    ov = overrides(tiny_bert_dir, memo_corpus)
    workers = {**ov, "training.dataloader_workers": 2}
    pretrain(CONFIG, tmp_path / "inline", ov)
    pretrain(CONFIG, tmp_path / "workers", workers)
    with pytest.raises(Crash):
        pretrain(CONFIG, tmp_path / "resumed", workers, callbacks=[CrashAt(8)])
    with (tmp_path / "resumed" / "log.jsonl").open("a") as handle:
        handle.write('{"step": 9, "loss": 3.1')  # torn while the crash happened: must not block the resume
    pretrain(CONFIG, tmp_path / "resumed", workers, resume=True)
    inline, other, resumed = (log_rows(tmp_path / d) for d in ("inline", "workers", "resumed"))
    assert [r["step"] for r in resumed] == list(range(1, 13))
    assert inline[-1]["epoch"] > 1.0  # several epochs: workers restart with each epoch's seeds
    for a, b, c in zip(inline, other, resumed):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-6), a["step"]
        assert c["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-6), a["step"]
        assert a["masked_ratio"] == b["masked_ratio"] == c["masked_ratio"]


def test_heldout_script_masks_with_the_runs_own_config(tiny_bert_dir, tiny_text_corpus, tmp_path):
    import sys

    from spacy_spanbert.pretraining.evaluate import heldout_mlm_loss

    sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
    from pretrain_heldout_loss import main as heldout_main

    masking = {"masking.geometric_p": 0.6, "masking.max_span_words": 3, "masking.mask_ratio": 0.3}
    run = tmp_path / "run"
    pretrain(CONFIG, run, overrides(tiny_bert_dir, tiny_text_corpus, **{"training.max_steps": 2,
                                                                        "training.save_steps": 2, **masking}))
    heldout_main([str(run / "encoder"), str(tiny_text_corpus), "--output", str(tmp_path / "out.json"),
                  "--max-length", "32", "--scheme", "span"])
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["masking"]["geometric_p"] == 0.6 and result["masking"]["mask_ratio"] == 0.3
    assert result["masking_from"] == str(run / "config.cfg")
    own = MaskingConfig(geometric_p=0.6, max_span_words=3, mask_ratio=0.3)
    expected = heldout_mlm_loss(run / "encoder", tiny_text_corpus, max_length=32, masking=own, max_blocks=200)
    assert result["mlm_loss"] == pytest.approx(expected["mlm_loss"])
    assert result["n_mlm_targets"] != heldout_mlm_loss(run / "encoder", tiny_text_corpus, max_length=32,
                                                       max_blocks=200)["n_mlm_targets"]  # not `--scheme` alone
    # a checkpoint's encoder finds the same run config two levels up
    heldout_main([str(run / "checkpoints" / "step-2" / "encoder"), str(tiny_text_corpus), "--output",
                  str(tmp_path / "ckpt.json"), "--max-length", "32"])
    assert json.loads((tmp_path / "ckpt.json").read_text())["masking"]["max_span_words"] == 3


def test_batches_are_pinned_and_copied_without_blocking_on_cuda(monkeypatch, tmp_path):
    import torch
    from transformers import TrainingArguments

    from spacy_spanbert.pretraining.trainer import feed_the_device

    cpu = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    feed_the_device(cpu)
    assert not cpu.dataloader_pin_memory and not cpu.accelerator_config.non_blocking
    gpu = TrainingArguments(output_dir=str(tmp_path), use_cpu=False, report_to=[], dataloader_pin_memory=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    feed_the_device(gpu)
    assert gpu.dataloader_pin_memory and gpu.accelerator_config.non_blocking


def test_a_bf16_run_leaves_no_mixed_precision_for_later_trainers(tiny_bert_dir, memo_corpus, tmp_path, monkeypatch):
    """transformers sets ACCELERATE_MIXED_PRECISION for a bf16 run and never unsets it; every later Trainer in the
    process would then autocast. pretrain() puts the caller's value back (bf16 runs on any CPU, emulated or not)."""
    import os

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    pretrain(CONFIG, tmp_path / "bf16", overrides(tiny_bert_dir, memo_corpus, **{"training.max_steps": 1,
                                                                                   "training.precision": "bf16"}))
    assert "ACCELERATE_MIXED_PRECISION" not in os.environ
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    pretrain(CONFIG, tmp_path / "bf16b", overrides(tiny_bert_dir, memo_corpus, **{"training.max_steps": 1,
                                                                                   "training.precision": "bf16"}))
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "no"
