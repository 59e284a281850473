"""WorldVLA core (arXiv 2506.21539): one autoregressive transformer over text, image and action
tokens, trained as an action model and a world model, with a small VQ-VAE image tokenizer.

Modules: `config` (sizes, presets), `vocab` (token ids), `action_tokenizer`, `text_tokenizer`,
`vq` (VQ-VAE), `image_tokenizer` (image token layout), `sequence` (prompts, samples, padding),
`masks` (causal and action attention masks), `transformer` (model, KV cache, loss),
`generation` (cached generation, greedy or sampled), `model` (the `WorldVLA` facade); training in
`training` (its API) over `train_config`, `demo_data`, `checkpoints`, `trainer`, `loss_curves`,
`train_cli`; `policy` (the `worldvla` policy), `world_model` (the `worldvla` world model),
`hf_policy`, `hf_world_model`, `chameleon_adapter` and `vqgan_decoder` (the released
checkpoints: policy and world model `worldvla_hf`),
`ablation` (the paper's ablation grid), `claims` (its tables of the paper's claims), `commands`
(the CLI commands this integration registers through entry points, as any user's package
would).

The names below are re-exported lazily: importing this package (for its light `commands`
module, say) imports no torch until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ACTION_MAX": "action_tokenizer",
    "ACTION_MIN": "action_tokenizer",
    "ACTION_PROMPT": "sequence",
    "ActionLayout": "action_tokenizer",
    "ActionGeneration": "generation",
    "ActionTokenizer": "action_tokenizer",
    "Batch": "sequence",
    "ByteTokenizer": "text_tokenizer",
    "GenerationOutput": "generation",
    "ImageGeneration": "generation",
    "KVCache": "transformer",
    "PRESETS": "config",
    "RELEASED_LAYOUT": "action_tokenizer",
    "Sample": "sequence",
    "Sampling": "generation",
    "TransformerConfig": "config",
    "VQConfig": "config",
    "VQVAE": "vq",
    "Vocab": "vocab",
    "WORLD_PROMPT": "sequence",
    "WorldVLA": "model",
    "WorldVLAConfig": "config",
    "WorldVLATokenizer": "sequence",
    "WorldVLATransformer": "transformer",
    "attention_mask": "masks",
    "class_weights": "transformer",
    "codes_to_tokens": "image_tokenizer",
    "collate": "sequence",
    "derive_seed": "generation",
    "forward_sequence": "generation",
    "generate": "generation",
    "generate_actions": "generation",
    "generate_image": "generation",
    "greedy_generate": "generation",
    "image_token_count": "image_tokenizer",
    "images_to_tensor": "vq",
    "isolation_start": "masks",
    "lm_loss": "transformer",
    "pad_sequences": "sequence",
    "position_ids": "masks",
    "preset": "config",
    "tensor_to_images": "vq",
    "tiny_layout": "action_tokenizer",
    "tokens_to_codes": "image_tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
