"""``FastAstro``: the published ``ViTAstro`` restructured for inference (same weights, same function).

Folded BatchNorms, merged shared-input 1x1 convolutions, a channels-last CNN and the transformer
on one ``[B*17, 192]`` token matrix; outputs agree with the eager model to float32 rounding. It
lives in the model layer because both the torch engines and the ONNX export (``model.onnx`` is
this network) use it, and the model layer cannot import the inference layer.
Reasoning and profiles: docs/inference.md.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# --------------------------------------------------------------------------- attention as one ONNX node
@torch.library.custom_op("cosmic::token_attention", mutates_args=())
def token_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """Multi-head self-attention on token-major ``[B, N, C]`` q, k, v (eager:
    ``scaled_dot_product_attention``). A custom op so that it exports as one ONNX ``Attention`` node with no
    head transposes (docs/inference.md)."""
    b, n, c = q.shape
    d = c // heads

    def heads_first(t: Tensor) -> Tensor:
        return t.reshape(b, n, heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(heads_first(q), heads_first(k), heads_first(v))
    return out.transpose(1, 2).reshape(b, n, c)


@token_attention.register_fake  # the shape function torch.export traces with (registered, never called here)
def _token_attention_shape(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    return torch.empty_like(q)


def _token_attention_onnx(q: Any, k: Any, v: Any, heads: int) -> Any:
    from onnxscript import opset23 as op

    # the op has four outputs (present key/value, scores); only the first is used
    return op.Attention(q, k, v, q_num_heads=heads, kv_num_heads=heads)[0]


#: ``custom_translation_table`` of ``torch.onnx.export`` for the graphs of this module.
ONNX_TRANSLATIONS: dict[Any, Any] = {torch.ops.cosmic.token_attention.default: _token_attention_onnx}


# --------------------------------------------------------------------------- helpers
def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (BatchNorm in eval mode)."""
    w = conv.weight.detach().clone()
    b = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(w.shape[0])
    if bn is None:
        return w, b
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b = (b - bn.running_mean.detach()) * scale + bn.bias.detach()
    return w, b


def _conv(w: Tensor, b: Tensor, padding: int = 0, groups: int = 1) -> nn.Conv2d:
    out_ch, in_per_group, k, _ = w.shape
    conv = nn.Conv2d(in_per_group * groups, out_ch, k, padding=padding, groups=groups)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    return conv


