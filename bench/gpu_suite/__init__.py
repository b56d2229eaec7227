"""The GPU suite (``python -m bench.gpu_suite``; on a bare GPU machine ``bash bench/gpu_suite.sh``): every GPU
figure the README lacks in one run. ``settings`` (the full and tiny presets), ``section`` (what a section is, its
estimates), ``sections/`` (the five, each over an existing bench), ``runner`` (a subprocess per section under its
time budget, output teed), ``child`` (the section's subprocess), ``report`` (Markdown + JSON), ``environment``."""
