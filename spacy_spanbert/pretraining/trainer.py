"""HF `Trainer` specialised for SpanBERT: atomic checkpoints in our layout, masking statistics, warm-up freezing.

Trainer already does optimisation (AdamW, linear warmup/decay, clipping, accumulation), mixed precision, DDP,
and checkpoint/resume of optimizer, scheduler, RNG state and data position; this module adds what it lacks.
"""
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import checkpoint_io as ckpt
from .model import SpanBertForPretraining


GRAD_NORMALIZATIONS = ("reference", "masked_tokens", "mean")
_DEEPSPEED = ("DeepSpeed clips the gradient inside its own optimizer step, so SpanBertTrainer can neither clip it nor "
              "count the clipped steps: train with DDP (torchrun) or on one device.")


class SpanBertTrainer(Trainer):
    """Trainer whose checkpoints are OUTPUT_DIR/checkpoints/step-N, published atomically, keeping the last K.

    grad_normalization: "reference" (facebookresearch/SpanBERT: its criterion returns each micro-batch's MLM mean
        + SBO mean, and its fairseq trainer, without --no-sample-size-normalization, multiplies the summed gradient
        by world size / the update's masked tokens before the clip): the mean-loss gradient divided by about the
        masked tokens of a micro-batch, so the 1.0 clip fires only on spikes hundreds of times the usual norm.
        "masked_tokens": the MLM and SBO cross-entropies summed over their targets, divided by the update's masked
        tokens: the gradient at the mean loss's scale, which the 1.0 clip cuts on every step of a small update
        (docs/design-notes.md). "mean": the gradient of each micro-batch's mean loss, averaged.
    head_lr_factor: the fresh MLM/SBO heads learn at learning_rate * factor (the encoder at learning_rate).
    Random replacements are drawn by corpus frequency when the dataset exposes its token stream (`ids`).
    """

    def __init__(self, *args, run_dir: Path, keep_checkpoints: int, save_tokenizer, max_grad_norm: float = 1.0,
                 grad_normalization: str = "masked_tokens", head_lr_factor: float = 1.0, **kwargs):
        if grad_normalization not in GRAD_NORMALIZATIONS:
            raise ValueError(f"training.grad_normalization must be one of {', '.join(GRAD_NORMALIZATIONS)}, "
                             f"got {grad_normalization!r}.")
        if not head_lr_factor > 0:
            raise ValueError(f"training.head_lr_factor must be positive, got {head_lr_factor}.")
        if not max_grad_norm >= 0:
            raise ValueError(f"max_grad_norm must be 0 (no clip) or positive, got {max_grad_norm}.")
        if kwargs.get("args") is not None:
            feed_the_device(kwargs["args"])
        # first in line, so that callbacks given by the caller see the clipped gradient, as Trainer's clip leaves it
        kwargs["callbacks"] = [_OwnSteps(self), *(kwargs.get("callbacks") or [])]
        super().__init__(*args, **kwargs)
        if self.is_deepspeed_enabled:
            raise ValueError(_DEEPSPEED)
        if self.args.max_grad_norm:
            raise ValueError(f"TrainingArguments.max_grad_norm = {self.args.max_grad_norm}: SpanBertTrainer clips the "
                             f"gradient itself, to count the clipped steps; pass max_grad_norm to it and 0 to "
                             f"TrainingArguments.")
        if self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0:
            raise ValueError("dataloader_persistent_workers would keep masking with the first epoch's seeds in the "
                             "workers: leave it off (workers restart each epoch with the collator's new epoch).")
        self.run_dir = Path(run_dir)
        # the staging directory is ours to clean only where Trainer's output directory is the one we give it
        self.owns_output_dir = Path(self.args.output_dir).resolve() == ckpt.staging_dir(self.run_dir).resolve()
        self.keep_checkpoints = keep_checkpoints
        self.save_tokenizer = save_tokenizer
        self.max_grad_norm = float(max_grad_norm)
        self.grad_normalization = grad_normalization
        self.head_lr_factor = float(head_lr_factor)
        self._grad_scale = None
        self._last_grad_norm = None
        self._run_loss = [0.0, 0]  # per-token mean loss summed over this run's micro-batches, and their count
        self._use_corpus_frequencies()
        self._reset_stats()

    def _use_corpus_frequencies(self) -> None:
        collator, dataset = self.data_collator, self.train_dataset
        if hasattr(collator, "use_token_counts") and getattr(dataset, "ids", None) is not None:
            from .collator import corpus_token_counts

            vocab = int(self.accelerator.unwrap_model(self.model).decoder_weight.shape[0])
            collator.use_token_counts(corpus_token_counts(dataset.ids, vocab))

    # --- optimizer -----------------------------------------------------------------------------------------
    def create_optimizer(self):
        """AdamW as Trainer builds it, with the heads' parameter groups at learning_rate * head_lr_factor."""
        if self.head_lr_factor == 1.0 or self.optimizer is not None:
            return super().create_optimizer()
        model = self.model
        decay = set(self.get_decay_parameter_names(model))
        heads = set(self.accelerator.unwrap_model(model).head_parameter_names())
        opt_cls, opt_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        groups = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                groups.setdefault((name in heads, name in decay), []).append(param)
        lr = self.args.learning_rate
        self.optimizer = opt_cls([{"params": params, "weight_decay": self.args.weight_decay if dec else 0.0,
                                   "lr": lr * self.head_lr_factor if head else lr}
                                  for (head, dec), params in sorted(groups.items())], **opt_kwargs)
        return self.optimizer

    # --- loss and statistics -------------------------------------------------------------------------------
    def _reset_stats(self) -> None:
        self._stats = {"loss": 0.0, "mlm": 0.0, "sbo": 0.0, "micro": 0, "tokens": 0, "mask": 0, "steps": 0,
                       "clipped": 0, "gnorm_max": 0.0, "t0": time.perf_counter()}

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Also count the update's masked tokens (all micro-batches, all ranks): the reference's sample size."""
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._grad_scale = None
        if self.grad_normalization in ("reference", "masked_tokens") and batch_samples:
            local = sum((b["labels"] != -100).sum() for b in batch_samples).to(self.args.device)
            total = self.accelerator.gather(local.reshape(1)).sum() if self.args.world_size > 1 else local
            # Trainer divides each micro-batch loss by the accumulation steps and DDP averages over ranks: undo
            # both, so the update's gradient is the sum over its micro-batches (and ranks) of grad(loss) / masked
            # tokens, loss being the summed losses ("masked_tokens") or the mean losses ("reference").
            self._grad_scale = self.args.world_size * self.args.gradient_accumulation_steps / total.clamp(min=1)
        return batch_samples, num_items

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mask_stats = inputs.pop("mask_stats", None)
        outputs = model(**inputs)
        loss = outputs["loss"]
        if model.training:
            # kept as tensors: no device sync per step, read out at logging time
            self._stats["loss"] = self._stats["loss"] + loss.detach()
            self._stats["mlm"] = self._stats["mlm"] + outputs["mlm_loss"]
            self._stats["sbo"] = self._stats["sbo"] + outputs["sbo_loss"]
            self._stats["micro"] += 1
            self._stats["tokens"] = self._stats["tokens"] + inputs["attention_mask"].sum()
            if mask_stats is not None:
                self._stats["mask"] = self._stats["mask"] + mask_stats
            if self._grad_scale is not None:
                loss = outputs["loss_sum" if self.grad_normalization == "masked_tokens" else "loss"] * self._grad_scale
        return (loss, outputs) if return_outputs else loss

    def clip_gradients(self, model) -> None:
        """Clip the update's gradient at max_grad_norm (as Trainer would: through the accelerator, which unscales
        fp16 gradients first) and count the steps that clipped, from the norm before the clip."""
        if self.max_grad_norm <= 0:  # no clip, as Trainer with max_grad_norm 0: nothing to count
            return
        limit = self.max_grad_norm
        norm = self.accelerator.clip_grad_norm_(model.parameters(), limit)
        if norm is None:  # a backend that clips inside its own optimizer step
            raise ValueError(_DEEPSPEED)
        norm = norm.detach().float() if torch.is_tensor(norm) else torch.tensor(float(norm))
        self._last_grad_norm = norm
        self._stats["steps"] += 1
        self._stats["clipped"] = self._stats["clipped"] + (norm > limit)
        self._stats["gnorm_max"] = torch.maximum(torch.as_tensor(self._stats["gnorm_max"]).to(norm), norm)

    def log(self, logs, start_time=None):
        s = self._stats
        if "loss" in logs and s["micro"]:
            mask = s["mask"].tolist() if torch.is_tensor(s["mask"]) else [0, 0, 0, 0]
            n_pieces, n_masked, n_spans, n_words = (int(x) for x in mask)
            logs["lr"] = logs.get("learning_rate")
            if self._last_grad_norm is not None:  # the norm before the clip, as Trainer logs it when it clips
                logs["grad_norm"] = float(self._last_grad_norm)
            # Trainer's own "loss" sums the scaled losses it backpropagates: report the per-token mean instead
            logs["loss"] = round(float(s["loss"]) / s["micro"], 4)
            self._run_loss = [self._run_loss[0] + float(s["loss"]), self._run_loss[1] + s["micro"]]
            logs["mlm_loss"] = round(float(s["mlm"]) / s["micro"], 4)
            logs["sbo_loss"] = round(float(s["sbo"]) / s["micro"], 4)
            if s["steps"]:
                logs["grad_norm_max"] = round(float(s["gnorm_max"]), 6)
                logs["clipped_share"] = round(float(s["clipped"]) / s["steps"], 4)
            tokens = float(s["tokens"]) * self.args.world_size
            logs["tokens_per_s"] = round(tokens / (time.perf_counter() - s["t0"]), 1)
            logs["masked_ratio"] = round(n_masked / max(n_pieces, 1), 4)
            logs["mean_span_len_words"] = round(n_words / max(n_spans, 1), 3)
            self._reset_stats()
        if "train_loss" in logs and self._run_loss[1]:  # the end-of-run summary, also from the unscaled losses
            logs["train_loss"] = self._run_loss[0] / self._run_loss[1]
        super().log(logs, start_time)

    # --- checkpoints -----------------------------------------------------------------------------------------
    # Trainer writes each checkpoint under args.output_dir (the staging directory, checkpoint_io.staging_dir);
    # once every rank has written its part, it is renamed to OUTPUT_DIR/checkpoints/step-N.
    def save_model(self, output_dir=None, _internal_call: bool = False) -> None:
        """The model in our layout: encoder/ (HF format + tokenizer) and heads.safetensors, from the main process."""
        if self.args.should_save:
            model: SpanBertForPretraining = self.accelerator.unwrap_model(self.model)
            output_dir = Path(output_dir or self.args.output_dir)
            model.save_encoder(output_dir / "encoder", self.save_tokenizer)
            model.save_heads(output_dir)

    def clear_staging(self, remove_dir: bool = False) -> None:
        """Remove the checkpoint directories a crashed save left in the staging directory (and, at the end, the
        staging directory itself when nothing else is in it)."""
        # every rank first: at the end of training Trainer lists the staging directory on every rank (its
        # checkpoint sorting, transformers 4.53), and a rank still listing it must not see it removed
        self.accelerator.wait_for_everyone()
        if self.args.should_save and self.owns_output_dir:
            staging = Path(self.args.output_dir)
            for leftover in staging.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            if remove_dir and staging.is_dir() and not any(staging.iterdir()):
                staging.rmdir()
        self.accelerator.wait_for_everyone()

    def publish_checkpoint(self) -> None:
        """Move the checkpoint Trainer has just written into place in one rename, and keep the newest K."""
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state
        if self.args.should_save:
            written = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            ckpt.publish(written, ckpt.checkpoints_dir(self.run_dir) / f"step-{self.state.global_step}")
            ckpt.rotate(self.run_dir, self.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from safetensors.torch import load_file

        model = self.accelerator.unwrap_model(model or self.model)
        path = ckpt.validate_checkpoint(Path(resume_from_checkpoint))
        try:
            state = load_file(str(path / "encoder" / "model.safetensors"))
            missing, unexpected = model.encoder.load_state_dict(state, strict=False)
            mismatch = unexpected + [k for k in missing if not k.startswith("pooler.")]  # the pooler is not trained
            if not mismatch:
                model.load_heads(path)
        except Exception as err:  # truncated or garbled files: safetensors/torch raise their own error types
            raise ValueError(f"Checkpoint {path} is corrupt ({str(err).splitlines()[0]}): delete it to resume from "
                             f"the one before.") from None
        if mismatch:
            raise ValueError(f"Checkpoint {path} does not match the model (e.g. {mismatch[0]}): "
                             f"resume with the settings that wrote it.")


class _OwnSteps(TrainerCallback):
    """Hands the Trainer events that SpanBertTrainer acts on to it (callbacks are not given the trainer)."""

    def __init__(self, trainer: SpanBertTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.clear_staging()

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.trainer.clip_gradients(model)

    def on_save(self, args, state, control, **kwargs):
        self.trainer.publish_checkpoint()

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer.clear_staging(remove_dir=True)


def feed_the_device(args) -> None:
    """On CUDA, batches are collated into pinned memory and copied without blocking, so the copy of batch k+1
    overlaps step k (with `dataloader_num_workers` > 0, masking and collation also run beside the step)."""
    if not args.use_cpu and torch.cuda.is_available():
        args.dataloader_pin_memory = True
        args.accelerator_config.non_blocking = True


class HeadsWarmupCallback(TrainerCallback):
    """Freeze the encoder (and the tied decoder) for the first N optimiser steps so fresh heads settle first."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            model.freeze_encoder = state.global_step < self.steps


