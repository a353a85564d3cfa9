"""The elastic BERT supernet: one teacher-shaped set of weights, any subnet by slicing.

Xu et al. 2022, *AutoDistil: Few-shot Task-agnostic Neural Architecture Search for
Distilling Large Language Models* (arXiv 2201.12507). The SuperLM is initialised from the
teacher; a subnet (:class:`~terse.autodistil.space.SubnetConfig`) takes the *front* slice
of every dimension:

* embeddings (word / position / type) and every LayerNorm: first H features
  (LayerNorm normalises over those H only, so hidden elasticity is a slice, not a mask);
* Q, K, V: first ``heads * head_size`` output rows and H input columns; attention output
  dense: the matching columns and first H rows; the head size stays the teacher's;
* FFN: first F rows of the up projection and F columns of the down projection;
* depth: teacher layers ``floor(i * L_teacher / L)`` (:func:`~terse.autodistil.space.layer_map`).

The active subnet is an argument of :meth:`ElasticBert.forward`; the module holds no
"current subnet" state. With the largest subnet the output equals the teacher's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from terse.autodistil.space import SubnetConfig, TeacherShape, layer_map
from terse.core.errors import ConfigError


@dataclass
class EncoderOutput:
    """``hidden``: (B, T, H) last hidden state; ``qkv``: the last layer's Q, K, V, each (B, T, W)."""

    hidden: torch.Tensor
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


class ElasticLayer(nn.Module):
    """One BERT layer (post-LayerNorm) whose weights are sliced per call."""

    def __init__(self, shape: TeacherShape):
        super().__init__()
        H, F_ = shape.hidden_size, shape.intermediate_size
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.attn_out = nn.Linear(H, H)
        self.attn_norm = nn.LayerNorm(H, eps=1e-12)
        self.ffn_in = nn.Linear(H, F_)
        self.ffn_out = nn.Linear(F_, H)
        self.ffn_norm = nn.LayerNorm(H, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, subnet: SubnetConfig, head_size: int, eps: float,
                dropout: float, want_qkv: bool):
        B, T, H = x.shape                    # (B, T, H)
        W, Fw = subnet.num_heads * head_size, subnet.intermediate_size
        q = F.linear(x, self.query.weight[:W, :H], self.query.bias[:W])    # (B, T, W)
        k = F.linear(x, self.key.weight[:W, :H], self.key.bias[:W])
        v = F.linear(x, self.value.weight[:W, :H], self.value.bias[:W])

        def heads(t):  # (B, T, W) -> (B, A, T, d)
            return t.view(B, T, subnet.num_heads, head_size).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask,
                                             dropout_p=dropout if self.training else 0.0)  # (B, A, T, d)
        ctx = ctx.transpose(1, 2).reshape(B, T, W)
        a = F.linear(ctx, self.attn_out.weight[:H, :W], self.attn_out.bias[:H])
        a = F.dropout(a, dropout, self.training)
        x = F.layer_norm(a + x, (H,), self.attn_norm.weight[:H], self.attn_norm.bias[:H], eps)
        h = F.gelu(F.linear(x, self.ffn_in.weight[:Fw, :H], self.ffn_in.bias[:Fw]))   # (B, T, F)
        h = F.dropout(F.linear(h, self.ffn_out.weight[:H, :Fw], self.ffn_out.bias[:H]), dropout, self.training)
        x = F.layer_norm(h + x, (H,), self.ffn_norm.weight[:H], self.ffn_norm.bias[:H], eps)
        return x, ((q, k, v) if want_qkv else None)


