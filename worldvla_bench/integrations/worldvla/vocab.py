"""Token id layout of the one shared vocabulary (text, image and action tokens).

Ids, in order (our own layout; a converted WorldVLA checkpoint needs an id map):

- 0..7 specials: pad, bos, end of turn (eot), image begin ("break"), image end, row newline,
  begin of action (boa), end of action (eoa);
- grid tokens for image sides 1..max_grid (the same family is used for height and width);
- 256 text tokens, one per UTF-8 byte;
- `n_action_bins` action value tokens (bin 0..n_action_bins-1);
- `codebook_size` image code tokens (VQ code 0..codebook_size-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

N_TEXT_TOKENS = 256


@dataclass(frozen=True)
class Vocab:
    """Id ranges of the shared vocabulary; see the module docstring for the layout."""

    codebook_size: int
    max_grid: int = 64
    n_action_bins: int = 255

    PAD: ClassVar[int] = 0
    BOS: ClassVar[int] = 1
    EOT: ClassVar[int] = 2
    IMAGE_BEGIN: ClassVar[int] = 3
    IMAGE_END: ClassVar[int] = 4
    NEWLINE: ClassVar[int] = 5
    BOA: ClassVar[int] = 6
    EOA: ClassVar[int] = 7
    N_SPECIAL: ClassVar[int] = 8

    @property
    def grid_offset(self) -> int:
        return self.N_SPECIAL

    @property
    def text_offset(self) -> int:
        return self.grid_offset + self.max_grid

    @property
    def action_offset(self) -> int:
        return self.text_offset + N_TEXT_TOKENS

    @property
    def image_offset(self) -> int:
        return self.action_offset + self.n_action_bins

    @property
    def size(self) -> int:
        """Number of token ids (the embedding and output size of the transformer)."""
        return self.image_offset + self.codebook_size

    @property
    def action_ids(self) -> range:
        return range(self.action_offset, self.action_offset + self.n_action_bins)

    @property
    def image_ids(self) -> range:
        return range(self.image_offset, self.image_offset + self.codebook_size)

    def grid_token(self, n: int) -> int:
        """Token of an image side of `n` codes (1 <= n <= max_grid)."""
        if not 1 <= n <= self.max_grid:
            raise ValueError(f"grid side {n} outside 1..{self.max_grid}")
        return self.grid_offset + n - 1

    def grid_value(self, token: int) -> int:
        """Inverse of `grid_token`."""
        n = token - self.grid_offset + 1
        if not 1 <= n <= self.max_grid:
            raise ValueError(f"token {token} is not a grid token")
        return n

