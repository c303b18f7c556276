"""The pcm-AstroMAE redshift network (published class name ``ViT_Astro``), rebuilt without its code.

Submodule names and registration order reproduce the published state_dict exactly (508 entries),
so the published weights load by name, and the numerics match (exact GELU, LayerNorm eps 1e-6).
Two branches see the 5x32x32 image: a ViTAE-style transformer and ``inception_model`` (a CNN next
to a magnitude MLP); ``concat_block`` maps their 3216 features to the redshift. Odd-looking names
(``PCM``, the doubly registered first convolution) follow the state_dict keys.
What the network computes, and why: docs/model.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGE_SIZE = 32  # side of the square input cutout, px
IN_CHANS = 5  # bands u, g, r, i, z
NUM_MAGNITUDES = 5  # one AB magnitude per band
PATCH_SIZE = 8
EMBED_DIM = 192
NUM_BLOCKS = 12
NUM_HEADS = 3
MLP_RATIO = 4
PCM_GROUPS = 48
LN_EPS = 1e-6  # LayerNorm eps of the transformer (norm1, norm2, fc_norm); BatchNorms keep PyTorch's 1e-5
BRANCH_FEATURES = 1096  # width of the transformer head (vit_block) and of the image CNN output
MAGNITUDE_FEATURES = 1024
HEAD_HIDDEN = 1024


# --------------------------------------------------------------------------- transformer


class PatchEmbed(nn.Module):
    """Non-overlapping 8x8 patches -> tokens ``[B, 16, 192]`` in row-major grid order. Only ``proj`` is
    registered (timm 0.4.12's Identity norm holds no state)."""

    def __init__(self, patch_size: int = PATCH_SIZE, in_chans: int = IN_CHANS, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)  # [B, C, g, g]
        return x.flatten(2).transpose(1, 2)  # [B, g*g, C]


class Attention(nn.Module):
    """Multi-head self-attention whose qkv bias is ``(q_bias, 0, v_bias)``: keys get no bias. The bias vectors
    are registered before the bias-free ``qkv`` and ``proj`` (state_dict order)."""

    def __init__(self, dim: int = EMBED_DIM, num_heads: int = NUM_HEADS) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each [B, heads, N, head_dim]
        q = q * self.scale
        weights = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2."""

    def __init__(self, dim: int = EMBED_DIM, hidden: int = EMBED_DIM * MLP_RATIO) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="none")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PCM(nn.Sequential):
    """Parallel convolution module on the token grid (channels first): grouped 1x1 conv, BN, SiLU, grouped 1x1."""

    def __init__(
        self, dim: int = EMBED_DIM, hidden: int = EMBED_DIM * MLP_RATIO, groups: int = PCM_GROUPS
    ) -> None:
        super().__init__(
            nn.Conv2d(dim, hidden, kernel_size=1, groups=groups),
            nn.BatchNorm2d(hidden),
            nn.SiLU(),
            nn.Conv2d(hidden, dim, kernel_size=1, groups=groups),
        )


class NormalCell(nn.Module):
    """ViTAE normal cell: ``x + attn(norm1(x))``, plus the PCM of the block input on the patch tokens,
    then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int = EMBED_DIM, num_heads: int = NUM_HEADS, groups: int = PCM_GROUPS) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * MLP_RATIO)
        self.PCM = PCM(dim, dim * MLP_RATIO, groups)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        patches = n - 1
        side = int(round(patches**0.5))
        if side * side != patches:
            raise ValueError(f"NormalCell expects 1 + a square number of tokens, got {n}")
        # contiguous(): a permuted (channels-last strided) input would send the grouped 1x1
        # convolution down a different kernel and change the last bits of the result.
        grid = x[:, 1:, :].reshape(b, side, side, c).permute(0, 3, 1, 2).contiguous()
        conv_x = self.PCM(grid).permute(0, 2, 3, 1).reshape(b, patches, c)
        x = x + self.attn(self.norm1(x))
        x = torch.cat((x[:, :1, :], x[:, 1:, :] + conv_x), dim=1)
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------- CNN + magnitudes


class ConvBlock(nn.Module):
    """Conv2d (with bias) -> BatchNorm2d -> ReLU; children named ``conv`` and ``bn``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=padding)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class InceptionBlock(nn.Module):
    """Four-branch inception block: 1x1 | 1x1->3x3 | 1x1->5x5 | maxpool3->1x1 (``4 * width`` channels).
    ``custom=True`` (the published last block) skips branch 3 in forward but keeps its parameters."""

    def __init__(self, in_channels: int, width: int, custom: bool = False) -> None:
        super().__init__()
        self.custom = custom
        self.branch1 = ConvBlock(in_channels, width, kernel_size=1)
        self.branch2 = nn.Sequential(
            ConvBlock(in_channels, width, kernel_size=1),
            ConvBlock(width, width, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            ConvBlock(in_channels, width, kernel_size=1),
            ConvBlock(width, width, kernel_size=5, padding=2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            ConvBlock(in_channels, width, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.custom:
            outs = [self.branch1(x), self.branch2(x), self.branch4(x)]
        else:
            outs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outs, dim=1)


class InceptionMagnitudeModel(nn.Module):
    """``inception_model``: image CNN (1096 features) next to a magnitude MLP (1024 features). ``conv2d_init``
    is also ``vis_inception[0]`` (one object, two state_dict keys, as published)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2d_init = nn.Conv2d(IN_CHANS, 32, kernel_size=1)
        mag: list[nn.Module] = [nn.Linear(NUM_MAGNITUDES, MAGNITUDE_FEATURES)]
        for _ in range(4):
            mag += [nn.ReLU(), nn.Linear(MAGNITUDE_FEATURES, MAGNITUDE_FEATURES)]
        self.magnitude_block = nn.Sequential(*mag)
        self.vis_inception = nn.Sequential(
            self.conv2d_init,  # 0: the same object as conv2d_init
            nn.AvgPool2d(2),  # 1: 32 -> 16
            InceptionBlock(32, 16),  # 2: -> 64 ch
            InceptionBlock(64, 16),  # 3: -> 64 ch
            nn.AvgPool2d(2),  # 4: 16 -> 8
            InceptionBlock(64, 8),  # 5: -> 32 ch
            InceptionBlock(32, 8),  # 6: -> 32 ch
            nn.AvgPool2d(2),  # 7: 8 -> 4
            InceptionBlock(32, 4, custom=True),  # 8: -> 12 ch at 4x4
            nn.Flatten(),  # 9: -> 192
            nn.Linear(12 * 4 * 4, BRANCH_FEATURES),  # 10
            nn.ReLU(),  # 11
            nn.Linear(BRANCH_FEATURES, BRANCH_FEATURES),  # 12
        )

    def forward(self, image: Tensor, magnitude: Tensor) -> Tensor:
        image_features = self.vis_inception(image)
        magnitude_features = self.magnitude_block(magnitude.to(torch.float32))
        return torch.cat((image_features, magnitude_features), dim=1)


