"""The standalone DreamO generator on diffusers: forward, sampling loop, loading, tiny random models, ``dreamo`` CLI."""
