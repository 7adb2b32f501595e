"""`quantization: int4_decode`: decode steps read 4-bit weights; the prefill keeps the `dtype` weights.

Why two copies: on a CPU, a decode step multiplies one token per row by every weight of the language
model, so its time is the weights' bytes over the memory bandwidth, and 4-bit weights are a quarter of
bf16's. A prefill multiplies hundreds of rows by each weight: compute-bound, and there torch's 4-bit
kernel, which unpacks the weight in every call, is slower than the bf16 matmul (measured on this CPU
for a 2048 -> 11008 projection: ~2x faster at 2 rows, 2.4x slower at 918; docs/inference.md). So every
linear layer of the decoder keeps its `dtype` weight for calls with many rows and gets a 4-bit copy
for calls with few. The `dtype` weights stay memory-mapped from the checkpoint (transformers' CPU
load), so the copy costs about a quarter of the model's size in RAM, not a second model.

Format and kernels are torch's own: `aten._convert_weight_to_int4pack_for_cpu` and
`aten._weight_int4pack_mm_for_cpu`, the pair torchao's `Int4WeightOnlyConfig` with `Int4CPULayout` calls
(torchao itself is not on this machine's package index). Quantization is the one those kernels expect
(gpt-fast / torchao `groupwise_affine_quantize`): asymmetric, per group of `group_size` input channels,
one bf16 scale and zero each, codes 0..15. Only the decoder layers' projections are quantized: the
vision tower runs once per image (a prefill), and lm_head's logits decide each sampled token.
"""

from __future__ import annotations

from typing import Any

import torch

from vla_r1_ros.policies.settings import INT4_GROUP_SIZES as GROUP_SIZES

# Calls with at most this many rows (tokens x batch) use the 4-bit copy. Measured on this CPU for a
# 2048 -> 11008 projection: 4-bit ahead up to 16 rows, behind from 32 (docs/inference.md).
MAX_DECODE_ROWS = 16
_N_MULTIPLE = 16  # the packing kernel needs output features divisible by 16
_INNER_K_TILES = 1  # the CPU packing's only tiling


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes 0..15 as int32 (N, K), scales (N, K / group_size), zeros (N, K / group_size)) of an (N, K)
    weight, with `weight ≈ (codes - 8) * scale + zero` per group."""
    out_features, in_features = weight.shape
    groups = weight.float().reshape(out_features, in_features // group_size, group_size)
    low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    scales = (high - low).clamp(min=1e-6) / 15
    zeros = low + scales * 8
    codes = ((groups - low) / scales).round().clamp(0, 15).to(torch.int32).reshape(out_features, in_features)
    return codes, scales.squeeze(-1), zeros.squeeze(-1)


def can_quantize(linear: torch.nn.Linear, group_size: int) -> bool:
    return linear.in_features % group_size == 0 and linear.out_features % _N_MULTIPLE == 0


class Int4DecodeLinear(torch.nn.Module):
    """`linear` for calls with many rows; its 4-bit copy (torch's CPU int4 kernel) for up to
    `MAX_DECODE_ROWS` rows. Inputs must be bfloat16 (the kernel's activation type)."""

    def __init__(self, linear: torch.nn.Linear, group_size: int) -> None:
        super().__init__()
        if group_size not in GROUP_SIZES or not can_quantize(linear, group_size):
            raise ValueError(
                f"cannot pack a {linear.in_features} -> {linear.out_features} linear layer in groups of "
                f"{group_size}: in_features must divide by the group size ({', '.join(map(str, GROUP_SIZES))}) "
                f"and out_features by {_N_MULTIPLE}"
            )
        self.linear = linear
        self.group_size = group_size
        with torch.no_grad():
            codes, scales, zeros = quantize_int4(linear.weight, group_size)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, _INNER_K_TILES)
            # (K / group, N, 2): the kernel's layout of scale and zero per group and output channel.
            scales_and_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
        self.register_buffer("packed", packed, persistent=False)
        self.register_buffer("scales_and_zeros", scales_and_zeros, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows > MAX_DECODE_ROWS:
            return self.linear(x)
        flat = x.reshape(rows, x.shape[-1])
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group_size, self.scales_and_zeros)
        if self.linear.bias is not None:
            out = out + self.linear.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


def attach_int4_decode(model: Any, group_size: int) -> int:
    """Give every linear layer of the decoder layers of a loaded Qwen2.5-VL model (`model.model.
    language_model.layers`) a 4-bit copy for decode steps; returns how many were given one. A layer the
    kernel cannot pack (widths, see `can_quantize`) stays as it is."""
    if group_size not in GROUP_SIZES:
        raise ValueError(f"int4 group size must be one of {', '.join(map(str, GROUP_SIZES))}, not {group_size}")
    replaced = 0
    for layer in model.model.language_model.layers:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear) and can_quantize(child, group_size):
                    setattr(parent, name, Int4DecodeLinear(child, group_size))
                    replaced += 1
    return replaced
