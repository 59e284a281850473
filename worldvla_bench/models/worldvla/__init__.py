"""WorldVLA core (arXiv 2506.21539): one autoregressive transformer over text, image and action
tokens, trained as an action model and a world model, with a small VQ-VAE image tokenizer.

Modules: `config` (sizes, presets), `vocab` (token ids), `action_tokenizer`, `text_tokenizer`,
`vq` (VQ-VAE), `image_tokenizer` (image token layout), `sequence` (prompts, samples, padding),
`masks` (causal and action attention masks), `transformer` (model, KV cache, loss),
`generation` (greedy cached generation), `model` (the `WorldVLA` facade).
"""

from worldvla_bench.models.worldvla.action_tokenizer import (
    ACTION_MAX,
    ACTION_MIN,
    ActionTokenizer,
)
from worldvla_bench.models.worldvla.config import (
    PRESETS,
    TransformerConfig,
    VQConfig,
    WorldVLAConfig,
    preset,
)
from worldvla_bench.models.worldvla.generation import (
    ActionGeneration,
    GenerationOutput,
    ImageGeneration,
    forward_sequence,
    generate_actions,
    generate_image,
    greedy_generate,
)
from worldvla_bench.models.worldvla.image_tokenizer import (
    codes_to_tokens,
    image_token_count,
    tokens_to_codes,
)
from worldvla_bench.models.worldvla.masks import attention_mask, isolation_start, position_ids
from worldvla_bench.models.worldvla.model import WorldVLA
from worldvla_bench.models.worldvla.sequence import (
    ACTION_PROMPT,
    WORLD_PROMPT,
    Batch,
    Sample,
    WorldVLATokenizer,
    collate,
    pad_sequences,
)
from worldvla_bench.models.worldvla.text_tokenizer import ByteTokenizer
from worldvla_bench.models.worldvla.transformer import (
    KVCache,
    WorldVLATransformer,
    class_weights,
    lm_loss,
)
from worldvla_bench.models.worldvla.vocab import Vocab
from worldvla_bench.models.worldvla.vq import VQVAE, images_to_tensor, tensor_to_images

__all__ = [
    "ACTION_MAX",
    "ACTION_MIN",
    "ACTION_PROMPT",
    "PRESETS",
    "VQVAE",
    "WORLD_PROMPT",
    "ActionGeneration",
    "ActionTokenizer",
    "Batch",
    "ByteTokenizer",
    "GenerationOutput",
    "ImageGeneration",
    "KVCache",
    "Sample",
    "TransformerConfig",
    "VQConfig",
    "Vocab",
    "WorldVLA",
    "WorldVLAConfig",
    "WorldVLATokenizer",
    "WorldVLATransformer",
    "attention_mask",
    "class_weights",
    "codes_to_tokens",
    "collate",
    "forward_sequence",
    "generate_actions",
    "generate_image",
    "greedy_generate",
    "image_token_count",
    "images_to_tensor",
    "isolation_start",
    "lm_loss",
    "pad_sequences",
    "position_ids",
    "preset",
    "tensor_to_images",
    "tokens_to_codes",
]
