"""The example workflows in ``workflows/`` (ComfyUI frontend UI format, version 0.4), built from code.

- ``litegraph.py``: the frontend's node geometry that the layout, the thumbnail renderer and the layout test share;
- ``node_types.py``: the sockets, widgets and width of every node type the workflows use;
- ``catalogue.py``: the model files (download URL, ``models/`` folder) and the DreamO LoRA stacks;
- ``layout.py``: ``Graph``, nodes and links laid out left to right in bands, written as UI JSON;
- ``recipes.py``: the DreamO-on-FLUX.1-dev workflow recipe and its parts (references, LoRA stack, sampling);
- ``regional.py``: the recipe of regional DreamO (two Applies, each subject in its own area);
- ``toy.py``: the recipe of the CPU-trained toy DreamO;
- ``table.py``: the shipped workflows by name, and writing them.

Command: ``python tools/build_workflows.py`` (then ``python tools/render_workflow.py workflows/*.json``).
"""
