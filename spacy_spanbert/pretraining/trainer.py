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

from . import checkpoint as ckpt
from .model import SpanBertForPretraining


class SpanBertTrainer(Trainer):
    """Trainer whose checkpoints are OUTPUT_DIR/checkpoints/step-N, published atomically, keeping the last K."""

    def __init__(self, *args, run_dir: Path, keep_checkpoints: int, save_tokenizer, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_dir = Path(run_dir)
        self.keep_checkpoints = keep_checkpoints
        self.save_tokenizer = save_tokenizer
        self._reset_stats()

    # --- loss and statistics -------------------------------------------------------------------------------
    def _reset_stats(self) -> None:
        self._stats = {"mlm": 0.0, "sbo": 0.0, "micro": 0, "tokens": 0, "mask": 0, "t0": time.perf_counter()}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mask_stats = inputs.pop("mask_stats", None)
        outputs = model(**inputs)
        if model.training:
            # kept as tensors: no device sync per step, read out at logging time
            self._stats["mlm"] = self._stats["mlm"] + outputs["mlm_loss"]
            self._stats["sbo"] = self._stats["sbo"] + outputs["sbo_loss"]
            self._stats["micro"] += 1
            self._stats["tokens"] = self._stats["tokens"] + inputs["attention_mask"].sum()
            if mask_stats is not None:
                self._stats["mask"] = self._stats["mask"] + mask_stats
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def log(self, logs, start_time=None):
        s = self._stats
        if "loss" in logs and s["micro"]:
            mask = s["mask"].tolist() if torch.is_tensor(s["mask"]) else [0, 0, 0, 0]
            n_pieces, n_masked, n_spans, n_words = (int(x) for x in mask)
            logs["lr"] = logs.get("learning_rate")
            logs["mlm_loss"] = round(float(s["mlm"]) / s["micro"], 4)
            logs["sbo_loss"] = round(float(s["sbo"]) / s["micro"], 4)
            tokens = float(s["tokens"]) * self.args.world_size
            logs["tokens_per_s"] = round(tokens / (time.perf_counter() - s["t0"]), 1)
            logs["masked_ratio"] = round(n_masked / max(n_pieces, 1), 4)
            logs["mean_span_len_words"] = round(n_words / max(n_spans, 1), 3)
            self._reset_stats()
        super().log(logs, start_time)

    # --- checkpoints -----------------------------------------------------------------------------------------
    def _get_output_dir(self, trial):
        return str(ckpt.checkpoints_dir(self.run_dir) / f".tmp-step-{self.state.global_step}")

    def _save(self, output_dir=None, state_dict=None):
        model: SpanBertForPretraining = self.accelerator.unwrap_model(self.model)
        output_dir = Path(output_dir)
        model.save_encoder(output_dir / "encoder", self.save_tokenizer)
        model.save_heads(output_dir)

    def _save_checkpoint(self, model, trial):
        staging = Path(self._get_output_dir(trial))
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # leftovers of a save that crashed at this step
        self.accelerator.wait_for_everyone()
        super()._save_checkpoint(model, trial)  # writes staging/checkpoint-N (every rank its RNG state)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            written = next(staging.glob("checkpoint-*"))
            final = ckpt.checkpoints_dir(self.run_dir) / f"step-{self.state.global_step}"
            ckpt.publish(written, final)
            shutil.rmtree(staging, ignore_errors=True)
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
            kept = [l for l in self.path.read_text().splitlines() if l and json.loads(l)["step"] <= state.global_step]
            self.path.write_text("".join(l + "\n" for l in kept))

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

    rows = [json.loads(l) for l in Path(log_path).read_text().splitlines() if l.strip()]
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
