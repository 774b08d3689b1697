"""Assemble and run one pretraining job from a config: checks first, then data, model, Trainer."""
import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Optional, Sequence

from .settings import ObjectiveSettings, TrainingSettings, objective_settings, training_settings

logger = logging.getLogger("spacy_spanbert.pretraining")
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert")


def load_pretrain_config(config_path: Path, overrides: Optional[Dict] = None):
    """Read the config with dotted overrides; RETURNS (config dict, resolved MaskingConfig)."""
    from spacy.util import load_config, registry

    config_path = Path(config_path)
    if not config_path.exists():
        raise FileNotFoundError(f"Config not found: {config_path}. Start from configs/pretrain.cfg.")
    cfg = load_config(config_path, overrides=overrides or {}, interpolate=True)
    missing = [s for s in ("paths", "system", "masking", "objective", "training") if s not in cfg]
    if missing:
        raise ValueError(f"Config {config_path} lacks section(s) {', '.join(missing)}: see configs/pretrain.cfg.")
    masking = registry.resolve({"masking": cfg["masking"]})["masking"]
    return cfg, masking


def load_tokenizer(cfg):
    from transformers import AutoTokenizer

    name = cfg["paths"].get("tokenizer") or cfg["paths"].get("init_model")
    if not name:
        raise ValueError("Set --paths.init_model (continued pretraining) or --paths.tokenizer (from scratch).")
    from ..hf import check_tokenizer_files, looks_cased

    check_tokenizer_files(name, "--paths.tokenizer" if cfg["paths"].get("tokenizer") else "--paths.init_model")

    kwargs = {}
    if cfg.get("tokenizer", {}).get("do_lower_case") is not None:
        kwargs["do_lower_case"] = bool(cfg["tokenizer"]["do_lower_case"])
    elif looks_cased(str(name)) and not (Path(str(name)) / "tokenizer_config.json").exists():
        # cased hub checkpoints such as SpanBERT ship only vocab.txt, and BertTokenizerFast would lower-case them
        kwargs["do_lower_case"] = False
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name), use_fast=True, **kwargs)
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot load a tokenizer from {name!r}: give a model directory or an HF name available "
                         f"offline ({str(err).splitlines()[0]})") from None
    if not tokenizer.is_fast:
        raise ValueError(f"The tokenizer of {name!r} is not a fast tokenizer: word boundaries need one.")
    if tokenizer.mask_token_id is None:
        raise ValueError(f"The tokenizer of {name!r} has no mask token: span masking needs one ([MASK]).")
    return tokenizer


def build_model(cfg, tokenizer, objective: ObjectiveSettings):
    from transformers import AutoConfig, set_seed

    from .model import SpanBertForPretraining

    set_seed(int(cfg["system"]["seed"]))
    kwargs = dict(max_sbo_targets=objective.max_span_targets, sbo_position_size=objective.position_embedding_size,
                  sbo_weight=objective.sbo_weight)
    init = cfg["paths"].get("init_model")
    if init:
        model = SpanBertForPretraining.from_pretrained(init, **kwargs)
    else:
        spec = dict(cfg.get("model", {}))
        model_type = spec.pop("model_type", "bert")
        config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                      **spec)
        model = SpanBertForPretraining.from_config(config, **kwargs)
        logger.info("Pretraining a %s model from scratch.", model_type)
    return model


def max_positions(config) -> int:
    n = int(getattr(config, "max_position_embeddings", 512))
    return n - 2 if config.model_type in ROBERTA_LIKE else n


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """The precision a run uses: "auto" is bf16 (or fp16 where bf16 is missing) on a GPU, and on a CPU bf16 where it
    runs natively (AVX512-BF16/AMX, `cpu.has_native_bf16`), fp32 elsewhere. bf16 asked for on a CPU that would
    emulate it is kept, with one warning line."""
    import torch

    from ..cpu import has_native_bf16, precision_reason

    if precision not in ("fp32", "bf16", "fp16", "auto"):
        raise ValueError(f"training.precision must be fp32, bf16, fp16 or auto, got {precision!r}.")
    if precision == "fp16" and not on_gpu:
        raise ValueError("training.precision = fp16 needs a GPU: use auto, bf16 or fp32 on CPU.")
    if on_gpu:
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    native = has_native_bf16()
    if precision == "auto":
        precision = "bf16" if native else "fp32"
        logger.info("Precision %s (auto): %s.", precision, precision_reason(native))
    elif precision == "bf16" and not native:
        logger.warning("training.precision = bf16 on a CPU without native bfloat16 (no AVX512-BF16/AMX): it is "
                       "emulated and many times slower than fp32; set training.precision = auto (or fp32)")
    return precision


