"""DreamO attention-routing trainer (see training/README.md)."""
