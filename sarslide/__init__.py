"""sarslide: landslide mapping from Sentinel-1 SAR with two-stage training.

The package follows one data flow (see DESIGN.md)::

    events -> acquire / synthetic -> cube -> inventory labels -> chips
           -> transforms -> models / train -> metrics / ablation -> plots / mapping

Modules are imported explicitly (``from sarslide import chips``) so that importing the
package stays cheap and torch is loaded only by the modules that need it.
"""

__version__ = "0.1.0"
