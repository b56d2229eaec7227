import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tiny_flux_folder helper