class _FastInception(nn.Module):
    """An inception block with folded BatchNorms and its shared-input 1x1 convolutions merged."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.custom = bool(block.custom)
        heads = [block.branch1, block.branch2[0]] + ([] if self.custom else [block.branch3[0]])
        folded = [_fold_bn(cb.conv, cb.bn) for cb in heads]
        self.width = int(folded[0][0].shape[0])
        self.entry = _conv(torch.cat([w for w, _ in folded]), torch.cat([b for _, b in folded]))
        self.conv3 = _conv(*_fold_bn(block.branch2[1].conv, block.branch2[1].bn), padding=1)
        self.conv5 = None if self.custom else _conv(*_fold_bn(block.branch3[1].conv, block.branch3[1].bn), padding=2)
        self.pool_conv = _conv(*_fold_bn(block.branch4[1].conv, block.branch4[1].bn))

    def forward(self, x: Tensor) -> Tensor:
        w = self.width
        entry = F.relu(self.entry(x))
        b1 = entry[:, :w]
        b2 = F.relu(self.conv3(entry[:, w : 2 * w]))
        b4 = F.relu(self.pool_conv(F.max_pool2d(x, 3, 1, 1)))
        if self.custom:
            return torch.cat((b1, b2, b4), dim=1)
        b3 = F.relu(self.conv5(entry[:, 2 * w : 3 * w]))
        return torch.cat((b1, b2, b3, b4), dim=1)


class _FastCell(nn.Module):
    """One normal cell on a 2-D token matrix ``[B*17, 192]``. ``pcm_vector``: the PCM as broadcast
    multiply-adds on ``[tokens, 48 groups, 16]`` (faster compiled by inductor, slower eager).
    ``onnx_attention``: q, k, v as three Linears and :func:`token_attention`, the export form. Both measured
    in docs/inference.md."""

    def __init__(self, cell: nn.Module, pcm_vector: bool = False, onnx_attention: bool = False) -> None:
        super().__init__()
        self.pcm_vector = pcm_vector
        self.onnx_attention = onnx_attention
        self.norm1 = copy.deepcopy(cell.norm1)
        self.norm2 = copy.deepcopy(cell.norm2)
        attn = cell.attn
        self.heads = int(attn.num_heads)
        self.head_dim = int(attn.head_dim)
        self.qkv = nn.Linear(attn.qkv.in_features, attn.qkv.out_features)
        with torch.no_grad():
            self.qkv.weight.copy_(attn.qkv.weight)
            self.qkv.bias.copy_(torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias)))
        if onnx_attention:
            c = attn.qkv.in_features
            w, bias = self.qkv.weight.detach(), self.qkv.bias.detach()
            self.q, self.k, self.v = (nn.Linear(c, c, bias=(i != 1)) for i in range(3))  # k has no bias
            with torch.no_grad():
                for i, lin in enumerate((self.q, self.k, self.v)):
                    lin.weight.copy_(w[i * c:(i + 1) * c])
                    if lin.bias is not None:
                        lin.bias.copy_(bias[i * c:(i + 1) * c])
            del self.qkv
        self.proj = copy.deepcopy(attn.proj)
        self.fc1 = copy.deepcopy(cell.mlp.fc1)
        self.fc2 = copy.deepcopy(cell.mlp.fc2)
        pcm = cell.PCM
        self.pcm1 = _conv(*_fold_bn(pcm[0], pcm[1]), groups=pcm[0].groups)
        self.pcm2 = _conv(*_fold_bn(pcm[3], None), groups=pcm[3].groups)
        if pcm_vector:
            g = int(pcm[0].groups)
            w1, b1 = self.pcm1.weight.detach(), self.pcm1.bias.detach()  # [768, 4, 1, 1]
            w2, b2 = self.pcm2.weight.detach(), self.pcm2.bias.detach()  # [192, 16, 1, 1]
            hid, per_in = w1.shape[0] // g, w1.shape[1]
            out, per_hid = w2.shape[0] // g, w2.shape[1]
            # w1[i] [groups, hidden]: input channel i of every group times its hidden outputs
            self.register_buffer("pcm_w1", w1.reshape(g, hid, per_in).permute(2, 0, 1).contiguous(), persistent=False)
            self.register_buffer("pcm_b1", b1.reshape(g, hid).clone(), persistent=False)
            self.register_buffer("pcm_w2", w2.reshape(g, out, per_hid).clone(), persistent=False)
            self.register_buffer("pcm_b2", b2.reshape(g, out).clone(), persistent=False)

    def _pcm_vector(self, tokens: Tensor) -> Tensor:
        """The PCM on patch tokens ``[B, 16, C]`` as broadcast multiply-adds (class doc)."""
        b, p, c = tokens.shape
        w1 = self.pcm_w1
        xv = tokens.reshape(b * p, w1.shape[1], w1.shape[0])  # [tokens, groups, in per group]
        h = self.pcm_b1 + xv[:, :, 0:1] * w1[0]
        for i in range(1, w1.shape[0]):
            h = h + xv[:, :, i : i + 1] * w1[i]
        h = F.silu(h)  # [tokens, groups, hidden per group]
        return ((h.unsqueeze(2) * self.pcm_w2).sum(-1) + self.pcm_b2).reshape(b, p, c)

    def forward(self, x: Tensor, batch: int, side: int) -> Tensor:
        n = side * side + 1
        c = x.shape[-1]
        x3 = x.view(batch, n, c)
        if self.pcm_vector:
            conv = self._pcm_vector(x3[:, 1:, :])
        else:
            # PCM on the patch tokens: an NHWC view of [B, 16, C] is the token layout itself.
            grid = x3[:, 1:, :].reshape(batch, side, side, c).permute(0, 3, 1, 2)
            grid = grid.contiguous(memory_format=torch.channels_last)
            conv = self.pcm2(F.silu(self.pcm1(grid)))  # channels-last [B, C, s, s]
            conv = conv.permute(0, 2, 3, 1).reshape(batch, n - 1, c)
        if self.onnx_attention:
            h = self.norm1(x)
            q, k, v = (lin(h).view(batch, n, c) for lin in (self.q, self.k, self.v))
            att = token_attention(q, k, v, self.heads).reshape(batch * n, c)
        else:
            qkv = self.qkv(self.norm1(x)).view(batch, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            att = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # scale = head_dim**-0.5
            att = att.transpose(1, 2).reshape(batch * n, c)
        x = x + self.proj(att)
        x3 = x.view(batch, n, c)
        x = torch.cat((x3[:, :1], x3[:, 1:] + conv), dim=1).view(batch * n, c)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class FastAstro(nn.Module):
    """``ViTAstro`` restructured for inference:
    ``forward(image float32 [B,5,32,32], magnitude [B,5]) -> [B]``. ``pcm_vector`` (compiled use) and
    ``onnx_attention`` (export): see :class:`_FastCell`."""

    def __init__(self, model: nn.Module, pcm_vector: bool = False, onnx_attention: bool = False) -> None:
        super().__init__()
        model = model.eval()
        self.patch = copy.deepcopy(model.patch_embed.proj)
        self.cls_pos = nn.Parameter((model.cls_token + model.pos_embed[:, :1]).detach().clone(), requires_grad=False)
        self.pos = nn.Parameter(model.pos_embed[:, 1:].detach().clone(), requires_grad=False)
        self.cells = nn.ModuleList(_FastCell(c, pcm_vector, onnx_attention) for c in model.blocks)
        self.fc_norm = copy.deepcopy(model.fc_norm)
        self.head = copy.deepcopy(model.head)
        self.vit1 = copy.deepcopy(model.vit_block[0])
        self.vit2 = copy.deepcopy(model.vit_block[2])
        inc = model.inception_model
        vis = inc.vis_inception
        self.conv_init = copy.deepcopy(vis[0])
        self.inc = nn.ModuleList(_FastInception(vis[i]) for i in (2, 3, 5, 6, 8))
        self.img1 = copy.deepcopy(vis[10])
        self.img2 = copy.deepcopy(vis[12])
        self.mag = nn.ModuleList(copy.deepcopy(inc.magnitude_block[i]) for i in (0, 2, 4, 6, 8))
        self.cat1 = copy.deepcopy(model.concat_block[0])
        self.cat2 = copy.deepcopy(model.concat_block[2])
        self.requires_grad_(False)

    def transformer(self, image: Tensor) -> Tensor:
        b = image.shape[0]
        tokens = self.patch(image)  # [B, C, 4, 4]
        side = tokens.shape[-1]
        c = tokens.shape[1]
        tokens = tokens.flatten(2).transpose(1, 2) + self.pos  # [B, 16, C]
        x = torch.cat((self.cls_pos.expand(b, -1, -1), tokens), dim=1).reshape(b * (side * side + 1), c)
        for cell in self.cells:
            x = cell(x, b, side)
        pooled = x.view(b, side * side + 1, c)[:, 1:].mean(dim=1)
        return self.vit2(F.relu(self.vit1(self.head(self.fc_norm(pooled)))))

    def cnn(self, image: Tensor) -> Tensor:
        x = self.conv_init(image.contiguous(memory_format=torch.channels_last))
        x = F.avg_pool2d(x, 2)
        x = self.inc[1](self.inc[0](x))
        x = F.avg_pool2d(x, 2)
        x = self.inc[3](self.inc[2](x))
        x = F.avg_pool2d(x, 2)
        x = self.inc[4](x)
        x = x.contiguous().flatten(1)  # NCHW flatten order, as published
        return self.img2(F.relu(self.img1(x)))

    def magnitudes(self, magnitude: Tensor) -> Tensor:
        x = magnitude.to(self.fc_norm.weight.dtype)  # float32 (bf16 in the bf16 engine)
        x = self.mag[0](x)
        for lin in self.mag[1:]:
            x = lin(F.relu(x))
        return x

    def forward(self, image: Tensor, magnitude: Tensor) -> Tensor:
        feats = torch.cat((self.transformer(image), self.cnn(image), self.magnitudes(magnitude)), dim=1)
        return self.cat2(F.relu(self.cat1(feats))).reshape(-1)
