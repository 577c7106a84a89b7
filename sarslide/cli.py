"""The ``sarslide`` command line: fetch data, run the ablation grid, map an area.

::

    # fill the cache on a machine with network
    sarslide fetch hokkaido --source zenodo
    # the ablation grid of chapter 5, headless
    sarslide grid --profile demo --scheduler local
    # chapter 7's map, as files a GIS opens
    sarslide map --event hokkaido --out maps/hokkaido
    sarslide map --bbox 141.9 42.7 142.0 42.8 --date 2018-09-06 --out maps/aoi

Every command has ``--help``. Bad input gives one line on stderr, ``sarslide: error:
…``, and exit status 1 (2 for a malformed command line); ``--debug`` shows the
traceback.

Commands
--------
``fetch``
    Download and verify what an event needs into the cache (``--cache-dir`` or
    ``$SARSLIDE_DATA_DIR``): the paper's datacube from Zenodo (md5 checked by pooch,
    then unzipped and opened once to check its layout), or the nearest Sentinel-1 passes
    from Planetary Computer, loaded and saved as an event cube (zarr). Prints the cache
    path and its size. Afterwards ``map`` and ``grid`` run without network.
``grid``
    :func:`sarslide.ablation.experiment_grid` + :func:`sarslide.ablation.train_grid`:
    the resumable results table of chapter 5 (``results.parquet``), serially or on a
    dask cluster (``--scheduler local`` or ``tcp://host:8786``); prints mean ± SEM per
    arm × size and writes it to ``summary.csv``. Before training it says how many runs
    are missing and their estimated time here; ``--max-minutes`` stops between runs (run
    the command again to go on). Two ``grid`` processes may share one results folder.
``map``
    Maps an event (``--event``) or any area (``--bbox W S E N --date YYYY-MM-DD``: an
    event record is built on the fly, UTM zone from the bbox centre) with an ensemble of
    stage-2 checkpoints (``--model``: a run id such as ``hokkaido-nall-s0``, trained
    through the package's cached get-or-train path if missing, or checkpoint files).
    Writes probability, binary map and density heatmap as Cloud-Optimized GeoTIFFs, the
    ranked cells as GeoJSON (RFC 7946 lon/lat) and CSV, a PNG quick-look, an interactive
    web map (``map.html``) and ``map.json`` (what was done, provenance, and a quality
    block where truth exists). ``--files`` maps GeoTIFFs / a static STAC catalog already
    on disk. A scene far from the model's training statistics is refused (``--force``
    overrides). The map is :func:`sarslide.mapping.map_scene`, the pipeline chapter 7
    runs; :func:`sarslide.mapping.write_map_folder` writes the files.

Profile overrides
-----------------
``--set FIELD=VALUE`` (repeatable) changes one field of the profile
(:meth:`sarslide.profiles.Profile.with_overrides`), e.g. ``--set stage2_max_epochs=2
--set synthetic_shape=256,256 --set train_sizes=2,all``. Tuples are comma-separated;
``all``/``none`` inside ``train_sizes`` mean "all chips". Changed settings get their own
cache entries (stores are named after a hash of the profile), so nothing stale is
reused. The tests use this for tiny, fast configurations.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "main",
    "build_parser",
    "CLIError",
    "utm_crs",
    "event_from_bbox",
    "parse_run_id",
    "apply_overrides",
]

PROG = "sarslide"
DEFAULT_RUN = "hokkaido-nall-s0"
SOURCES = ("synthetic", "zenodo", "planetary-computer", "files")
#: Largest side (pixels) of a synthetic scene built for a bounding box.
MAX_SYNTHETIC_SIDE = 4096
_RUN_ID = re.compile(r"^(?P<arm>[a-z]+)-n(?P<size>all|\d+)-s(?P<seed>\d+)$")


class CLIError(ValueError):
    """Bad command-line input; the message names the value and the fix."""


# ----------------------------------------------------------------------------- helpers
def utm_crs(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone CRS (``"EPSG:326NN"`` north, ``"EPSG:327NN"`` south) of a
    point.

    The zone is ``floor((lon + 180) / 6) + 1`` (the Norway/Svalbard exceptions are not
    applied: any zone works for a grid, the nearest standard one has the least
    distortion).
    """
    if not (-180.0 <= lon <= 180.0 and -80.0 <= lat <= 84.0):
        raise CLIError(
            f"({lon}, {lat}) is outside the UTM range (longitude -180..180, latitude "
            "-80..84)"
        )
    zone = min(int(math.floor((lon + 180.0) / 6.0)) + 1, 60)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def _parse_when(text: str) -> datetime:
    """``YYYY-MM-DD`` (00:00 UTC) or an ISO time ``YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM]``
    (UTC if naive)."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CLIError(
            f"--date {text!r} is not a date; use YYYY-MM-DD (e.g. 2018-09-06) or an "
            "ISO time "
            "such as 2018-09-05T18:08Z"
        ) from None
    return (
        when.replace(tzinfo=timezone.utc)
        if when.tzinfo is None
        else when.astimezone(timezone.utc)
    )


def _check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    west, south, east, north = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise CLIError(f"--bbox {list(bbox)} holds a non-finite value")
    if west >= east:
        raise CLIError(
            f"--bbox W S E N: west {west} must be less than east {east} (order is W S "
            "E N)"
        )
    if south >= north:
        raise CLIError(
            f"--bbox W S E N: south {south} must be less than north {north} (order is "
            "W S E N)"
        )
    if west < -180 or east > 180 or south < -80 or north > 84:
        raise CLIError(
            f"--bbox {west} {south} {east} {north} leaves longitude -180..180 / "
            "latitude -80..84 "
            "(degrees, WGS 84)"
        )
    return west, south, east, north


def event_from_bbox(
    bbox: Sequence[float],
    when: str | date | datetime,
    *,
    name: str | None = None,
    resolution: float = 10.0,
):
    """An :class:`~sarslide.events.Event` for a new area: a bounding box and a date.

    Parameters
    ----------
    bbox:
        ``(west, south, east, north)`` in degrees (WGS 84).
    when:
        The event day (``"YYYY-MM-DD"``: 00:00 UTC, so passes on that day count as
        post-event) or its time (ISO string or datetime; naive = UTC).
    name:
        Short key; default ``aoi-<date>-<lon>-<lat>`` from the bbox centre.

    Returns
    -------
    sarslide.events.Event
        CRS = the UTM zone of the bbox centre (:func:`utm_crs`), 10 m grid, nominal pass
        dates 12 days before and after (the Sentinel-1 repeat; real loads pick the
        nearest passes), ``label_kind="mask"``, and no inventory or datacube (empty
        sources).
    """
    from .events import DataSource, Event

    west, south, east, north = _check_bbox(bbox)
    if isinstance(when, datetime):
        t0 = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    elif isinstance(when, date):
        t0 = datetime(when.year, when.month, when.day, tzinfo=timezone.utc)
    else:
        t0 = _parse_when(str(when))
    lon, lat = (west + east) / 2, (south + north) / 2
    none = DataSource(url="", known_hash=None, citation="", license="")
    key = name or f"aoi-{t0:%Y%m%d}-{lon:+.3f}-{lat:+.3f}"
    return Event(
        name=key,
        title=f"area {west:g}, {south:g}, {east:g}, {north:g} on {t0:%Y-%m-%d}",
        magnitude=float("nan"),
        date=t0.date(),
        time_utc=t0,
        bounds_lonlat=(west, south, east, north),
        crs=utm_crs(lon, lat),
        paper_pre_pass=(t0 - timedelta(days=12)).date(),
        paper_post_pass=(t0 + timedelta(days=12)).date(),
        label_kind="mask",
        inventory=none,
        datacube=none,
        resolution=resolution,
        notes="built by `sarslide` from a bounding box and a date",
    )


def parse_run_id(text: str):
    """A :class:`sarslide.ablation.Run` from its id (``hokkaido-nall-s0``,
    ``none-n005-s1``), or None."""
    match = _RUN_ID.match(text.strip())
    if match is None:
        return None
    from .ablation import ARMS, Run

    if match["arm"] not in ARMS:
        return None
    size = None if match["size"] == "all" else int(match["size"])
    return Run(match["arm"], size, int(match["seed"]))


def _convert(field: str, text: str, current: Any) -> Any:
    def scalar(value: str, like: Any) -> Any:
        low = value.strip().lower()
        if field == "train_sizes" and low in ("all", "none"):
            return None
        if isinstance(like, bool):
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise CLIError(f"--set {field}={value}: expected true or false")
        if isinstance(like, int) or (field == "train_sizes" and like is None):
            return int(value)
        if isinstance(like, float):
            return float(value)
        return value.strip()

    try:
        if isinstance(current, tuple):
            like = next((v for v in current if v is not None), 0)
            if field == "split_scheme":
                like = 0.0
            return tuple(scalar(v, like) for v in text.split(",") if v.strip())
        if field == "split_scheme" and "," in text:
            return tuple(float(v) for v in text.split(","))
        return scalar(text, current)
    except ValueError as err:
        if isinstance(err, CLIError):
            raise
        raise CLIError(f"--set {field}={text}: {err}") from None


def apply_overrides(profile, items: Sequence[str] | None):
    """``profile`` with ``FIELD=VALUE`` overrides applied (types follow the current
    values)."""
    if not items:
        return profile
    fields = {f.name for f in dataclasses.fields(profile)} - {"name"}
    changes = {}
    for item in items:
        field, sep, value = item.partition("=")
        field = field.strip()
        if not sep:
            raise CLIError(
                f"--set {item!r}: write FIELD=VALUE, e.g. --set stage2_max_epochs=2"
            )
        if field not in fields:
            raise CLIError(
                f"--set {field}: unknown profile field; fields are {sorted(fields)}"
            )
        changes[field] = _convert(field, value, getattr(profile, field))
    return profile.with_overrides(**changes)


def _profile(args: argparse.Namespace):
    """The profile of ``--profile`` with the ``--set`` overrides: the one place a
    command looks a profile name up."""
    from .profiles import get_profile

    return apply_overrides(get_profile(args.profile), args.set)


def _cache_dir(args: argparse.Namespace) -> Path:
    """The data folder (``--cache-dir``, ``$SARSLIDE_DATA_DIR`` or the default),
    created if missing."""
    from .experiment import resolve_data_dir

    return resolve_data_dir(args.cache_dir)


def _checked_cache_dir(args: argparse.Namespace, *, writable: bool) -> Path:
    """The cache folder (``--cache-dir``, ``$SARSLIDE_DATA_DIR`` or the default),
    checked before any compute (:func:`sarslide.engine.filesystem.check_folder`), then
    created."""
    from .engine.filesystem import check_folder
    from .experiment import DATA_DIR_ENV, resolve_data_dir

    raw = resolve_data_dir(args.cache_dir, create=False)
    what = (
        "--cache-dir"
        if args.cache_dir
        else (f"${DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV) else "the cache")
    )
    check_folder(raw, what, writable=writable and not Path(raw).is_dir())
    if writable and Path(raw).is_dir():
        check_folder(raw, what, writable=True)
    return _cache_dir(args)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _load_pc(event, args, n_pre: int, n_post: int):
    """The lazy Planetary Computer (or ``--catalog``) cube of the nearest passes."""
    from .acquire import PC_STAC_URL, load_planetary_computer

    return load_planetary_computer(
        event,
        collection=args.collection,
        n_pre=n_pre,
        n_post=n_post,
        days_before=args.days_before,
        days_after=args.days_after,
        catalog=args.catalog or PC_STAC_URL,
        sign=not args.no_sign,
    )


def _resolve_event(args: argparse.Namespace):
    """The event of ``--event NAME`` / positional EVENT, or one built from
    ``--bbox``/``--date``."""
    from .events import get_event

    name = getattr(args, "event", None)
    bbox = getattr(args, "bbox", None)
    when = getattr(args, "date", None)
    if name and bbox:
        raise CLIError("give either an event name or --bbox/--date, not both")
    if bbox is not None:
        if when is None:
            raise CLIError("--bbox needs --date YYYY-MM-DD (the event day)")
        return event_from_bbox(
            bbox,
            when,
            name=getattr(args, "name", None),
            resolution=getattr(args, "resolution", None) or 10.0,
        ), True
    if when is not None:
        raise CLIError(
            "--date goes with --bbox W S E N; for a known event give its name only"
        )
    if not name:
        raise CLIError(
            "name an event (hokkaido, kaikoura) or give --bbox W S E N --date "
            "YYYY-MM-DD"
        )
    return get_event(name), False


# ----------------------------------------------------------------------------- fetch
def cmd_fetch(args: argparse.Namespace) -> int:
    """Download and verify what an event needs into the cache; print path and size."""
    event, custom = _resolve_event(args)
    source = args.source or ("planetary-computer" if custom else "zenodo")
    for flag, value in (("--n-pre", args.n_pre), ("--n-post", args.n_post)):
        if value < 1:
            raise CLIError(f"{flag} {value}: fetch at least 1 pass")
    cache = _checked_cache_dir(args, writable=True)
    if source == "zenodo":
        if custom:
            raise CLIError(
                "the Zenodo record holds only the paper's events (hokkaido, "
                "kaikoura); fetch a new "
                "area with --source planetary-computer"
            )
        from .acquire import NetworkUnavailableError, fetch_paper_cube, load_paper_cube

        try:
            store = fetch_paper_cube(
                event, cache_dir=cache, url=args.url, known_hash=args.known_hash
            )
        except NetworkUnavailableError as err:
            raise NetworkUnavailableError(
                f"{err} `sarslide fetch` needs access to zenodo.org (or --url of a "
                "mirror); "
                f"cache: {cache}"
            ) from err
        cube = load_paper_cube(
            event, path=store
        )  # opens and checks the layout, no network
        # the unzipped folder is what prepare_cube reuses (the archive sits next to it)
        path = next(
            (p for p in (store, *store.parents) if p.name.endswith(".unzip")), store
        )
        print(
            f"{event.name}: the paper's datacube, {len(cube['time'])} passes, "
            f"{cube.sizes['y']}×{cube.sizes['x']} px"
        )
    else:
        from .cube import save_cube

        collection = args.collection
        path = _pc_cube_path(cache, event, args)
        if path.exists() and not args.refresh:
            print(f"{event.name}: already cached (use --refresh to load again)")
        else:
            cube = _load_pc(event, args, args.n_pre, args.n_post)
            print(
                f"{event.name}: loading {len(cube['time'])} passes of {collection}, "
                f"{cube.sizes['y']}×{cube.sizes['x']} px …"
            )
            from tqdm.dask import TqdmCallback

            from .engine.progress import progress_bar

            with TqdmCallback(
                tqdm_class=progress_bar, desc="reading passes", unit="chunk"
            ):
                cube = cube.compute()
            save_cube(cube, path)
    print(f"cache: {path}")
    print(f"size:  {_human(_size(path))}")
    return 0


# ----------------------------------------------------------------------------- grid
def _scheduler(text: str | None):
    if text is None or text.lower() in ("none", "serial"):
        return None
    if text == "local" or re.match(r"^(tcp|tls|inproc|ucx)://", text):
        return text
    raise CLIError(
        f"--scheduler {text!r}: use 'serial', 'local' or a scheduler address such as "
        "tcp://10.0.0.5:8786"
    )


def aprc_text_table(summary) -> "Any":
    """APRC ``mean ± SEM`` as text, arms × sizes (``ref``: the non-learned references,
    ``all``)."""
    aprc = summary[summary["metric"] == "aprc"]
    sizes = aprc["train_size"].map(
        lambda s: "all" if s == -1 else ("ref" if s == 0 else str(s))
    )
    text = [
        f"{m:.3f}" if s != s else f"{m:.3f} ± {s:.3f}"
        for m, s in zip(aprc["mean"], aprc["sem"])
    ]
    table = (
        aprc.assign(size=sizes, text=text)
        .pivot(index="arm", columns="size", values="text")
        .fillna("")
    )
    order = sorted(
        table.columns,
        key=lambda c: (c != "ref", c == "all", int(c) if c.isdigit() else 0),
    )
    return table[order]


def _grid_done(args: argparse.Namespace, exp) -> set[str]:
    """Run ids already in the grid's results folder, read without writing anything."""
    from .ablation import results_dir
    from .engine.results_table import finished_run_ids

    if args.out:
        out = Path(args.out).expanduser()
    elif not exp.data_dir.is_dir():
        return set()
    else:
        out = results_dir(exp)
    return finished_run_ids(out) if out.is_dir() else set()


