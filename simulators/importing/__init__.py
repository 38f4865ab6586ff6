"""Ground truth from elsewhere: NeuronIO pickles and the exchange format, imported into
the dataset form that ``generate`` writes (``build``), and written back out (``exchange``).

``neurosearch import`` is the command; ``write_simulation`` is what a user's own script
calls to write the exchange format.
"""

from .build import Source, find_sources, import_dataset
from .exchange import FORMAT, export_dataset, write_simulation
from .recording import BadSource

__all__ = ["FORMAT", "BadSource", "Source", "export_dataset", "find_sources", "import_dataset",
           "write_simulation"]