def precision_flags(precision: str, on_gpu: bool) -> Dict[str, bool]:
    """TrainingArguments' bf16 / fp16 flags for `resolve_precision`'s choice."""
    precision = resolve_precision(precision, on_gpu)
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def pretrain(config_path: Path, output_dir: Path, overrides: Optional[Dict] = None, resume: bool = False,
             gpu_id: Optional[int] = None, callbacks: Sequence = ()) -> Path:
    """Run SpanBERT pretraining. RETURNS (Path): OUTPUT_DIR/encoder, the trained encoder in HF format.

    Config, then every check that needs no model, then the model and the run's identity, then training; the
    process group this call created is shut down whatever happens.
    callbacks (Sequence[TrainerCallback]): extra transformers callbacks (Python API only).
    """
    cfg, masking = load_pretrain_config(config_path, overrides)
    objective, training = objective_settings(cfg), training_settings(cfg)
    output_dir = Path(output_dir)
    nlp = preflight(cfg, masking, output_dir)
    tokenizer = load_tokenizer(cfg)
    model = build_model(cfg, tokenizer, objective)
    limit = max_positions(model.encoder.config)
    if training.max_length > limit:
        raise ValueError(f"training.max_length = {training.max_length} exceeds the model's {limit} positions: "
                         f"set --training.max_length {limit} or less.")
    tokenizer.model_max_length = min(int(tokenizer.model_max_length), limit)
    resume_from = claim_output_dir(cfg, masking, objective, training, tokenizer, output_dir, resume)
    import torch.distributed as dist

    owns_group = not (dist.is_available() and dist.is_initialized())  # a caller's own group is left alone
    mixed_precision = os.environ.get(MIXED_PRECISION_ENV)
    try:
        return _train(cfg, masking, training, tokenizer, model, nlp, output_dir, resume_from, gpu_id,
                      list(callbacks))
    finally:
        if owns_group:
            shutdown_process_group()
        restore_mixed_precision_env(mixed_precision)


# transformers 4.53's TrainingArguments(bf16=True) sets this for accelerate and never unsets it: every later Trainer
# or Accelerator in the process (the caller's own float32 one too) would then run under bf16 autocast
MIXED_PRECISION_ENV = "ACCELERATE_MIXED_PRECISION"


def restore_mixed_precision_env(previous: Optional[str]) -> None:
    """Put accelerate's mixed-precision variable back as it was before our run (unset if it was unset)."""
    if previous is None:
        os.environ.pop(MIXED_PRECISION_ENV, None)
    else:
        os.environ[MIXED_PRECISION_ENV] = previous


def preflight(cfg, masking, output_dir: Path):
    """The checks that need neither the model nor the tokenizer; RETURNS the candidate pipeline (or None)."""
    from .data import check_corpus

    raw_text = cfg["paths"].get("raw_text")
    if not raw_text:
        raise ValueError("No corpus given: set --paths.raw_text to a .txt, .jsonl or .spacy file.")
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"Output directory {output_dir} is an existing file: give OUTPUT_DIR a directory path "
                         f"(new or from an earlier run).")
    check_corpus(Path(raw_text))
    if masking.scheme not in CANDIDATE_ANNOTATION:
        return None
    if not cfg["paths"].get("spacy_model"):
        raise ValueError(f"masking.scheme = {masking.scheme} needs --paths.spacy_model (e.g. en_core_web_sm).")
    return load_candidate_pipeline(cfg["paths"]["spacy_model"], masking.scheme)  # before any model loads