def cmd_grid(args: argparse.Namespace) -> int:
    """Run the ablation grid headless and print its summary."""
    from .ablation import ARMS, experiment_grid, results_dir, train_grid
    from .experiment import Experiment

    # names the data folder without creating it: it is checked first, below
    exp = Experiment.create(args.event, _profile(args), args.cache_dir, args.device)
    profile = exp.profile
    arms = tuple(a.strip() for a in args.arms.split(",")) if args.arms else ARMS
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise CLIError(f"--arms: unknown arm(s) {unknown}; arms are {list(ARMS)}")
    scheduler = _scheduler(args.scheduler)
    if args.threads is not None and args.threads < 1:
        raise CLIError(
            f"--threads {args.threads}: give at least 1 torch thread per run (or "
            "leave it out)"
        )
    if args.max_minutes is not None and not (
        math.isfinite(args.max_minutes) and args.max_minutes > 0
    ):
        raise CLIError(
            f"--max-minutes {args.max_minutes}: give a positive number of minutes, "
            "e.g. 30"
        )
    runs = experiment_grid(profile, arms)
    done = _grid_done(args, exp)
    complete = args.list or all(r.run_id in done for r in runs)
    if args.out:  # checked before the cache is created or anything computed
        from .engine.filesystem import check_folder

        check_folder(args.out, "--out", writable=not complete)
    _checked_cache_dir(args, writable=not complete)
    out = Path(args.out).expanduser() if args.out else results_dir(exp)
    if args.list:
        from .ablation import grid_plan

        for run in runs:
            print(f"{run.run_id:24s} {'done' if run.run_id in done else 'to do'}")
        print(
            f"{len(runs)} runs, {sum(r.run_id in done for r in runs)} done; results: "
            f"{out / 'results.parquet'}"
        )
        if any(r.run_id not in done for r in runs):
            print(grid_plan(exp, runs, out_dir=out).describe())
        return 0
    print(
        f"{len(runs)} runs ({', '.join(arms)}) on {args.event}, profile "
        f"{profile.name}; results in {out}"
    )
    table = train_grid(
        exp,
        runs,
        out_dir=out,
        scheduler=scheduler,
        num_threads=args.threads,
        progress=True,
        max_minutes=args.max_minutes,
    )
    left = table.attrs.get("left_for_later", [])
    if left:
        print(
            f"stopped for the time budget: {len(left)} of {len(runs)} runs left; run "
            "the same "
            "command again to go on (finished runs are kept)"
        )
    from .ablation import summarize
    from .engine.atomic import atomic_file

    reused = table.attrs.get("reused_runs", [])
    if reused:
        print(
            f"{len(reused)} of {len(runs)} runs were already finished with these "
            "settings; reused"
        )
    summary = summarize(table)
    _print_health(table, out)

    with atomic_file(out / "summary.csv", suffix=".csv") as tmp:
        summary.to_csv(tmp, index=False)
    print(
        "\nAPRC on the test chips, mean ± SEM over seeds (ref: the non-learned "
        "references)"
    )
    print(aprc_text_table(summary).to_string())
    print(f"\nresults: {out / 'results.parquet'}\nsummary: {out / 'summary.csv'}")
    return 0


