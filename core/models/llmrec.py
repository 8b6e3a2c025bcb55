"""The E4SRec-style LLM recommender (docs/method.md section 2), one class for teacher and student.

Input to the LLM: `[prompt before {items}][one vector per item][prompt after {items}]`. Item
vectors are rows of the frozen SASRec item table passed through a trainable linear `input_map`
into the LLM's hidden size; the prompt parts are ordinary token embeddings, computed once (the
vocabulary table is then dropped). The hidden state at the last position, after the final norm,
goes through a trainable linear `score_head` back to the item-table size: that is the user
vector, and every item's score is its dot product with the item table. Teacher and student differ
only by the backbone's depth; distillation combines two instances, it does not subclass them.

Padding: item ids are left-padded, so a row reads [prefix][padding][items][suffix]; the backbone
derives positions from the attention mask, so padding never changes a result. The prefix is the
same for every row: the backbone runs it once per batch and shares its keys and values.
Layer index convention (the backbone's, stated once): 0 = input embeddings, l = the residual stream
after decoder layer l (before the final norm), num_layers + 1 = the final-norm output.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LLMRec(nn.Module):
    """Sequential recommender over a (truncated, possibly LoRA-wrapped) decoder backbone."""

    def __init__(self, backbone: nn.Module, item_table: Tensor, prompt: str, adapter_layers: Sequence[int] = ()):
        super().__init__()
        if "{items}" not in prompt:
            raise ValueError("rec.prompt: must contain the placeholder {items}")
        self.backbone = backbone
        hidden, item_dim = backbone.hidden_size, item_table.shape[1]
        self.register_buffer("item_table", item_table.detach().float().clone(), persistent=False)
        self.input_map = nn.Linear(item_dim, hidden)
        self.score_head = nn.Linear(hidden, item_dim)
        # SLMRec's multiple supervision: one linear adapter per intermediate block boundary, reading
        # that layer's state through the (shared) final norm, so it is scored like the final head.
        self.adapter_layers = tuple(adapter_layers)
        self.adapters = nn.ModuleList(nn.Linear(hidden, item_dim) for _ in self.adapter_layers)
        before, after = prompt.split("{items}", 1)
        with torch.no_grad():
            self.register_buffer("prefix", backbone.embed_text(before, bos=True).detach().clone(), persistent=False)
            self.register_buffer("suffix", backbone.embed_text(after, bos=False).detach().clone(), persistent=False)
        backbone.drop_vocabulary()  # the 49k-row table is not needed per step

    @property
    def num_layers(self) -> int:
        return self.backbone.num_layers

    @property
    def n_items(self) -> int:
        return self.item_table.shape[0] - 1

    def _inputs(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """Embeddings (B, L + S, H) and mask (B, L + S) of the items and the prompt's suffix, for
        left-padded item ids (B, L); the prefix is shared by every row and run once per batch."""
        item_vectors = self.input_map(self.item_table[items])  # (B, L, H)
        suffix = self.suffix.to(item_vectors.dtype).expand(items.shape[0], -1, -1)  # (B, S, H)
        embeds = torch.cat([item_vectors, suffix], dim=1)
        mask = torch.cat([(items != 0).long(), items.new_ones(items.shape[0], suffix.shape[1])], dim=1)
        return embeds, mask

    def last_states(self, items: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """Last-position hidden states (B, H) of the requested layers, in the order asked."""
        embeds, mask = self._inputs(items)
        return self.backbone(embeds, mask, list(layers), shared_prefix=self.prefix, last_position=True)

    def head(self, final_state: Tensor) -> Tensor:
        """User vectors (B, item_dim) from final-norm states (B, H)."""
        return self.score_head(final_state)

    def adapter_vectors(self, states: Sequence[Tensor]) -> list[Tensor]:
        """User vectors (B, item_dim) from the pre-norm states of `adapter_layers`, one per adapter."""
        return [adapter(self.backbone.norm(h)) for adapter, h in zip(self.adapters, states)]

    def user_vectors(self, items: Tensor) -> Tensor:
        """(B, item_dim) user vectors for left-padded item ids (B, L)."""
        return self.head(self.last_states(items, [self.num_layers + 1])[0])

    def scores(self, user_vectors: Tensor) -> Tensor:
        """(B, n_items + 1) scores; the padding column is -inf so it is never predicted."""
        logits = user_vectors.float() @ self.item_table.T
        logits[:, 0] = float("-inf")
        return logits

    def loss(self, items: Tensor, targets: Tensor) -> Tensor:
        """Full-softmax cross-entropy over all items for targets (B,) in 1..n_items."""
        return F.cross_entropy(self.scores(self.user_vectors(items)), targets)
