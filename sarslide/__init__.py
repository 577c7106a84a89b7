"""sarslide: landslide mapping from Sentinel-1 SAR with two-stage training.

Data flows one way: a module imports only modules of lower levels. The README's
"The package" section lists every module with its level and job, drawn from the real
import graph by ``tools/import_graph.py`` (``tests/test_docs_match_code.py`` keeps the
two in step). In short: the schema (``cube``) first; then the data (``chips``,
``synthetic``, ``inventory``, ``acquire``, ``datasets``); the networks and their
training (``models``, ``tasks``, ``runtime``, ``train``, ``pretrained``); the experiment
(``ablation``, ``findings``); and what uses it (``plots``, ``mapping``, ``cli``).

Modules are imported explicitly (``from sarslide import chips``) so that importing the
package stays cheap and torch is loaded only by the modules that need it.
"""

__version__ = "0.1.0"
