"""Model facts of DreamO on FLUX.1-dev, in one frozen, validated place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DreamOSpec:
    """Sizes and constants DreamO relies on. ``FLUX_DEV`` is the released model; tests build tiny ones.

    hidden_size: DiT width (3072 for FLUX.1-dev) = heads x attention_head_dim (24 x 128). mlp_ratio: single-block MLP
    width / hidden. pooled_dim: CLIP-L pooled width (768). rope_axes: RoPE dims per id axis (16, 56, 56).
    num_task_rows / num_idx_rows: rows of ``dreamo_task_embedding`` (2) and ``dreamo_idx_embedding`` (10).
    max_refs: usable reference indices 1..max_refs (idx row 0 is never used by the official code).
    t5_dim / t5_placeholder_rows: width and count of the placeholder rows ``[ref#1..9]``, ``[res]``.
    latent_channels, patch_size, vae_downscale: VAE latent layout; latent_shift/scale: ``(z - shift) * scale``.
    route_blocks: the double blocks whose attention L_route / L_holder train at this size (our choice for
    FLUX.1-dev, spread over the 19 double blocks; the paper does not name them).
    base_shift, max_shift, base_seq_len, max_seq_len: FLUX's dynamic time shift mu, linear in the number of noisy
    tokens from base_shift at base_seq_len to max_shift at max_seq_len (scheduler config and ModelSamplingFlux).
    """

    hidden_size: int = 3072
    attention_head_dim: int = 128
    mlp_ratio: float = 4.0
    num_double_blocks: int = 19
    num_single_blocks: int = 38
    num_task_rows: int = 2
    num_idx_rows: int = 10
    max_refs: int = 9
    t5_dim: int = 4096
    t5_placeholder_rows: int = 10
    pooled_dim: int = 768
    rope_axes: tuple[int, int, int] = (16, 56, 56)
    latent_channels: int = 16
    patch_size: int = 2
    vae_downscale: int = 8
    latent_shift: float = 0.1159
    latent_scale: float = 0.3611
    route_blocks: tuple[int, ...] = (2, 8, 14)
    base_shift: float = 0.5
    max_shift: float = 1.15
    base_seq_len: int = 256
    max_seq_len: int = 4096

    def __post_init__(self) -> None:
        positive = ("hidden_size", "attention_head_dim", "pooled_dim", "num_double_blocks", "num_single_blocks", "num_task_rows", "num_idx_rows",
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
        return cls(hidden_size=c.num_attention_heads * c.attention_head_dim, attention_head_dim=c.attention_head_dim,
                   num_double_blocks=c.num_layers, num_single_blocks=c.num_single_layers,
                   t5_dim=t5_dim or c.joint_attention_dim, pooled_dim=c.pooled_projection_dim,
                   rope_axes=tuple(c.axes_dims_rope),
                   route_blocks=tuple(b for b in cls.route_blocks if b < c.num_layers))

    def diffusers_config(self, **overrides: object) -> dict:
        """Keyword arguments of a diffusers ``FluxTransformer2DModel`` of this size (FLUX.1-dev's with FLUX_DEV;
        ``overrides`` replace entries, e.g. ``num_layers=2`` for a width-only bench model)."""
        return {"num_layers": self.num_double_blocks, "num_single_layers": self.num_single_blocks,
                "attention_head_dim": self.attention_head_dim, "num_attention_heads": self.num_heads,
                "joint_attention_dim": self.t5_dim, "pooled_projection_dim": self.pooled_dim,
                "guidance_embeds": True, "axes_dims_rope": list(self.rope_axes), **overrides}

    def comfy_flux_params(self, **overrides: object) -> dict:
        """The size fields of ComfyUI's ``FluxParams`` for this model (the rest comes from ComfyUI's detection)."""
        return {"hidden_size": self.hidden_size, "num_heads": self.num_heads, "depth": self.num_double_blocks,
                "depth_single_blocks": self.num_single_blocks, "context_in_dim": self.t5_dim,
                "vec_in_dim": self.pooled_dim, "axes_dim": list(self.rope_axes), **overrides}

    @property
    def num_heads(self) -> int:
        """Attention heads: hidden_size / attention_head_dim (24 for FLUX.1-dev)."""
        return self.hidden_size // self.attention_head_dim

    @property
    def route_layers(self) -> tuple[str, ...]:
        """``route_blocks`` as the trainer's layer patterns (``transformer_blocks.2`` ...)."""
        return tuple(f"transformer_blocks.{b}" for b in self.route_blocks)

    def time_shift_mu(self, target_tokens: int) -> float:
        """FLUX's dynamic time-shift mu for ``target_tokens`` noisy tokens (references do not count)."""
        m = (self.max_shift - self.base_shift) / (self.max_seq_len - self.base_seq_len)
        return target_tokens * m + (self.base_shift - m * self.base_seq_len)

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