def _print_health(table, out: Path) -> None:
    """One line of training-health counts for the grid's runs, and one per run that is
    not in the ``trained`` class (:mod:`sarslide.health`)."""
    from .ablation import grid_health
    from .health import health_counts

    health = grid_health(table, out)
    if health.empty:
        return
    counts = health_counts(health)
    first = int((health["best_epoch"] == 1).sum())
    print(
        f"\ntraining health of {len(health)} runs: "
        + ", ".join(f"{n} {status}" for status, n in counts.items())
        + f"; {first} keep their first epoch as best"
    )
    for row in health[health["status"] != "trained"].itertuples():
        print(f"  {row.run_id:24s} {row.status:10s} {row.reason}")


# ----------------------------------------------------------------------------- map
class _Say:
    """Output of ``sarslide map``: normal lines, ``--verbose`` detail, nothing with
    ``--quiet``."""

    def __init__(self, args: argparse.Namespace):
        self.quiet = bool(getattr(args, "quiet", False))
        self.verbose = bool(getattr(args, "verbose", False)) and not self.quiet

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def detail(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)


def _checkpoint_paths(spec: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        sub = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = sorted(sub.glob("top-epoch*.pt")) or sorted(sub.glob("*.pt"))
        if not found:
            raise FileNotFoundError(
                f"--model {spec}: the folder holds no checkpoint (*.pt)"
            )
        return found
    if not path.exists():
        raise FileNotFoundError(
            f"--model {spec}: no such checkpoint file, and not a run id "
            "(arm-n<size|all>-s<seed>, "
            f"e.g. {DEFAULT_RUN}; arms none, hokkaido, kaikoura)"
        )
    return [path]


def _checkpoint_stats(spec: str) -> tuple[list[Path], Any]:
    """The checkpoint files of ``--model`` and their band statistics, every file read
    now (a corrupt file is named before any scene is built)."""
    from .engine.checkpoints import checkpoint_info

    paths = _checkpoint_paths(spec)
    all_stats = [checkpoint_info(p).get("stats") for p in paths]
    if any(st != all_stats[0] for st in all_stats[1:]):
        raise CLIError(
            f"--model {spec}: the checkpoints were trained with different band "
            "statistics "
            "(different chips); map with checkpoints of one run, or one checkpoint at "
            "a time"
        )
    return paths, all_stats[0]


#: Rough training throughput of the demo networks on one CPU core (chip pixels × epochs
#: per second), for the "roughly N minutes" line only.
_TRAIN_PX_PER_S = 2.0e5


def _training_estimate(profile, chips, run, device: str | None) -> str:
    """``"roughly N min"`` for training one run (stage 2; stage 1 as well if not
    cached)."""
    n = (
        len(chips.split("stage2_train").labels)
        if run.train_size is None
        else run.train_size
    )
    px = profile.chip_size**2
    work = n * px * profile.stage2_max_epochs
    if run.arm != "none":
        work += len(chips.split("stage1_train").labels) * px * profile.stage1_max_epochs
    seconds = (
        work / _TRAIN_PX_PER_S / (20.0 if (device or "").startswith("cuda") else 1.0)
    )
    return (
        f"roughly {max(seconds / 60, 0.1):.1f} min on the CPU"
        if not (device or "").startswith("cuda")
        else f"roughly {max(seconds / 60, 0.1):.1f} min on the GPU"
    )


def _model_stats(args, train):
    """``(run or None, checkpoint paths, band stats, chips or None)`` of ``--model``,
    without training anything: the statistics the scene is checked against.
    ``train`` is the :class:`~sarslide.experiment.Experiment` of the training event."""
    from .datasets import prepare_event

    spec = args.model or DEFAULT_RUN
    run = parse_run_id(spec)
    if run is not None:
        chips = prepare_event(train)
        return run, [], chips.stats, chips
    paths, stats = _checkpoint_stats(spec)
    chips = None
    if stats is None or args.threshold is None:
        chips = prepare_event(train)
        stats = stats or chips.stats
    return None, paths, stats, chips


def _load_models(args, train, run, paths, stats, chips, say: _Say):
    """The :class:`sarslide.mapping.MapModels` of ``--model``: the run's checkpoints
    (trained first if missing) or the checkpoint files."""
    from .mapping import checkpoint_map_models, run_map_models

    if run is None:
        return checkpoint_map_models(paths, stats, chips=chips, device=train.device)
    from .ablation import results_dir

    run_dir = results_dir(train) / run.run_id
    if not any((run_dir / "checkpoints").glob("top-epoch*.pt")):
        profile = train.profile
        say(
            f"training model {run.run_id} on {train.event}'s chips first "
            "(not in the "
            f"cache yet; profile {profile.name}, up to {profile.stage2_max_epochs} "
            "stage-2 epochs): "
            f"{_training_estimate(profile, chips, run, train.device)}"
        )
    return run_map_models(train, run, chips=chips, progress=not say.quiet)


def _synthetic_pair(event, custom: bool, args, profile, cache):
    from .datasets import prepare_cube, profile_pass_pair
    from .experiment import Experiment

    if not custom and args.scene_size is None:
        cube = prepare_cube(Experiment.create(event.name, profile, cache))
    else:
        from .synthetic import make_cube

        if args.scene_size is not None:
            shape = (args.scene_size, args.scene_size)
        else:
            shape = _synthetic_shape(event)
        cube = make_cube(
            shape,
            event=event,
            n_pre=profile.n_pre_passes,
            n_post=profile.n_post_passes,
            seed=args.seed,
        )
    # A new area (a bbox) has no paper passes to name: take the nearest same-track pair.
    return profile_pass_pair(
        cube, profile.with_overrides(named_passes=False) if custom else profile
    )


def _synthetic_shape(event) -> tuple[int, int]:
    from .acquire import event_geobox

    shape = tuple(int(s) for s in event_geobox(event).shape)
    if max(shape) > MAX_SYNTHETIC_SIDE:
        raise CLIError(
            f"the bbox is {shape[0]}×{shape[1]} px at {event.resolution:g} m; a "
            "synthetic scene "
            f"is limited to {MAX_SYNTHETIC_SIDE} px a side: pass --scene-size or a "
            "smaller bbox"
        )
    return shape  # type: ignore[return-value]


def _pc_cube_path(cache: Path, event, args: argparse.Namespace) -> Path:
    """The cached real-data scene of ``event``, keyed on every setting that changes it.

    The key hashes the area (bounds, CRS, resolution), the event time, the collection,
    the catalog and the search window, so ``--resolution 10`` after a 30 m map, another
    catalog or a wider window each get their own cached scene.
    """
    import hashlib

    from .acquire import PC_STAC_URL

    settings = {
        "event": event.name,
        "bounds_lonlat": [round(float(v), 7) for v in event.bounds_lonlat],
        "time_utc": event.time_utc.isoformat(),
        "crs": str(event.crs),
        "resolution": float(event.resolution),
        "collection": args.collection,
        "catalog": args.catalog or PC_STAC_URL,
        "days_before": int(args.days_before),
        "days_after": int(args.days_after),
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return cache / "cubes" / f"pc-{event.name}-{args.collection}-{key}.zarr"


def _real_pair(event, custom: bool, source: str, args, profile, cache, say: _Say):
    from .acquire import MissingKeyError, NetworkUnavailableError
    from .cube import open_cube
    from .datasets import profile_pass_pair

    fetch_hint = (
        f"run `sarslide fetch {event.name if not custom else '--bbox … --date …'} "
        f"--source {source}` "
        "on a machine with network first, or map offline with --profile demo "
        "(synthetic)"
    )
    try:
        if source == "zenodo":
            if custom:
                raise CLIError(
                    "--source zenodo holds only the paper's events; use --source "
                    "planetary-computer for a bbox"
                )
            from .acquire import load_paper_cube

            cube = load_paper_cube(event, cache_dir=cache)
        else:
            path = _pc_cube_path(cache, event, args)
            if path.exists():
                say(
                    f"scene: reusing the cached scene {path} (same area, date, "
                    "collection, "
                    "resolution, catalog and search window; `sarslide fetch "
                    "--refresh` loads "
                    "it again)"
                )
                cube = open_cube(path, require_labels=False)
            else:
                cube = _load_pc(
                    event, args, profile.n_pre_passes, profile.n_post_passes
                )
    except NetworkUnavailableError as err:
        raise NetworkUnavailableError(f"{err} Or {fetch_hint}.") from err
    except MissingKeyError as err:
        raise MissingKeyError(f"{err} Or {fetch_hint}.") from err
    # A new area (a bbox) has no paper passes to name: take the nearest same-track pair.
    return profile_pass_pair(
        cube, profile.with_overrides(named_passes=False) if custom else profile
    )


def _files_pair(event, args, profile):
    """The pass pair of ``--files``: scenes on disk, passes chosen by the profile's
    rule."""
    from .datasets import profile_pass_pair
    from .mapping import local_cube

    cube = local_cube(
        args.files, event.time_utc, event=event.name, resolution=args.resolution
    )
    return profile_pass_pair(cube, profile.with_overrides(named_passes=False))


def _writable_folder(flag: str, path: Path) -> None:
    """``path`` can be created (or written) as a folder: not a file, its filesystem
    writable."""
    import tempfile

    if path.exists() and not path.is_dir():
        raise CLIError(
            f"{flag} {path} is a file; give a folder (it is created if missing)"
        )
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CLIError(
            f"{flag} {path}: {parent} is a file, so the folder cannot be created"
        )
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise CLIError(
            f"{flag} {path}: cannot write in {parent} ({err.strerror or err}); give a "
            "writable folder"
        ) from None


def _files_event(args: argparse.Namespace):
    """The event of ``--files``: a known ``--event`` or one built from ``--date`` and
    the files' own area, CRS and pixel size (read from the first file's header)."""
    from .mapping import files_grid

    if args.bbox is not None:
        raise CLIError("--files maps the area of the files; leave out --bbox")
    crs, res, lonlat = files_grid(args.files)
    if args.event:
        if args.date:
            raise CLIError("give --event or --date with --files, not both")
        from .events import get_event

        return get_event(args.event), res
    if not args.date:
        raise CLIError(
            "--files needs the event: --date YYYY-MM-DD (or --event "
            "hokkaido|kaikoura); "
            "passes before it are pre-event, after it post-event"
        )
    when = _parse_when(args.date)
    name = args.name or f"files-{when:%Y%m%d}"
    resolution = float(args.resolution or res)
    event = event_from_bbox(lonlat, when, name=name, resolution=resolution)
    return dataclasses.replace(
        event, crs=crs, title=f"scenes on disk, event {when:%Y-%m-%d}"
    ), resolution


def _check_map_args(args: argparse.Namespace):
    """``(profile, event, custom, source, resolution)`` of ``sarslide map``, every
    argument checked.

    Runs before the heavy imports and any data work, so a bad flag fails in a second:
    numbers (finite, positive, a cell size that fits the pixel size), the event and its
    date (not in the future), ``--files`` / a local ``--catalog``, the checkpoint files
    (read now, so a corrupt one is named before the scene is built), ``--truth``, and
    the output and cache folders (not files, writable).
    """
    if args.catalog and not re.match(r"^https?://", args.catalog):
        if (
            Path(args.catalog).expanduser().exists()
        ):  # a static catalog: read it from disk
            args.files = [*(args.files or []), args.catalog]
            args.catalog = None
        else:
            raise CLIError(
                f"--catalog {args.catalog}: not an http(s) STAC API address nor a "
                "file; for "
                "scenes or a static catalog on disk use --files PATH"
            )
    profile = _profile(args)
    if args.files:
        if args.source not in (None, "files"):
            raise CLIError(
                f"--files maps scenes on disk; leave out --source {args.source}"
            )
        source = "files"
        event, resolution = _files_event(args)
        custom = True
    else:
        if args.source == "files":
            raise CLIError(
                "--source files needs --files PATH … (GeoTIFFs, a folder or a STAC "
                "catalog)"
            )
        event, custom = _resolve_event(args)
        if args.resolution is not None:
            event = dataclasses.replace(event, resolution=float(args.resolution))
        resolution = float(event.resolution)
        if args.source:
            source = args.source
        elif profile.offline:
            source = "synthetic"
        else:
            source = "planetary-computer" if custom else "zenodo"
    if custom and event.time_utc > datetime.now(timezone.utc):
        raise CLIError(
            f"--date {event.time_utc:%Y-%m-%d} is in the future: no radar pass after "
            "it "
            "exists yet; give the day of the event"
        )
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CLIError(
            f"--threshold {args.threshold}: a probability threshold lies in [0, 1]"
        )
    positive = (
        ("--cell-size", args.cell_size),
        ("--top", args.top),
        ("--window", args.window),
        ("--scene-size", args.scene_size),
        ("--resolution", args.resolution),
    )
    for flag, value in positive:
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise CLIError(f"{flag} {value}: must be a positive number")
    steps = args.cell_size / resolution
    if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
        low = max(1, math.floor(steps)) * resolution
        raise CLIError(
            f"--cell-size {args.cell_size:g} m is not a whole multiple of the "
            f"{resolution:g} m "
            f"pixels; use e.g. {low:g} or {low + resolution:g}"
        )
    if args.model and parse_run_id(args.model) is None:
        _checkpoint_stats(args.model)
    if args.truth:
        from .inventory import read_inventory

        read_inventory(args.truth)
    cache = _cache_path(args)
    if cache.exists() and not cache.is_dir():
        raise CLIError(f"--cache-dir {cache} is a file; give a folder")
    out = (
        Path(args.out) if args.out else cache / "maps" / f"{event.name}-{profile.name}"
    )
    _writable_folder("--out", out)
    _replaceable_map_folder(out)
    return profile, event, custom, source, resolution


def _cache_path(args: argparse.Namespace) -> Path:
    """The cache folder ``--cache-dir`` / ``$SARSLIDE_DATA_DIR`` names, not created."""
    import pooch

    from .experiment import DATA_DIR_ENV

    return Path(
        args.cache_dir or os.environ.get(DATA_DIR_ENV) or pooch.os_cache("sarslide")
    )


def _replaceable_map_folder(out: Path) -> None:
    """``--out`` is new, empty or a map folder of the package; a folder holding anything
    else is refused now (not after the map is computed)."""
    from .engine.atomic import is_package_store

    if not out.is_dir() or is_package_store(out) or not any(out.iterdir()):
        return
    names = sorted(p.name for p in out.iterdir())
    shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
    raise CLIError(
        f"--out {out} holds files that are not a sarslide map ({shown}); a map folder "
        "is "
        f"replaced whole, so give a new or empty folder, e.g. --out {out / 'map'}"
    )


def _print_map_summary(say: _Say, scene_map, files: dict[str, Path]) -> None:
    """The threshold, the mapped area, quality, the five most affected cells and the
    files."""
    say(
        f"threshold {scene_map.threshold:.3f} ({scene_map.threshold_choice}); mapped "
        f"landslide area {scene_map.mapped_area_km2:.2f} km² "
        f"of {scene_map.valid_area_km2:.1f} km²"
    )
    quality = scene_map.quality
    if quality:
        say(f"quality against {quality['truth']}:")
        for name in ("model", "log_ratio_baseline"):
            q = quality[name]
            say(
                f"  {name:19s} precision {q['precision']:.3f}  recall "
                f"{q['recall']:.3f}  "
                f"area {q['mapped_area_km2']:.2f} of {q['true_area_km2']:.2f} km²  "
                f"heatmap r {q['heatmap_correlation']:.2f}  "
                f"top-{q['top_k']} cells shared {q['top_cells_shared']}"
            )
    if len(scene_map.ranked):
        say("most affected cells:")
        digits = {
            "x": 0,
            "y": 0,
            "lon": 4,
            "lat": 4,
            "landslide_fraction": 3,
            "landslide_area_km2": 3,
        }
        say(scene_map.ranked.head(5).round(digits).to_string(index=False))
    for key, path in files.items():
        say(f"{key:14s} {path}")


def cmd_map(args: argparse.Namespace) -> int:
    """Map an area: COGs, ranked cells (GeoJSON, CSV), quick-look PNG, web map,
    map.json."""
    say = _Say(args)
    if say.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    profile, event, custom, source, resolution = _check_map_args(args)

    from . import mapping

    cache = _cache_dir(args)
    out = (
        Path(args.out) if args.out else cache / "maps" / f"{event.name}-{profile.name}"
    )
    from .experiment import Experiment

    # the experiment of the model's training event: its chips, runs and statistics
    train = Experiment.create(args.train_event, profile, cache, args.device)
    run, paths, stats, chips = _model_stats(args, train)
    if source == "synthetic":
        pair = _synthetic_pair(event, custom, args, profile, cache)
    elif source == "files":
        pair = _files_pair(event, args, profile)
    else:
        pair = _real_pair(event, custom, source, args, profile, cache, say)
    size = f"{pair.sizes['y']}×{pair.sizes['x']} px"
    say(f"scene: {event.name} ({source}), {size} at {resolution:g} m, {pair.rio.crs}")
    if args.force:
        say("--force: the scene's statistics are not checked against the model's")
    else:
        shifts = mapping.check_input_distribution(pair, stats, force_hint="--force")
        for s in shifts:
            say.detail("  " + s.describe())
    if chips is None and (args.truth or "landslides" in pair.variables):
        # the quality block's baseline is calibrated on the training event's chips
        from .datasets import prepare_event

        chips = prepare_event(train)
    models = _load_models(args, train, run, paths, stats, chips, say)
    say(f"model: {models.description}")
    pc = source == "planetary-computer"
    scene = mapping.Scene(
        pair,
        event,
        source,
        collection=args.collection if pc else "",
        catalog=(args.catalog or "planetary-computer") if pc else "",
        files=list(args.files or []),
        resolution=resolution,
        profile=profile.name,
        overrides=list(args.set or []),
    )
    scene_map = mapping.map_scene(
        scene,
        models,
        threshold=args.threshold,
        cell_size=args.cell_size,
        top=args.top,
        window=args.window,
        truth=args.truth,
        progress=not say.quiet,
        force=True,  # checked above, before the model was loaded or trained
    )
    files = mapping.write_map_folder(
        scene_map,
        out,
        cells_crs="native" if args.cells_crs == "utm" else "lonlat",
        tiles=None if args.no_tiles else "default",
    )
    _print_map_summary(say, scene_map, files)
    return 0


# ----------------------------------------------------------------------------- parser
def _common(debug_only: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors",
    )
    if debug_only:
        return p
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="data cache (default: $SARSLIDE_DATA_DIR, else ~/.cache/sarslide)",
    )
    return p


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        "-p",
        default=None,
        help="demo (offline, synthetic) or paper (default: $SARSLIDE_PROFILE or demo)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="override one profile field, e.g. --set stage2_max_epochs=2 (repeatable)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="torch device (default: cuda if available, else cpu)",
    )


