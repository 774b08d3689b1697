"""bench/grad_noise.py: the noise fit, the gradient it measures (the mean loss's scale), and a run on a tiny model."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))
from bench import grad_noise  # noqa: E402

CONFIG = Path(__file__).parents[2] / "configs" / "pretrain.cfg"


def test_the_fit_recovers_signal_and_noise_and_the_clip_free_size():
    masked = [80, 80, 300, 300, 1200]
    signal, noise = grad_noise.fit_noise(masked, [0.25 + 9000.0 / n for n in masked])
    assert signal == pytest.approx(0.25) and noise == pytest.approx(9000.0)
    assert grad_noise.rms_norm(signal, noise, 300) == pytest.approx(math.sqrt(30.25))
    assert grad_noise.rms_norm(-0.1, noise, 300) == pytest.approx(math.sqrt(30.0))  # a negative signal counts as 0
    assert grad_noise.clip_free_size(signal, noise, 1.0) == pytest.approx(9000.0 / 0.75)
    assert grad_noise.clip_free_size(4.0, noise, 1.0) is None  # the true gradient alone exceeds the clip
    with pytest.raises(ValueError, match="two or more update sizes"):
        grad_noise.fit_noise([80, 80], [1.0, 2.0])


@pytest.fixture(scope="module")
def tiny_run(tiny_bert_dir, tiny_text_corpus, tmp_path_factory):
    from spacy_spanbert.pretraining.run import pretrain

    out = tmp_path_factory.mktemp("run") / "run"
    pretrain(CONFIG, out, {"paths.raw_text": str(tiny_text_corpus), "paths.init_model": str(tiny_bert_dir),
                           "training.max_length": 32, "training.batch_size": 4, "training.max_steps": 4,
                           "training.save_steps": 4, "training.warmup_steps": 1, "training.progress_bar": False,
                           "training.precision": "fp32"})
    return out


def test_the_measured_gradient_is_the_summed_losses_over_the_masked_tokens(tiny_run):
    """The mean loss's scale the 1.0 clip sees under grad_normalization "masked_tokens": (MLM mean x MLM targets +
    SBO mean x SBO targets) / masked tokens, with the SBO on (so it is not simply the mean loss)."""
    from spacy.util import load_config, registry

    from spacy_spanbert.pretraining.collator import SpanMaskingCollator
    from spacy_spanbert.pretraining.data import PackedBlocks
    from spacy_spanbert.pretraining.evaluate import load_trained

    model, tokenizer = load_trained(tiny_run / "encoder")
    model.eval()
    assert model.sbo_weight == 1.0
    masking = registry.resolve({"masking": load_config(tiny_run / "config.cfg")["masking"]})["masking"]
    collator = SpanMaskingCollator.from_tokenizer(tokenizer, masking=masking, seed=0, max_sbo_targets=15)
    blocks = PackedBlocks(tiny_run / "data")
    batch = collator([blocks[i] for i in range(4)])
    sq, masked = grad_noise.update_grad_sq_norm(model, batch, "fp32")
    inputs = {k: v for k, v in batch.items() if k != "mask_stats"}
    n_sbo = int(batch["sbo_labels"].numel())
    assert n_sbo > 0 and masked == int((batch["labels"] != -100).sum())

    def grad_sq(sbo_weight):  # norm² of grad(MLM mean + sbo_weight x SBO mean), through the model's own loss
        model.zero_grad(set_to_none=True)
        model.sbo_weight = sbo_weight
        model(**inputs)["loss"].backward()
        return sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.grad is not None)

    # (MLM mean x masked + SBO mean x SBO targets) / masked = MLM mean + (SBO targets / masked) x SBO mean
    assert sq == pytest.approx(grad_sq(n_sbo / masked), rel=1e-4)
    if n_sbo != masked:
        assert sq != pytest.approx(grad_sq(1.0), rel=1e-3)  # not the plain mean loss


def test_measure_writes_the_table_and_plot_and_refuses_a_non_run(tiny_run, tmp_path):
    result = grad_noise.main([f"{tiny_run}:tiny", "--sizes", "2", "4", "--draws", "2", "1",
                              "--output", str(tmp_path / "gn.json")])
    run = result["runs"][0]
    assert [d["blocks"] for d in run["draws"]] == [2, 2, 4] and all(d["grad_norm"] > 0 for d in run["draws"])
    assert run["step"] == 4 and run["masked_per_block"] == pytest.approx(
        sum(d["masked"] for d in run["draws"]) / 8)
    assert run["run_update_masked"] == pytest.approx(4 * run["masked_per_block"])  # batch 4, no accumulation
    assert run["reference_gpu_masked"] == pytest.approx(4096 * 0.15)
    assert run["reference_pre_clip_rms"] == pytest.approx(run["mean_scale_rms_at_reference_update"] / 614.4)
    assert "| tiny | 4 | 3 |" in (tmp_path / "gn.md").read_text()
    assert (tmp_path / "gn.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="spanbert-pretrain output directory"):
        grad_noise.main([str(tmp_path), "--output", str(tmp_path / "x.json")])


def test_a_heads_warmup_run_or_too_few_blocks_is_one_clear_error(tiny_run, tmp_path):
    import shutil

    with pytest.raises(ValueError, match="lower --sizes/--draws") as err:
        grad_noise.measure(tiny_run, "tiny", [2, 100000], [1, 1], seed=0)
    assert "\n" not in str(err.value)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = run / "config.cfg"
    cfg.write_text(cfg.read_text().replace("heads_warmup_steps = 0", "heads_warmup_steps = 5"))
    with pytest.raises(ValueError, match="measure a run without the heads warm-up"):
        grad_noise.measure(run, "tiny", [2, 4], [1, 1], seed=0)
