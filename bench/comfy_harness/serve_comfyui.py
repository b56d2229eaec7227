"""ComfyUI's own ``main.py`` with the harness's library stand-ins (torchvision / torchaudio are never installed
here: they pull a CUDA torch), for the browser test.

    python -m bench.comfy_harness.serve_comfyui COMFYUI_PATH main.py-args...   # from the repository root
"""

import os
import runpy
import sys

from bench.comfy_harness.stand_ins import stand_in_for_absent

if __name__ == "__main__":
    comfy = os.path.abspath(sys.argv[1])
    stand_in_for_absent()
    sys.path.insert(0, comfy)
    os.chdir(comfy)
    sys.argv = [os.path.join(comfy, "main.py"), *sys.argv[2:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
