"""Preference post-training: Flow-DPO with an optional localized region (``flow_dpo``: our LDPO) and the region's
pixels (``regions``: the foreground box enlarged by the dilation α)."""