def claim_output_dir(cfg, masking, objective: ObjectiveSettings, training: TrainingSettings, tokenizer,
                     output_dir: Path, resume: bool) -> Optional[Path]:
    """Check the run identity (refusing to mix runs), record this run's settings; RETURNS the checkpoint to resume."""
    from . import checkpoint_io as ckpt

    identity = {"init_model": str(cfg["paths"].get("init_model")), "vocab_size": len(tokenizer),
                "max_length": training.max_length, "masking": masking.__dict__, "objective": objective.model_dump(),
                "seed": int(cfg["system"]["seed"]), "batch_size": training.batch_size,
                "raw_text": str(Path(cfg["paths"]["raw_text"]).resolve()),
                "grad_accum_steps": training.grad_accum_steps, "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
    resume_from = ckpt.latest_checkpoint(output_dir) if resume else None
    if int(os.environ.get("RANK", "0")) == 0:
        ckpt.check_run_identity(output_dir, identity, resume)
        cfg.to_disk(output_dir / "config.cfg")  # the resolved settings of this run, overrides included
    elif not resume and ckpt.list_checkpoints(output_dir):
        raise ValueError(f"{output_dir} already holds checkpoints: pass --resume to continue.")
    if resume_from is not None and training.grad_accum_steps > 1:
        logger.warning("Resuming with grad_accum_steps > 1: the run continues from its checkpoint, but its losses are "
                       "not guaranteed to match an uninterrupted run exactly (exact with grad_accum_steps = 1).")
    if resume and resume_from is None:
        logger.warning("--resume: %s holds no checkpoint yet, starting a new run.", output_dir)
    return resume_from


def shutdown_process_group() -> None:
    """Stop gloo's/nccl's threads now: left to interpreter teardown, they can abort the process (SIGABRT) after a
    successful run, and torchrun then reports the whole job as failed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception as err:  # never hide the error that may be on its way out
            logger.warning("Could not shut down the process group cleanly: %s", err)


# what a pipeline must set for the spans a linguistic masking scheme draws from:
# (declared `assigns` attribute, Doc.has_annotation name, what it is, the component that provides it)
CANDIDATE_ANNOTATION = {
    "named_entity": ("doc.ents", "ENT_IOB", "entities", "a ner"),
    "noun_phrase": ("token.dep", "DEP", "dependency parses", "a parser"),
}


def load_candidate_pipeline(name: str, scheme: str):
    """The spaCy pipeline that finds named_entity / noun_phrase spans; one clear error if it cannot find them."""
    import spacy

    try:
        nlp = spacy.load(name)
    except OSError:
        raise ValueError(f"paths.spacy_model = {name} is not an installed pipeline or a pipeline directory: "
                         f"install one (e.g. en_core_web_sm) or point it at a trained pipeline") from None
    except ImportError as err:  # a pipeline package whose own dependencies are missing
        raise ValueError(f"paths.spacy_model = {name} cannot be loaded ({err}): install what it needs") from None
    attr, annotation, what, provider = CANDIDATE_ANNOTATION[scheme]
    declared = any(attr in nlp.get_pipe_meta(pipe).assigns for pipe in nlp.pipe_names)
    # components that set the annotation without declaring it still pass, if a probe sentence gets it
    if not declared and not nlp("Mary Smith saw the old bridge in London.").has_annotation(annotation):
        raise ValueError(f"masking.scheme = {scheme} needs {what}, but no component of paths.spacy_model = {name} "
                         f"assigns {attr} ({', '.join(nlp.pipe_names) or 'no components'}): use a pipeline with "
                         f"{provider}")
    return nlp


def _train(cfg, masking, t: TrainingSettings, tokenizer, model, nlp, output_dir: Path, resume_from, gpu_id,
           extra_callbacks) -> Path:
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_callback import ProgressCallback

    from . import checkpoint_io as ckpt
    from .collator import SpanMaskingCollator
    from .data import PackedBlocks, pack_corpus
    from .trainer import (EpochCallback, HeadsWarmupCallback, JsonlLogCallback, PostfixProgressCallback,
                          SpanBertTrainer)

    sys_cfg = cfg["system"]
    gpu = int(sys_cfg.get("gpu_id", -1) if gpu_id is None else gpu_id)
    on_gpu = gpu >= 0
    if on_gpu and not torch.cuda.is_available():
        raise ValueError(f"--gpu-id {gpu} given but no CUDA device is available: use --gpu-id -1 for CPU.")
    if on_gpu and "LOCAL_RANK" not in os.environ:
        torch.cuda.set_device(gpu)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    args = TrainingArguments(
        output_dir=str(ckpt.staging_dir(output_dir)), max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum_steps, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps, lr_scheduler_type="linear", optim="adamw_torch", max_grad_norm=0.0,
        logging_steps=t.logging_steps, logging_first_step=True, save_strategy="steps", save_steps=t.save_steps,
        save_total_limit=None, seed=int(sys_cfg["seed"]), data_seed=int(sys_cfg["seed"]), report_to=[],
        remove_unused_columns=False, dataloader_num_workers=t.dataloader_workers, use_cpu=not on_gpu,
        disable_tqdm=not t.progress_bar, ddp_backend=("gloo" if not on_gpu else "nccl") if distributed else None,
        ddp_find_unused_parameters=t.heads_warmup_steps > 0, save_safetensors=True,
        **precision_flags(t.precision, on_gpu),
    )
    with args.main_process_first(local=False, desc="packing the corpus"):
        data_dir = pack_corpus(Path(cfg["paths"]["raw_text"]), tokenizer, t.max_length, output_dir / "data",
                               nlp=nlp, candidate_kind=masking.scheme if nlp is not None else None)
    dataset = PackedBlocks(data_dir)
    logger.info("Corpus: %d blocks, %d wordpieces.", len(dataset), dataset.n_tokens)
    collator = SpanMaskingCollator.from_tokenizer(tokenizer, masking=masking, seed=int(sys_cfg["seed"]),
                                                  max_sbo_targets=model.sbo_head.max_targets)
    callbacks = [EpochCallback(collator), JsonlLogCallback(output_dir), *extra_callbacks]
    if t.heads_warmup_steps:
        callbacks.append(HeadsWarmupCallback(t.heads_warmup_steps))
    trainer = SpanBertTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                              callbacks=callbacks, run_dir=output_dir, keep_checkpoints=t.save_total_limit,
                              save_tokenizer=tokenizer, max_grad_norm=t.max_grad_norm,
                              grad_normalization=t.grad_normalization,
                              head_lr_factor=t.head_lr_factor)
    if not args.disable_tqdm:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(PostfixProgressCallback)
    with ckpt.disk_full_is_one_line(output_dir):
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        final = output_dir / "encoder"
        if args.should_save:
            tmp = output_dir / ".encoder-tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            final_model = trainer.accelerator.unwrap_model(trainer.model)
            final_model.save_encoder(tmp, tokenizer)
            final_model.save_heads(tmp)  # extra files: AutoModel ignores them; heldout_mlm_loss reads them
            ckpt.publish(tmp, final)
    trainer.accelerator.wait_for_everyone()
    return final