class EpochCallback(TrainerCallback):
    """Tell the collator which epoch it is masking, so every epoch draws fresh, reproducible masks."""

    def __init__(self, collator) -> None:
        self.collator = collator

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        # optimiser steps per epoch exactly as Trainer counts them (a partial accumulation still makes a step)
        n, ga = (len(train_dataloader), args.gradient_accumulation_steps) if train_dataloader else (1, 1)
        per_epoch = max(n // ga + int(n % ga > 0), 1)
        self.collator.epoch = state.global_step // per_epoch


class JsonlLogCallback(TrainerCallback):
    """Append every training log to OUTPUT_DIR/log.jsonl; on resume drop entries past the restored step;
    draw OUTPUT_DIR/loss.png at the end."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "log.jsonl"
        self.png = Path(run_dir) / "loss.png"

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.exists():
            kept = [r for r in read_log(self.path) if r["step"] <= state.global_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            with self.path.open("a") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.exists():
            plot_losses(self.path, self.png)


class PostfixProgressCallback(ProgressCallback):
    """The progress bar shows the latest loss and tokens/s instead of printing every log dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=logs["loss"], tok_s=logs.get("tokens_per_s"))


def read_log(path: Path) -> list:
    """The rows of a log.jsonl. A torn last line (the process died while appending it) is dropped with a
    warning; a broken line anywhere else is an error that names the file and the fix."""
    lines = [(n, line) for n, line in enumerate(Path(path).read_text(encoding="utf8").splitlines(), 1)
             if line.strip()]
    rows = []
    for k, (n, line) in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "step" not in row:
                raise ValueError("not a log row")
        except ValueError:
            if k == len(lines) - 1:
                logging.getLogger("spacy_spanbert.pretraining").warning(
                    "%s: dropping its last line, cut short when the run stopped: %.60r", path, line)
                break
            raise ValueError(f"{path}, line {n} is not a JSON log row: repair or delete that line (or delete "
                             f"{Path(path).name} to start its log afresh) and resume again.") from None
        rows.append(row)
    return rows


def plot_losses(log_path: Path, png_path: Path) -> None:
    """Loss curve (total, MLM, SBO) against the step."""
    try:
        import matplotlib
    except ImportError:  # an optional extra: a finished run must never fail for want of a plot
        logging.getLogger("spacy_spanbert.pretraining").warning(
            "matplotlib is not installed, so no %s: pip install 'spacy-spanbert[plots]'", png_path.name)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "mlm_loss", "sbo_loss"):
        ax.plot([r["step"] for r in rows], [r.get(key) for r in rows], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    fig.tight_layout()
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
