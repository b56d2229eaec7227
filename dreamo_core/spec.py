"""Model facts of DreamO on FLUX.1-dev, in one frozen, validated place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DreamOSpec:
    """Sizes and constants DreamO relies on. ``FLUX_DEV`` is the released model; tests build tiny ones.

    hidden_size: DiT width (3072 for FLUX.1-dev). mlp_ratio: single-block MLP width / hidden.
    num_task_rows / num_idx_rows: rows of ``dreamo_task_embedding`` (2) and ``dreamo_idx_embedding`` (10).
    max_refs: usable reference indices 1..max_refs (idx row 0 is never used by the official code).
    t5_dim / t5_placeholder_rows: width and count of the placeholder rows ``[ref#1..9]``, ``[res]``.
    latent_channels, patch_size, vae_downscale: VAE latent layout; latent_shift/scale: ``(z - shift) * scale``.
    """

    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_double_blocks: int = 19
    num_single_blocks: int = 38
    num_task_rows: int = 2
    num_idx_rows: int = 10
    max_refs: int = 9
    t5_dim: int = 4096
    t5_placeholder_rows: int = 10
    latent_channels: int = 16
    patch_size: int = 2
    vae_downscale: int = 8
    latent_shift: float = 0.1159
    latent_scale: float = 0.3611

    def __post_init__(self) -> None:
        positive = ("hidden_size", "num_double_blocks", "num_single_blocks", "num_task_rows", "num_idx_rows",
                    "max_refs", "t5_dim", "t5_placeholder_rows", "latent_channels", "patch_size", "vae_downscale")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"DreamOSpec.{name} must be positive, got {getattr(self, name)}")
        if self.num_task_rows < 2:
            raise ValueError(f"DreamOSpec.num_task_rows must be >= 2 (condition row 0, target row 1), got {self.num_task_rows}")
        if self.max_refs > self.num_idx_rows - 1:
            raise ValueError(
                f"DreamOSpec.max_refs={self.max_refs} needs idx rows 1..{self.max_refs}, "
                f"but num_idx_rows={self.num_idx_rows} only has rows 0..{self.num_idx_rows - 1}"
            )
        if self.mlp_ratio <= 0 or (self.hidden_size * self.mlp_ratio) % 1:
            raise ValueError(f"DreamOSpec.mlp_ratio must give an integer MLP width, got {self.mlp_ratio}")

    @classmethod
    def of_diffusers_config(cls, config: object, t5_dim: int | None = None) -> DreamOSpec:
        """The spec of a diffusers ``FluxTransformer2DModel`` from its ``config`` (FLUX.1-dev gives FLUX_DEV).
        t5_dim: the text encoder's width, default the transformer's ``joint_attention_dim``."""
        c = config
        return cls(hidden_size=c.num_attention_heads * c.attention_head_dim, num_double_blocks=c.num_layers,
                   num_single_blocks=c.num_single_layers, t5_dim=t5_dim or c.joint_attention_dim)

    @property
    def mlp_hidden(self) -> int:
        """Width of the single-block MLP (12288 for FLUX.1-dev)."""
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def single_proj_in(self) -> int:
        """Input width of a single block's output projection: hidden + MLP (15360 for FLUX.1-dev)."""
        return self.hidden_size + self.mlp_hidden

    @property
    def token_pixels(self) -> int:
        """Pixels per token side: VAE downscale x patch size (16)."""
        return self.vae_downscale * self.patch_size

    @property
    def packed_channels(self) -> int:
        """Channels of a packed latent token: latent_channels * patch_size**2 (64)."""
        return self.latent_channels * self.patch_size**2


FLUX_DEV = DreamOSpec()
