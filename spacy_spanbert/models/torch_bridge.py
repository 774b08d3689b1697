"""What our PyTorchWrapper bridges share: per-doc token vectors as one flat torch matrix (with each row group's offset
into it and the way back), a module's weights as CPU tensors for safetensors, and the metadata in its header."""
import json
import struct
from typing import Any, Callable, Dict, List, Tuple

import numpy
import torch
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats2d, Ints1d


def flat_tokens(model: Model, vectors: List[Floats2d], rows_per_doc: Ints1d, n_rows: int,
                is_train: bool) -> Tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], List[Floats2d]]]:
    """The docs' token vectors as one (n_tokens, width) tensor on the wrapper's device; for every row of a ragged
    per-doc input (`rows_per_doc` rows for each doc), the offset of its doc's first token; and the function that
    turns the flat matrix's gradient back into one array per doc. `n_rows` = sum(rows_per_doc), known on the host.

    *Shape:* vectors [(doc_len, width), ...] -> tokens (n_tokens, width), offsets (sum(rows_per_doc),)."""
    ops = model.ops
    lengths = [int(v.shape[0]) for v in vectors]
    device = model.shims[0].device
    tokens = xp2torch(ops.flatten(vectors) if vectors else ops.alloc2f(0, 0), requires_grad=is_train, device=device)
    doc_starts = torch.tensor(numpy.cumsum([0] + lengths[:-1]), dtype=torch.long, device=device)
    counts = xp2torch(ops.asarray1i(rows_per_doc), device=device).long()
    offsets = torch.repeat_interleave(doc_starts, counts, output_size=n_rows)

    def backprop(d_tokens: torch.Tensor) -> List[Floats2d]:
        return ops.unflatten(ops.asarray2f(torch2xp(d_tokens, ops=ops)), ops.asarray1i(lengths))

    return tokens, offsets, backprop


def cpu_state(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The module's state dict as detached, contiguous CPU tensors: what safetensors saves."""
    return {key: value.detach().contiguous().cpu() for key, value in module.state_dict().items()}


def safetensors_metadata(data: bytes) -> Dict[str, Any]:
    """The `__metadata__` of safetensors bytes (8-byte little-endian header length, then the JSON header)."""
    (header_len,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + header_len].decode("utf8")).get("__metadata__", {})


def tensor_outputs(model: Model, inputs_outputs: Tuple[Any, Any], is_train: bool) -> Tuple[Floats2d, Callable]:
    """A PyTorchWrapper `convert_outputs` for a module returning one 2d float tensor: a float32 array on the model's
    device (also when autocast computed it in half precision), and the backprop that hands the tensor its
    gradient."""
    _, output = inputs_outputs

    def backprop(d_output: Floats2d) -> ArgsKwargs:
        grad = xp2torch(d_output, device=output.device).to(output.dtype)
        return ArgsKwargs(args=(output,), kwargs={"grad_tensors": grad})

    return model.ops.asarray2f(torch2xp(output.float(), ops=model.ops)), backprop
