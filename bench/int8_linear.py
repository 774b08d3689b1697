"""How much faster an int8 Linear layer is than a float32 one on this CPU, at the encoder's own shapes.

Why: `spacy spanbert-quantize` makes only the encoder's Linear layers int8 (`models/quantize.py`); attention, GELU,
LayerNorm, tokenization and spaCy stay as they were. So a pipeline's int8/fp32 words/s can never exceed what int8
buys one Linear layer, and whether that is 1.5x or 2.5x is decided by the CPU (int8 VNNI or not), not by our code.
This times each of the encoder's Linear shapes (query/key/value and attention output, feed-forward in and out) with
its real weights, float32 `torch.nn.Linear` against our `DynamicInt8Linear` (per-channel weights, activations
quantized per call to the bits this CPU gets), then one whole encoder call; each figure is the median of --repeats.

    python bench/int8_linear.py --threads 2
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python bench/int8_linear.py --threads 2 --output bench/results/int8_linear_avx2.json
"""
import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    RESULTS_DIR, machine_info, machine_line, markdown_table, rerun_command, run_cli, shown, write_results,
)
from bench.ner_runs import resolve_encoder  # noqa: E402

# a call as the SpanBERT transformer makes them on a CPU (at most 512 padded wordpieces, hf_encoder.CALL_TOKENS: 3
# windows of 135), and one as large as spacy-transformers' (up to 4,096), where the GEMMs are at their most efficient
DEFAULT_CALLS = ("3x135", "32x135")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default=None, help="HF encoder dir (default: the MiniLM-L6 package or asset)")
    p.add_argument("--calls", nargs="+", default=list(DEFAULT_CALLS),
                   help="encoder calls to time, as WINDOWSxWORDPIECES (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=30, help="timed repeats per figure; the median is kept")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "int8_linear.json")
    args = p.parse_args(argv)
    try:
        args.call_shapes = [tuple(int(n) for n in call.lower().split("x")) for call in args.calls]
    except ValueError:
        p.error(f"--calls {' '.join(args.calls)}: write each call as WINDOWSxWORDPIECES, e.g. 3x135")
    if any(len(shape) != 2 or min(shape) < 1 for shape in args.call_shapes) or args.repeats < 1 or args.threads < 1:
        p.error("--calls need two positive numbers each (e.g. 3x135); --repeats and --threads at least 1")
    return args


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of `fn()` in milliseconds, after three untimed calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def linear_rows(encoder: Any, calls: List[tuple], repeats: int) -> List[Dict[str, Any]]:
    """fp32 against int8 for each distinct Linear shape of the first layer, at each call's rows."""
    import torch

    from spacy_spanbert.models.quantize import DynamicInt8Linear

    layer = encoder.encoder.layer[0]
    linears = {"query/key/value, attention output": layer.attention.self.query,
               "feed-forward in": layer.intermediate.dense, "feed-forward out": layer.output.dense}
    rows = []
    for windows, length in calls:
        for name, linear in linears.items():
            int8 = DynamicInt8Linear.from_float(linear, "int8")
            x = torch.randn(windows, length, linear.in_features)
            with torch.inference_mode():
                fp32_ms = median_ms(lambda: linear(x), repeats)
                int8_ms = median_ms(lambda: int8(x), repeats)
            rows.append({"what": name, "shape": f"{linear.in_features}→{linear.out_features}",
                         "call": f"{windows}x{length}", "fp32_ms": fp32_ms, "int8_ms": int8_ms,
                         "speedup": fp32_ms / int8_ms})
    return rows


def encoder_rows(encoder: Any, calls: List[tuple], repeats: int) -> List[Dict[str, Any]]:
    """One whole encoder call, float32 against its Linear layers in int8 (what `spanbert-quantize` does)."""
    import torch

    from spacy_spanbert.models.quantize import quantize_encoder

    int8 = quantize_encoder(copy.deepcopy(encoder), "int8")
    rows = []
    for windows, length in calls:
        ids = torch.randint(min(1000, encoder.config.vocab_size - 1), encoder.config.vocab_size, (windows, length))
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            fp32_ms = median_ms(lambda: encoder(input_ids=ids, attention_mask=mask), repeats)
            int8_ms = median_ms(lambda: int8(input_ids=ids, attention_mask=mask), repeats)
        rows.append({"what": "whole encoder call", "shape": f"{encoder.config.num_hidden_layers} layers",
                     "call": f"{windows}x{length}", "fp32_ms": fp32_ms, "int8_ms": int8_ms,
                     "speedup": fp32_ms / int8_ms})
    return rows


def render_markdown(result: Dict[str, Any]) -> str:
    rows = [[r["what"], r["shape"], r["call"], f"{r['fp32_ms']:.2f}", f"{r['int8_ms']:.2f}", f"{r['speedup']:.2f}x"]
            for r in result["rows"]]
    return "\n".join([
        "### int8 against float32: one Linear layer and one encoder call",
        "",
        f"Encoder `{Path(result['encoder']).name}`; our `DynamicInt8Linear` (per-channel int8 weights, activations "
        f"quantized per call to {result['activation_bits']} bits on this CPU) against `torch.nn.Linear` in float32, "
        f"with the first layer's real weights; a call of WxL is W windows of L wordpieces. Median of "
        f"{result['repeats']} timed repeats in milliseconds. A pipeline's int8/fp32 words/s stays below the Linear "
        "rows: attention, GELU, LayerNorm, tokenization and spaCy run in float32 either way.",
        "",
        markdown_table(["what", "shape", "call", "fp32 ms", "int8 ms", "int8 speed-up"], rows),
        "",
        machine_line(result["machine"]),
        f"Rerun: `{result['rerun']}`",
    ])


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    import torch
    from transformers import AutoModel

    from spacy_spanbert.models.quantize import activation_bits

    torch.set_num_threads(args.threads)
    encoder_dir = resolve_encoder(args.encoder)
    encoder = AutoModel.from_pretrained(encoder_dir).eval()
    print(f"[int8_linear] {Path(encoder_dir).name}, calls {' '.join(args.calls)}, {args.threads} threads", flush=True)
    rows = linear_rows(encoder, args.call_shapes, args.repeats) + encoder_rows(encoder, args.call_shapes, args.repeats)
    result = {"encoder": shown(encoder_dir), "activation_bits": activation_bits(), "repeats": args.repeats,
              "rows": rows, "machine": machine_info(threads=args.threads),
              "rerun": rerun_command("bench/int8_linear.py", [a for a in (argv if argv is not None else sys.argv[1:])])}
    write_results(args.output, result, render_markdown(result))
    return result


if __name__ == "__main__":
    run_cli(main)
