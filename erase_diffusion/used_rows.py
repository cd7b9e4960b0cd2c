"""Training only the token-embedding rows the captions use: the same weights as training the whole table, without
the rest of the table's gradient and Adam state.

A row of the token embedding gets a gradient only when its token occurs in a caption the trained encoder reads, and
Adam (no weight decay) leaves a row that has never had a gradient exactly where it was: both moments stay zero, so
its update is 0 / (0 + eps). The captions are fixed before the first step, so the rows that can ever move are known
then. Training those rows as their own parameter ends at bit-identical weights, while the rest of the table needs no
gradient and no Adam state and is never written, so it stays in the model file's page cache and only the rows that
are read become resident. SD 1.5's table is 49408 x 768 (145 MiB): measured, 0.43 GB less at peak.

The same table can tie tokens to another's row (--tie_names: the concept's name reads the anchor's row), in training
and in the saved weights; `untied` reads their own rows again for one forward (--lambda_name_row).
"""

from contextlib import contextmanager

import torch
import torch.nn.functional as F


class UsedRowsEmbedding(torch.nn.Module):
    """A frozen token-embedding table with the rows of `token_ids` trained as one small parameter, `rows`. `alias`:
    (token ids, one token id) or None: those tokens read that one token's row (--tie_names)."""

    def __init__(self, table, token_ids, alias=None):
        super().__init__()
        self.table = table.requires_grad_(False)
        self.alias = alias
        row_ids = torch.unique(self.aliased(token_ids))
        slot = torch.full((table.num_embeddings,), -1, dtype=torch.long)
        slot[row_ids] = torch.arange(len(row_ids))
        self.register_buffer("row_ids", row_ids, persistent=False)
        self.register_buffer("slot", slot, persistent=False)  # token id -> index into rows, -1 for frozen rows
        self.rows = torch.nn.Parameter(table.weight.detach()[row_ids].clone())

    def aliased(self, input_ids):
        if self.alias is None:
            return input_ids
        return torch.where(torch.isin(input_ids, self.alias[0]), self.alias[1], input_ids)

    def forward(self, input_ids):
        input_ids = self.aliased(input_ids)
        slot = self.slot[input_ids]
        trained = F.embedding(slot.clamp(min=0), self.rows)
        # training captions use trained rows only; other prompts (validation, inference) also read frozen ones
        return torch.where((slot >= 0).unsqueeze(-1), trained, self.table(input_ids))

    @torch.no_grad()
    def merged(self):
        """The ordinary embedding with the trained rows written back (only those rows are touched), and the aliased
        tokens' rows set to their token's: an ordinary model that reads them as it did in training."""
        self.table.weight[self.row_ids] = self.rows.to(self.table.weight.dtype)
        if self.alias is not None:
            self.table.weight[self.alias[0]] = self.table.weight[self.alias[1]].clone()
        return self.table


def _embeddings(text_encoder):
    text_encoder = getattr(text_encoder, "module", text_encoder)  # as wrapped for distributed training
    return getattr(text_encoder, "text_model", text_encoder).embeddings  # transformers 5 flattened CLIPTextModel


def train_used_rows(text_encoder, token_ids, alias=None):
    """Make only the rows of `token_ids` (every caption the trained encoder will read) trainable in the table; the
    tokens of `alias` (see UsedRowsEmbedding) read another's row."""
    emb = _embeddings(text_encoder)
    emb.token_embedding = UsedRowsEmbedding(emb.token_embedding, token_ids, alias)


def tied_ids(text_encoder):
    """The token ids that read another's row in training, or None."""
    emb = _embeddings(text_encoder).token_embedding
    return emb.alias[0] if isinstance(emb, UsedRowsEmbedding) and emb.alias is not None else None


@contextmanager
def untied(text_encoder):
    """Within: the tied tokens read their own original rows (never trained: their own rows are frozen)."""
    emb = _embeddings(text_encoder).token_embedding
    alias, emb.alias = emb.alias, None
    try:
        yield
    finally:
        emb.alias = alias


def merge_used_rows(text_encoder):
    """Undo train_used_rows before saving: the encoder is again an ordinary CLIP text model, with the trained rows."""
    emb = _embeddings(text_encoder)
    if isinstance(emb.token_embedding, UsedRowsEmbedding):
        emb.token_embedding = emb.token_embedding.merged()
