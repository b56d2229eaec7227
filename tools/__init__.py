"""Offline tools: the workflow builder and its thumbnail renderer, locales, the test runners (ComfyUI never
imports these)."""