# --------------------------------------------------------------------------- whole network


class ViTAstro(nn.Module):
    """pcm-AstroMAE: ``model([image, magnitude]) -> redshift [B, 1]``; no normalisation inside. ``image``
    float32 ``[B, 5, 32, 32]`` (u..z), ``magnitude`` ``[B, 5]`` (float64 as stored, cast to float32)."""

    def __init__(self) -> None:
        super().__init__()
        # Registration order fixes the state_dict order: parameters first, then the children in this order.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, (IMAGE_SIZE // PATCH_SIZE) ** 2 + 1, EMBED_DIM))
        self.fc_norm = nn.LayerNorm(EMBED_DIM, eps=LN_EPS)
        self.head = nn.Linear(EMBED_DIM, EMBED_DIM)
        self.inception_model = InceptionMagnitudeModel()
        self.blocks = nn.ModuleList(NormalCell() for _ in range(NUM_BLOCKS))
        self.patch_embed = PatchEmbed()
        self.vit_block = nn.Sequential(
            nn.Linear(EMBED_DIM, BRANCH_FEATURES),
            nn.ReLU(),
            nn.Linear(BRANCH_FEATURES, BRANCH_FEATURES),
        )
        self.concat_block = nn.Sequential(
            nn.Linear(2 * BRANCH_FEATURES + MAGNITUDE_FEATURES, HEAD_HIDDEN),
            nn.ReLU(),
            nn.Linear(HEAD_HIDDEN, 1),
        )

    def encode(self, image: Tensor) -> Tensor:
        """Tokens ``[B, 17, 192]`` (cls token first) after the 12 blocks."""
        tokens = self.patch_embed(image)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat((cls, tokens), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x

    def forward_transformer(self, image: Tensor) -> Tensor:
        """Transformer branch: image ``[B, 5, 32, 32]`` -> features ``[B, 1096]``."""
        pooled = self.encode(image)[:, 1:, :].mean(dim=1)
        return self.vit_block(self.head(self.fc_norm(pooled)))

    def forward(self, x: Tensor | Sequence[Tensor], magnitude: Tensor | None = None) -> Tensor:
        """Redshift ``[B, 1]`` of ``model([image, magnitude])`` (as published) or ``model(image, magnitude)``."""
        if magnitude is None:
            if not isinstance(x, (list, tuple)) or len(x) != 2:
                raise TypeError("ViTAstro expects [image, magnitude] or (image, magnitude) arguments")
            image, magnitude = x[0], x[1]
        else:
            if not isinstance(x, Tensor):
                raise TypeError("ViTAstro(image, magnitude): image must be a Tensor")
            image = x
        if image.dim() != 4 or tuple(image.shape[1:]) != (IN_CHANS, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"image must be [B, {IN_CHANS}, {IMAGE_SIZE}, {IMAGE_SIZE}], got {list(image.shape)}")
        if magnitude.dim() != 2 or magnitude.shape[1] != NUM_MAGNITUDES:
            raise ValueError(f"magnitude must be [B, {NUM_MAGNITUDES}], got {list(magnitude.shape)}")
        vit_features = self.forward_transformer(image)
        mix_features = self.inception_model(image, magnitude)
        return self.concat_block(torch.cat((vit_features, mix_features), dim=1))


def build_model() -> ViTAstro:
    """A freshly initialised ``ViTAstro`` in the published layout (load weights next)."""
    return ViTAstro()


#: Parameter-name prefixes frozen in the published fine-tuned model.
FROZEN_PREFIXES: tuple[str, ...] = ("cls_token", "pos_embed", "patch_embed.", "blocks.")


def freeze_transformer(model: ViTAstro) -> ViTAstro:
    """Freeze :data:`FROZEN_PREFIXES` as the published fine-tuning did (10,398,057 parameters stay trainable)."""
    for name, param in model.named_parameters():
        if name.startswith(FROZEN_PREFIXES):
            param.requires_grad_(False)
    return model


def count_flops(model: nn.Module, batch_size: int = 1) -> int:
    """FLOPs of one forward pass of ``batch_size`` zero inputs (``FlopCounterMode``: matmuls and convolutions,
    a multiply-add counted as 2; element-wise work not counted). About 221.5 M per sample."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    param = next(model.parameters())
    image = torch.zeros(batch_size, IN_CHANS, IMAGE_SIZE, IMAGE_SIZE, device=param.device)
    magnitude = torch.zeros(batch_size, NUM_MAGNITUDES, dtype=torch.float64, device=param.device)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model([image, magnitude])
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
