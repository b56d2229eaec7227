"""Node geometry of the ComfyUI frontend (LiteGraph) that the layout, the thumbnail renderer
(tools/render_workflow.py) and the layout test (tests/workflows/test_layout.py) share."""

TITLE_H = 30  # LiteGraph's title bar, drawn above a node's pos
SLOT_H = 22  # one socket row (inputs / outputs), from the node's pos down
NOTE_TYPES = ("MarkdownNote", "Note")  # frontend-only nodes (never sent to the server)
