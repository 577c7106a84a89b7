"""What made a map, written into every file it leaves: GeoTIFF tags and ``map.json``.

A synthetic map of a real place looks real once the file leaves its folder. Every
GeoTIFF ``sarslide map`` writes carries :func:`provenance_tags` (GDAL metadata, listed
by ``gdalinfo`` and QGIS' layer properties), and ``map.json`` records the same plus the
resolution, catalog and collection. :func:`quicklook_title` says "SYNTHETIC" in the
quick-look's title when the scene is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

__all__ = ["MapProvenance", "describe_source", "provenance_tags", "quicklook_title"]

#: Prefix of every tag (GDAL metadata keys are upper case by convention).
TAG_PREFIX = "SARSLIDE_"


@dataclass(frozen=True)
class MapProvenance:
    """Where a map came from.

    Attributes
    ----------
    data_source:
        ``"synthetic"`` (a generated scene, not an observation), ``"files"`` (scenes on
        disk), ``"zenodo"`` (the paper's datacube) or ``"planetary-computer"``.
    collection:
        The STAC collection of real data (``"sentinel-1-rtc"``), else ``""``.
    event:
        The event's name (``"hokkaido"``, ``"aoi-20180906-…"``).
    pre_passes, post_passes:
        ISO times of the passes averaged on each side.
    model:
        Run id or checkpoint files of the model.
    model_trained_on:
        What the model was trained on, e.g. ``"synthetic chips of hokkaido (profile
        demo)"``.
    profile:
        The profile name (and its ``--set`` overrides).
    threshold:
        The probability threshold of the binary map, and how it was chosen.
    version:
        The sarslide version that wrote the map.
    """

    data_source: str
    event: str
    model: str
    profile: str
    threshold: float
    threshold_choice: str = ""
    model_trained_on: str = ""
    collection: str = ""
    pre_passes: Sequence[str] = field(default_factory=tuple)
    post_passes: Sequence[str] = field(default_factory=tuple)
    version: str = ""

    @property
    def synthetic(self) -> bool:
        return self.data_source == "synthetic"

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["pre_passes"] = list(self.pre_passes)
        out["post_passes"] = list(self.post_passes)
        out["synthetic"] = self.synthetic
        return out


def provenance_tags(prov: MapProvenance) -> dict[str, str]:
    """GeoTIFF tags (``SARSLIDE_*`` text values) of a map's provenance.

    ``SARSLIDE_DATA_SOURCE`` is :func:`describe_source`: ``"SYNTHETIC scene (generated,
    not an observation)"`` for a synthetic scene, else ``"real radar …"`` with the
    collection, e.g. ``"real radar from Planetary Computer sentinel-1-rtc"``.
    """
    values: Mapping[str, object] = {
        "DATA_SOURCE": describe_source(prov),
        "EVENT": prov.event,
        "PRE_PASSES": ",".join(prov.pre_passes),
        "POST_PASSES": ",".join(prov.post_passes),
        "MODEL": prov.model,
        "MODEL_TRAINED_ON": prov.model_trained_on,
        "PROFILE": prov.profile,
        "THRESHOLD": f"{prov.threshold:.6g}",
        "THRESHOLD_CHOICE": prov.threshold_choice,
        "VERSION": prov.version,
    }
    return {TAG_PREFIX + k: str(v) for k, v in values.items()}


_SOURCES = {
    "synthetic": "SYNTHETIC scene (generated, not an observation)",
    "files": "real radar scenes from files on disk",
    "zenodo": "real radar: the paper's datacube (Zenodo)",
    "planetary-computer": "real radar from Planetary Computer",
}


def describe_source(prov: MapProvenance) -> str:
    """What the scene is, in words: ``"SYNTHETIC scene (…)"`` or ``"real radar …
    <collection>"``."""
    text = _SOURCES.get(prov.data_source, prov.data_source)
    return f"{text} {prov.collection}".strip() if prov.collection else text


def quicklook_title(event_title: str, prov: MapProvenance) -> str:
    """The quick-look PNG's title: the event, what the data are, the threshold."""
    what = describe_source(prov)
    return f"{event_title} — {what}, threshold {prov.threshold:.3g}"