def _bbox_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bbox",
        nargs=4,
        type=float,
        metavar=("W", "S", "E", "N"),
        help="a new area: west south east north in degrees (WGS 84)",
    )
    p.add_argument(
        "--date",
        help="event day YYYY-MM-DD (00:00 UTC) or time 2018-09-05T18:08Z; with --bbox",
    )
    p.add_argument(
        "--name", help="short name of a --bbox area (default aoi-<date>-<lon>-<lat>)"
    )


def _pc_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("planetary-computer source")
    g.add_argument(
        "--collection",
        default="sentinel-1-rtc",
        choices=("sentinel-1-rtc", "sentinel-1-grd"),
        help="rtc: terrain corrected, needs PC_SDK_SUBSCRIPTION_KEY; grd: anonymous, "
        "uncalibrated",
    )
    g.add_argument(
        "--days-before",
        type=int,
        default=36,
        help="search window before the event (days, default 36)",
    )
    g.add_argument(
        "--days-after",
        type=int,
        default=24,
        help="search window after the event (days, default 24)",
    )
    g.add_argument(
        "--catalog",
        metavar="URL",
        help="another STAC API (default: Planetary Computer's)",
    )
    g.add_argument(
        "--no-sign",
        action="store_true",
        help="use asset URLs as they are (a STAC API other than Planetary Computer's)",
    )
    g.add_argument(
        "--resolution",
        type=float,
        default=None,
        help="grid of a --bbox area in metres (default 10)",
    )