class ElasticBert(nn.Module):
    """Teacher-shaped BERT encoder; ``forward(..., subnet=...)`` runs any sliced subnet.

    Args:
        shape: the teacher's shape (the largest subnet).
        dropout: hidden/attention dropout used in training mode (0.1 in the paper).
        layer_norm_eps: the teacher's LayerNorm epsilon.
    """

    def __init__(self, shape: TeacherShape, dropout: float = 0.1, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.shape = shape
        self.dropout = dropout
        self.eps = layer_norm_eps
        H = shape.hidden_size
        self.word_embeddings = nn.Embedding(shape.vocab_size, H)
        self.position_embeddings = nn.Embedding(shape.max_positions, H)
        self.token_type_embeddings = nn.Embedding(shape.type_vocab_size, H)
        self.embed_norm = nn.LayerNorm(H, eps=layer_norm_eps)
        self.layers = nn.ModuleList(ElasticLayer(shape) for _ in range(shape.num_layers))
        self.pooler = nn.Linear(H, H)  # not distilled; sliced and exported so classifiers can use it

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                subnet: SubnetConfig | None = None, token_type_ids: torch.Tensor | None = None,
                return_qkv: bool = False) -> EncoderOutput:
        """Run ``subnet`` (default: the largest) on token ids (B, T); mask (B, T) with 1 = real token."""
        subnet = subnet or self.shape.max_subnet
        subnet.check_fits(self.shape)
        B, T = input_ids.shape
        H = subnet.hidden_size
        positions = torch.arange(T, device=input_ids.device)
        types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        x = (F.embedding(input_ids, self.word_embeddings.weight[:, :H])
             + F.embedding(positions, self.position_embeddings.weight[:, :H])[None]
             + F.embedding(types, self.token_type_embeddings.weight[:, :H]))          # (B, T, H)
        x = F.layer_norm(x, (H,), self.embed_norm.weight[:H], self.embed_norm.bias[:H], self.eps)
        x = F.dropout(x, self.dropout, self.training)
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, None, None, :].bool()   # (B, 1, 1, T): True = real key token
        kept = layer_map(self.shape.num_layers, subnet.num_layers)
        qkv = None
        for position, index in enumerate(kept):
            last = position == len(kept) - 1
            x, qkv_i = self.layers[index](x, mask, subnet, self.shape.head_size, self.eps, self.dropout,
                                          return_qkv and last)
            if last:
                qkv = qkv_i
        return EncoderOutput(x, qkv)

    # ------------------------------------------------------------------ HF interop

    @classmethod
    def from_hf_bert(cls, bert, dropout: float = 0.1) -> ElasticBert:
        """Initialise from a ``transformers`` ``BertModel`` (or a model with ``.bert``)."""
        from terse.autodistil.teacher import teacher_shape

        bert = getattr(bert, "bert", bert)
        shape = teacher_shape(bert.config)
        net = cls(shape, dropout=dropout, layer_norm_eps=bert.config.layer_norm_eps)
        net.load_state_dict(hf_to_elastic(bert.state_dict(), shape.num_layers), strict=True)
        return net

    def subnet_state_dict(self, subnet: SubnetConfig) -> dict[str, torch.Tensor]:
        """The subnet's weights under ``BertModel`` names (a plain, standalone model)."""
        subnet.check_fits(self.shape)
        H, W, Fw = subnet.hidden_size, subnet.num_heads * self.shape.head_size, subnet.intermediate_size
        sd = {
            "embeddings.word_embeddings.weight": self.word_embeddings.weight[:, :H],
            "embeddings.position_embeddings.weight": self.position_embeddings.weight[:, :H],
            "embeddings.token_type_embeddings.weight": self.token_type_embeddings.weight[:, :H],
            "embeddings.LayerNorm.weight": self.embed_norm.weight[:H],
            "embeddings.LayerNorm.bias": self.embed_norm.bias[:H],
            "pooler.dense.weight": self.pooler.weight[:H, :H],
            "pooler.dense.bias": self.pooler.bias[:H],
        }
        for new, old in enumerate(layer_map(self.shape.num_layers, subnet.num_layers)):
            layer, p = self.layers[old], f"encoder.layer.{new}."
            parts = {
                "attention.self.query": (layer.query.weight[:W, :H], layer.query.bias[:W]),
                "attention.self.key": (layer.key.weight[:W, :H], layer.key.bias[:W]),
                "attention.self.value": (layer.value.weight[:W, :H], layer.value.bias[:W]),
                "attention.output.dense": (layer.attn_out.weight[:H, :W], layer.attn_out.bias[:H]),
                "attention.output.LayerNorm": (layer.attn_norm.weight[:H], layer.attn_norm.bias[:H]),
                "intermediate.dense": (layer.ffn_in.weight[:Fw, :H], layer.ffn_in.bias[:Fw]),
                "output.dense": (layer.ffn_out.weight[:H, :Fw], layer.ffn_out.bias[:H]),
                "output.LayerNorm": (layer.ffn_norm.weight[:H], layer.ffn_norm.bias[:H]),
            }
            for module, (weight, bias) in parts.items():
                sd[f"{p}{module}.weight"] = weight
                sd[f"{p}{module}.bias"] = bias
        return {name: t.detach().clone().contiguous() for name, t in sd.items()}


_LAYER_NAMES = {
    "attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
    "attention.output.dense": "attn_out", "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in", "output.dense": "ffn_out", "output.LayerNorm": "ffn_norm",
}
_TOP_NAMES = {
    "embeddings.word_embeddings": "word_embeddings", "embeddings.position_embeddings": "position_embeddings",
    "embeddings.token_type_embeddings": "token_type_embeddings", "embeddings.LayerNorm": "embed_norm",
    "pooler.dense": "pooler",
}


def hf_to_elastic(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Rename a ``BertModel`` state dict to :class:`ElasticBert` names (the pooler is made
    up as identity-free zeros when the teacher has none)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        name = name.removeprefix("bert.")
        stem, _, leaf = name.rpartition(".")
        if stem in _TOP_NAMES:
            out[f"{_TOP_NAMES[stem]}.{leaf}"] = tensor
        elif stem.startswith("encoder.layer."):
            rest = stem.removeprefix("encoder.layer.")
            index, _, sub = rest.partition(".")
            if sub in _LAYER_NAMES and int(index) < num_layers:
                out[f"layers.{index}.{_LAYER_NAMES[sub]}.{leaf}"] = tensor
    if "pooler.weight" not in out:
        H = out["embed_norm.weight"].shape[0]
        out["pooler.weight"] = torch.zeros(H, H)
        out["pooler.bias"] = torch.zeros(H)
    return out


def relation_heads_split(x: torch.Tensor, relation_heads: int) -> torch.Tensor:
    """(B, T, W) -> (B, R, T, d_r) with d_r = W // R; the remainder W - R d_r is dropped
    (as in the AutoDistil code), so any student width works with the teacher's R."""
    B, T, W = x.shape
    d = W // relation_heads
    if d < 1:
        raise ConfigError(f"attention width {W} is smaller than the {relation_heads} relation heads")
    return x[..., : relation_heads * d].reshape(B, T, relation_heads, d).transpose(1, 2)


def relation_logits(x: torch.Tensor, relation_heads: int) -> torch.Tensor:
    """Self-relation scores X X^T / sqrt(d_r) per relation head: (B, T, W) -> (B, R, T, T)."""
    h = relation_heads_split(x.float(), relation_heads)
    return h @ h.transpose(-1, -2) / math.sqrt(h.shape[-1])
