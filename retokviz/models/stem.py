"""The Local Coherence Bias of ImagePiece, read as a convolutional stem that replaces the 16 x 16 patchify.

A ViT's patch embedding cuts the image into disjoint 16 x 16 squares and projects each one alone, so two
neighbouring patches of the same wall share no pixels. The stem below sees overlapping windows instead: four 3 x 3
convolutions, each with stride 2, batch norm and ReLU (16 x down-sampling in all), then a 1 x 1 projection to the
embedding width. Each token's receptive field then spans its neighbours, neighbouring tokens of one region get
similar features, and ImagePiece's merging groups them into one piece naturally.

    model = timm.create_model("deit_small_patch16_224", num_classes=10)
    rv.use_coherence_stem(model)          # one call: model.patch_embed is now a CoherenceStem; train it

Channel widths double per stage and end at the embedding width: C/8, C/4, C/2, C for C = 384 (as in the conv
stems of Xiao et al., "Early Convolutions Help Transformers See Better", 2021). For a patch size of 2^m < 16 the
first m convolutions have stride 2 and the others stride 1, so there are always four 3 x 3 convolutions. The stem
adds parameters that the checkpoint of a patchify ViT doesn't have: it needs training.

The model is switched to timm's dynamic image size, so it accepts any image whose sides are multiples of the patch
size: the position embedding is resampled to the new grid by timm (unchanged at the model's own size).
"""
from __future__ import annotations

from typing import Any

from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from retokviz.patch import UnsupportedModelError, model_name

NUM_CONVS = 4


class CoherenceStem(nn.Module):
    """Four 3 x 3 convolutions (stride 2 each for 16 px patches) with norm and ReLU, then a 1 x 1 projection.

    Speaks the part of timm's `PatchEmbed` interface that a VisionTransformer and retokviz use
    (`img_size`, `patch_size`, `grid_size`, `num_patches`, `dynamic_feat_size`, `feat_ratio`).

    Args:
        embed_dim: C, the width of the tokens it makes.
        patch_size: the down-sampling factor, a power of two from 2 to 16.
        img_size: the model's native image size (rows, cols), which defines `grid_size`.
        in_chans: image channels.
        output_nhwc: return [B, rows, cols, C] (what a dynamic-size timm ViT expects) instead of [B, P, C].
    """

    def __init__(
        self,
        embed_dim: int,
        patch_size: int = 16,
        img_size: tuple[int, int] = (224, 224),
        in_chans: int = 3,
        output_nhwc: bool = True,
    ) -> None:
        super().__init__()
        strides = _strides(patch_size)
        widths = [max(embed_dim >> (NUM_CONVS - 1 - i), 8) for i in range(NUM_CONVS)]
        layers: list[nn.Module] = []
        channels = in_chans
        for width, stride in zip(widths, strides):
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=1)
        self.patch_size = (patch_size, patch_size)
        self.img_size = tuple(img_size)
        self.grid_size = self.dynamic_feat_size(self.img_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.output_nhwc = output_nhwc

    def feat_ratio(self, as_scalar: bool = True) -> int | tuple[int, int]:
        return self.patch_size[0] if as_scalar else self.patch_size

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        """The patch grid (rows, cols) for an image of `img_size` (rows, cols)."""
        return img_size[0] // self.patch_size[0], img_size[1] // self.patch_size[1]

    def forward(self, images: Tensor) -> Tensor:
        """images: [B, 3, H, W] with H and W multiples of the patch size -> [B, H/p, W/p, C] (or [B, P, C])."""
        height, width = images.shape[-2:]
        step = self.patch_size[0]
        if height % step or width % step:
            raise ValueError(
                f"the coherence stem down-samples by {step}: image sides must be multiples of {step}, "
                f"got {height} x {width} (e.g. {height // step * step or step} x {width // step * step or step})"
            )
        x = self.proj(self.convs(images)).permute(0, 2, 3, 1)      # [B, rows, cols, C]
        return x if self.output_nhwc else x.flatten(1, 2)


def _strides(patch_size: Any) -> list[int]:
    """Strides of the four convolutions for a patch size of 2^m: m twos, then ones."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size not in (2, 4, 8, 16):
        raise ValueError(
            f"the coherence stem has {NUM_CONVS} convolutions of stride at most 2, so it makes patches of "
            f"2, 4, 8 or 16 px; got patch size {patch_size!r}"
        )
    halvings = patch_size.bit_length() - 1
    return [2] * halvings + [1] * (NUM_CONVS - halvings)


def use_coherence_stem(model: nn.Module) -> nn.Module:
    """Replace a timm ViT's patch embedding by a `CoherenceStem` of the same width and patch size, in place.

    The new stem is freshly initialised: train the model afterwards. The model is switched to timm's dynamic image
    size, so it takes any image whose sides are multiples of the patch size. A model that has the stem already is
    returned as it is (calling this twice changes nothing).

    Returns:
        the same model.

    Raises:
        UnsupportedModelError: not a timm VisionTransformer, or its patches are not square.
        ValueError: its patch size is not 2, 4, 8 or 16 px (e.g. DINOv2's 14 px).
    """
    name = model_name(model)
    if not isinstance(model, VisionTransformer):
        raise UnsupportedModelError(f"{name}: the coherence stem replaces the patch embedding of a timm ViT")
    if has_coherence_stem(model):
        return model
    old = model.patch_embed
    rows, cols = old.patch_size
    if rows != cols:
        raise UnsupportedModelError(f"{name}: the coherence stem makes square patches, this model's are {rows}x{cols}")
    in_chans = old.proj.in_channels if hasattr(old, "proj") else 3
    stem = CoherenceStem(model.embed_dim, rows, old.img_size, in_chans)
    device = next(old.parameters()).device
    dtype = next(old.parameters()).dtype
    model.patch_embed = stem.to(device=device, dtype=dtype)
    model.dynamic_img_size = True
    return model


def has_coherence_stem(model: nn.Module) -> bool:
    """Whether `model.patch_embed` is a CoherenceStem."""
    return isinstance(getattr(model, "patch_embed", None), CoherenceStem)


__all__ = ["CoherenceStem", "use_coherence_stem", "has_coherence_stem"]
