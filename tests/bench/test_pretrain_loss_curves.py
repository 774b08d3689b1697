"""bench/pretrain_loss_curves.py: variant names say what a run changes (head init, update, head rate, clip)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))
from bench import pretrain_loss_curves as curves  # noqa: E402


def test_variant_names_parse_into_the_settings_they_change():
    assert curves.parse_variant("before") == {"torch_default_heads": True, "normalization": "mean",
                                              "head_lr_factor": 1.0, "max_grad_norm": 1.0}
    assert curves.parse_variant("after_head_lr_10_clip_8") == {"torch_default_heads": False,
                                                               "normalization": "masked_tokens",
                                                               "head_lr_factor": 10.0, "max_grad_norm": 8.0}
    assert curves.parse_variant("init_fix_clip_1e9")["max_grad_norm"] == 1e9
    assert curves.parse_variant("reference_head_lr_10")["normalization"] == "reference"
    for bad in ("after_head_lr_x", "middle", "before_head_lr_10", "after_clip_"):
        with pytest.raises(ValueError, match="unknown variant"):
            curves.parse_variant(bad)
