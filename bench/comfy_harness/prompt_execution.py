"""Executing API prompts with ComfyUI's own ``PromptExecutor``, without a server: a silent stand-in for the
PromptServer it reports to, and input / output folders pointed at a test's own."""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path


@contextlib.contextmanager
def io_directories(inputs: Path, outputs: Path):
    """ComfyUI's input / output folders pointed at ``inputs`` / ``outputs`` for the block, restored after."""
    import folder_paths

    old_in, old_out = folder_paths.get_input_directory(), folder_paths.get_output_directory()
    folder_paths.set_input_directory(str(inputs))
    folder_paths.set_output_directory(str(outputs))
    try:
        yield outputs
    finally:
        folder_paths.set_input_directory(old_in)
        folder_paths.set_output_directory(old_out)


class SilentServer:
    """The PromptServer stand-in a PromptExecutor reports to (progress and queue messages dropped)."""

    client_id = None
    last_node_id = None

    def send_sync(self, *args, **kwargs):
        pass

    def queue_updated(self):
        pass


def prompt_executor(server=None):
    """ComfyUI's PromptExecutor (reporting to ``server``, default a SilentServer) with the classic cache. Newer versions take ``cache_args`` (``lru``, ``ram``,
    ``ram_inactive``, read on every run) instead of ``cache_size``: the signature decides, not the version."""
    import execution

    server = SilentServer() if server is None else server
    params = inspect.signature(execution.PromptExecutor).parameters
    if "cache_args" in params:
        return execution.PromptExecutor(server, cache_type=False, cache_args={"lru": 0, "ram": 0.0, "ram_inactive": 0.0})
    return execution.PromptExecutor(server, cache_type=False)