MAP_EXAMPLES = """examples:
  sarslide map --event hokkaido --out maps/hokkaido   # demo: synthetic scene, offline
  sarslide map --bbox 141.9 42.7 142.0 42.8 --date 2018-09-06 --out maps/aoi
  sarslide map --files downloads/*.tif --date 2023-12-20 --profile paper --out maps/usb
  sarslide map --files catalog.json --date 2023-12-20 --model run/checkpoints --force
  sarslide map --event hokkaido --truth inventory.gpkg --cells-crs utm --quiet
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``sarslide`` argument parser (sub-commands fetch, grid, map)."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Landslide mapping from Sentinel-1 radar (Böhm et al. 2022): "
        "fetch data, run the "
        "ablation grid, map an area.",
        epilog="Run `sarslide COMMAND --help` for a command's options.",
        parents=[_common(debug_only=True)],
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    f = sub.add_parser(
        "fetch",
        parents=[common],
        help="download and verify an event's data into the cache",
        description=cmd_fetch.__doc__
        + " Afterwards `map` and `grid` run without network.",
    )
    f.add_argument(
        "event",
        nargs="?",
        help="hokkaido or kaikoura (or use --bbox/--date with planetary-computer)",
    )
    f.add_argument(
        "--source",
        choices=("zenodo", "planetary-computer"),
        default=None,
        help="the paper's datacube (default for a named event) or Planetary Computer "
        "passes",
    )
    _pc_args(f)
    f.add_argument(
        "--n-pre",
        type=int,
        default=1,
        help="pre-event passes to fetch (planetary-computer)",
    )
    f.add_argument(
        "--n-post",
        type=int,
        default=1,
        help="post-event passes to fetch (planetary-computer)",
    )
    f.add_argument(
        "--refresh",
        action="store_true",
        help="load again even if cached (planetary-computer)",
    )
    f.add_argument(
        "--url",
        help="download the datacube from this mirror URL instead of the Zenodo record",
    )
    f.add_argument(
        "--known-hash", help="checksum of --url, e.g. sha256:<hex> or md5:<hex>"
    )
    _bbox_args(f)
    f.set_defaults(func=cmd_fetch)

    g = sub.add_parser(
        "grid",
        parents=[common],
        help="run the ablation grid headless (resumable)",
        description=cmd_grid.__doc__
        + " Finished runs in the results table are skipped.",
    )
    _profile_args(g)
    g.add_argument(
        "--event", default="hokkaido", help="stage-2 event (default hokkaido)"
    )
    g.add_argument(
        "--arms",
        help="comma-separated pretraining arms (default none,hokkaido,kaikoura)",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        help="serial (default), local (a dask LocalCluster) or a scheduler address "
        "tcp://host:8786",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (1 on a multi-worker cluster)",
    )
    g.add_argument(
        "--out",
        metavar="DIR",
        help="results folder (default <cache>/ablation/<event>-<profile>)",
    )
    g.add_argument(
        "--list",
        action="store_true",
        help="list the runs and which are done; train nothing",
    )
    g.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        metavar="MIN",
        help=(
            "time budget: stop cleanly between runs once spent (the next call goes on)"
        ),
    )
    g.set_defaults(func=cmd_grid)

    m = sub.add_parser(
        "map",
        parents=[common],
        help="map an event or a bbox: COGs, GeoJSON/CSV cells, PNG, web map",
        description=cmd_map.__doc__
        + " Every argument is checked before any data work; "
        "a scene whose backscatter statistics are far from the model's training "
        "statistics is refused (--force maps it anyway).",
        epilog=MAP_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("--event", help="a known event: hokkaido or kaikoura")
    _bbox_args(m)
    m.add_argument(
        "--source",
        choices=SOURCES,
        default=None,
        help="synthetic (offline; default on the demo profile), zenodo, "
        "planetary-computer, "
        "or files (implied by --files)",
    )
    m.add_argument(
        "--files",
        nargs="+",
        metavar="PATH",
        help="scenes on disk: GeoTIFFs (one polarisation each, VV/VH and the date in "
        "the "
        "name), folders of them, or a static STAC catalog / item collection JSON; "
        "with --date (or --event)",
    )
    _pc_args(m)
    _profile_args(m)
    m.add_argument(
        "--model",
        metavar="RUN_OR_CHECKPOINT",
        help=f"run id arm-n<size|all>-s<seed> (default {DEFAULT_RUN}; trained if "
        "missing), "
        "a checkpoint file or a folder of checkpoints",
    )
    m.add_argument(
        "--train-event",
        default="hokkaido",
        help="event whose chips train / calibrate the model",
    )
    m.add_argument(
        "--force",
        action="store_true",
        help="map even a scene whose statistics are far from the model's training data",
    )
    m.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability threshold (default: calibrated on validation chips)",
    )
    m.add_argument(
        "--truth",
        metavar="INVENTORY",
        help="landslide inventory (GeoPackage, GeoJSON, shapefile, KMZ, CSV lon/lat) "
        "to "
        "score the map against; map.json then holds a quality block",
    )
    m.add_argument(
        "--cell-size",
        type=float,
        default=1000.0,
        help="density heatmap cell in metres (default 1000)",
    )
    m.add_argument(
        "--top",
        type=int,
        default=50,
        help="how many ranked cells to export (default 50)",
    )
    m.add_argument(
        "--cells-crs",
        choices=("lonlat", "utm"),
        default="lonlat",
        help="GeoJSON cells in lon/lat EPSG:4326 (RFC 7946, default) or the map's UTM "
        "CRS",
    )
    m.add_argument(
        "--no-tiles",
        action="store_true",
        help="build map.html without a basemap (offline; also "
        "$SARSLIDE_WEBMAP_TILES=none)",
    )
    m.add_argument(
        "--window",
        type=int,
        default=None,
        help="sliding-window size in pixels (default ≤ 256)",
    )
    m.add_argument(
        "--scene-size",
        type=int,
        default=None,
        help="synthetic source: an N×N px scene (default: the event's profile scene, "
        "or the bbox)",
    )
    m.add_argument(
        "--seed",
        type=int,
        default=0,
        help="synthetic source: scene seed for a bbox / --scene-size",
    )
    m.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default <cache>/maps/<event>-<profile>); replaced whole, "
        "only when every file is written",
    )
    talk = m.add_mutually_exclusive_group()
    talk.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="print nothing but errors (no progress bars)",
    )
    talk.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also print the scene's and the model's band statistics",
    )
    m.set_defaults(func=cmd_map)
    return parser


# ----------------------------------------------------------------------------- main
def _known_errors() -> tuple[type[BaseException], ...]:
    known: list[type[BaseException]] = [
        ValueError,
        KeyError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        ConnectionError,
        TimeoutError,
        FileExistsError,
    ]
    errors = sys.modules.get(
        "sarslide.acquire.errors"
    )  # only raised if it was imported
    if errors is not None:
        known.append(errors.NoPassesError)
    atomic = sys.modules.get("sarslide.engine.atomic")
    if atomic is not None:
        known.append(atomic.DiskFullError)
    return tuple(known)


def _one_line(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = " ".join(str(text).split())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sarslide`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    if getattr(args, "cache_dir", None):
        # one cache for everything below (pooch downloads and data_dir agree)
        os.environ["SARSLIDE_DATA_DIR"] = str(Path(args.cache_dir).expanduser())
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except _known_errors() as err:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
