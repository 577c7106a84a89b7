"""The ``sarslide`` command line: fetch data, run the ablation grid, map an area.

::

    sarslide fetch hokkaido --source zenodo            # fill the cache on a machine with network
    sarslide grid --profile demo --scheduler local      # the ablation grid of chapter 5, headless
    sarslide map --event hokkaido --out maps/           # chapter 7's map, as files a GIS opens
    sarslide map --bbox 141.9 42.7 142.0 42.8 --date 2018-09-06 --out maps/aoi

Every command has ``--help``. Bad input gives one line on stderr, ``sarslide: error: …``,
and exit status 1 (2 for a malformed command line); ``--debug`` shows the traceback.

Commands
--------
``fetch``
    Download and verify what an event needs into the cache (``--cache-dir`` or
    ``$SARSLIDE_DATA_DIR``): the paper's datacube from Zenodo (md5 checked by pooch, then
    unzipped and opened once to check its layout), or the nearest Sentinel-1 passes from
    Planetary Computer, loaded and saved as an event cube (zarr). Prints the cache path and
    its size. Afterwards ``map`` and ``grid`` run without network.
``grid``
    :func:`sarslide.ablation.experiment_grid` + :func:`sarslide.ablation.run_grid`: the
    resumable results table of chapter 5 (``results.parquet``), serially or on a dask
    cluster (``--scheduler local`` or ``tcp://host:8786``); prints mean ± SEM per arm ×
    size and writes it to ``summary.csv``. Before training it says how many runs are
    missing and their estimated time here; ``--max-minutes`` stops between runs (run the
    command again to go on). Two ``grid`` processes may share one results folder.
``map``
    Maps an event (``--event``) or any area (``--bbox W S E N --date YYYY-MM-DD``: an
    event record is built on the fly, UTM zone from the bbox centre) with an ensemble of
    stage-2 checkpoints (``--model``: a run id such as ``hokkaido-nall-s0``, trained through
    the package's cached get-or-train path if missing, or checkpoint files). Writes
    probability, binary map and density heatmap as Cloud-Optimized GeoTIFFs, the ranked
    cells as GeoJSON and CSV, a PNG quick-look and ``map.json`` (what was done).

Profile overrides
-----------------
``--set FIELD=VALUE`` (repeatable) changes one field of the profile
(:meth:`sarslide.profiles.Profile.with_overrides`), e.g. ``--set stage2_max_epochs=2
--set synthetic_shape=256,256 --set train_sizes=2,all``. Tuples are comma-separated;
``all``/``none`` inside ``train_sizes`` mean "all chips". Changed settings get their own
cache entries (stores are named after a hash of the profile), so nothing stale is reused.
The tests use this for tiny, fast configurations.
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
SOURCES = ("synthetic", "zenodo", "planetary-computer")
#: Largest side (pixels) of a synthetic scene built for a bounding box.
MAX_SYNTHETIC_SIDE = 4096
_RUN_ID = re.compile(r"^(?P<arm>[a-z]+)-n(?P<size>all|\d+)-s(?P<seed>\d+)$")


class CLIError(ValueError):
    """Bad command-line input; the message names the value and the fix."""


# ----------------------------------------------------------------------------- helpers
def utm_crs(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone CRS (``"EPSG:326NN"`` north, ``"EPSG:327NN"`` south) of a point.

    The zone is ``floor((lon + 180) / 6) + 1`` (the Norway/Svalbard exceptions are not
    applied: any zone works for a grid, the nearest standard one has the least distortion).
    """
    if not (-180.0 <= lon <= 180.0 and -80.0 <= lat <= 84.0):
        raise CLIError(f"({lon}, {lat}) is outside the UTM range (longitude -180..180, latitude -80..84)")
    zone = min(int(math.floor((lon + 180.0) / 6.0)) + 1, 60)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def _parse_when(text: str) -> datetime:
    """``YYYY-MM-DD`` (00:00 UTC) or an ISO time ``YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM]`` (UTC if naive)."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CLIError(
            f"--date {text!r} is not a date; use YYYY-MM-DD (e.g. 2018-09-06) or an ISO time "
            "such as 2018-09-05T18:08Z"
        ) from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    west, south, east, north = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise CLIError(f"--bbox {list(bbox)} holds a non-finite value")
    if west >= east:
        raise CLIError(f"--bbox W S E N: west {west} must be less than east {east} (order is W S E N)")
    if south >= north:
        raise CLIError(f"--bbox W S E N: south {south} must be less than north {north} (order is W S E N)")
    if west < -180 or east > 180 or south < -80 or north > 84:
        raise CLIError(
            f"--bbox {west} {south} {east} {north} leaves longitude -180..180 / latitude -80..84 "
            "(degrees, WGS 84)"
        )
    return west, south, east, north


def event_from_bbox(
    bbox: Sequence[float], when: str | date | datetime, *, name: str | None = None, resolution: float = 10.0
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
        dates 12 days before and after (the Sentinel-1 repeat; real loads pick the nearest
        passes), ``label_kind="mask"``, and no inventory or datacube (empty sources).
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
    """A :class:`sarslide.ablation.Run` from its id (``hokkaido-nall-s0``, ``none-n005-s1``), or None."""
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
    """``profile`` with ``FIELD=VALUE`` overrides applied (types follow the current values)."""
    if not items:
        return profile
    fields = {f.name for f in dataclasses.fields(profile)} - {"name"}
    changes = {}
    for item in items:
        field, sep, value = item.partition("=")
        field = field.strip()
        if not sep:
            raise CLIError(f"--set {item!r}: write FIELD=VALUE, e.g. --set stage2_max_epochs=2")
        if field not in fields:
            raise CLIError(f"--set {field}: unknown profile field; fields are {sorted(fields)}")
        changes[field] = _convert(field, value, getattr(profile, field))
    return profile.with_overrides(**changes)


def _profile(args: argparse.Namespace):
    from .profiles import get_profile

    return apply_overrides(get_profile(args.profile), args.set)


def _cache_dir(args: argparse.Namespace) -> Path:
    from .datasets import data_dir

    return data_dir(args.cache_dir)


def _checked_cache_dir(args: argparse.Namespace, *, writable: bool) -> Path:
    """The cache folder (``--cache-dir``, ``$SARSLIDE_DATA_DIR`` or the default), checked
    before any compute (:func:`sarslide.filesystem.check_folder`), then created."""
    import pooch

    from .datasets import DATA_DIR_ENV
    from .filesystem import check_folder

    raw = args.cache_dir or os.environ.get(DATA_DIR_ENV) or pooch.os_cache("sarslide")
    what = "--cache-dir" if args.cache_dir else (f"${DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV) else "the cache")
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


def _pc_cube_path(cache: Path, event, collection: str) -> Path:
    return cache / "cubes" / f"pc-{event.name}-{collection}.zarr"


def _load_pc(event, args, n_pre: int, n_post: int):
    """The lazy Planetary Computer (or ``--catalog``) cube of the nearest passes."""
    from .acquire import PC_STAC_URL, load_planetary_computer

    return load_planetary_computer(
        event, collection=args.collection, n_pre=n_pre, n_post=n_post,
        days_before=args.days_before, days_after=args.days_after,
        catalog=args.catalog or PC_STAC_URL, sign=not args.no_sign,
    )  # fmt: skip


def _resolve_event(args: argparse.Namespace):
    """The event of ``--event NAME`` / positional EVENT, or one built from ``--bbox``/``--date``."""
    from .events import get_event

    name = getattr(args, "event", None)
    bbox = getattr(args, "bbox", None)
    when = getattr(args, "date", None)
    if name and bbox:
        raise CLIError("give either an event name or --bbox/--date, not both")
    if bbox is not None:
        if when is None:
            raise CLIError("--bbox needs --date YYYY-MM-DD (the event day)")
        return event_from_bbox(bbox, when, name=getattr(args, "name", None),
                               resolution=getattr(args, "resolution", None) or 10.0), True
    if when is not None:
        raise CLIError("--date goes with --bbox W S E N; for a known event give its name only")
    if not name:
        raise CLIError("name an event (hokkaido, kaikoura) or give --bbox W S E N --date YYYY-MM-DD")
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
                "the Zenodo record holds only the paper's events (hokkaido, kaikoura); fetch a new "
                "area with --source planetary-computer"
            )
        from .acquire import NetworkUnavailableError, fetch_paper_cube, load_paper_cube

        try:
            store = fetch_paper_cube(event, cache_dir=cache, url=args.url, known_hash=args.known_hash)
        except NetworkUnavailableError as err:
            raise NetworkUnavailableError(
                f"{err} `sarslide fetch` needs access to zenodo.org (or --url of a mirror); "
                f"cache: {cache}"
            ) from err
        cube = load_paper_cube(event, path=store)  # opens and checks the layout, no network
        # the unzipped folder is what prepare_cube reuses (the archive sits next to it)
        path = next((p for p in (store, *store.parents) if p.name.endswith(".unzip")), store)
        print(f"{event.name}: the paper's datacube, {len(cube['time'])} passes, "
              f"{cube.sizes['y']}×{cube.sizes['x']} px")  # fmt: skip
    else:
        from .cube import save_cube

        collection = args.collection
        path = _pc_cube_path(cache, event, collection)
        if path.exists() and not args.refresh:
            print(f"{event.name}: already cached (use --refresh to load again)")
        else:
            cube = _load_pc(event, args, args.n_pre, args.n_post)
            print(f"{event.name}: loading {len(cube['time'])} passes of {collection}, "
                  f"{cube.sizes['y']}×{cube.sizes['x']} px …")  # fmt: skip
            from tqdm.dask import TqdmCallback

            from .progress import progress_bar

            with TqdmCallback(tqdm_class=progress_bar, desc="reading passes", unit="chunk"):
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
    raise CLIError(f"--scheduler {text!r}: use 'serial', 'local' or a scheduler address such as tcp://10.0.0.5:8786")


def aprc_text_table(summary) -> "Any":
    """APRC ``mean ± SEM`` as text, arms × sizes (``ref``: the non-learned references, ``all``)."""
    aprc = summary[summary["metric"] == "aprc"]
    sizes = aprc["train_size"].map(lambda s: "all" if s == -1 else ("ref" if s == 0 else str(s)))
    text = [f"{m:.3f}" if s != s else f"{m:.3f} ± {s:.3f}" for m, s in zip(aprc["mean"], aprc["sem"])]
    table = aprc.assign(size=sizes, text=text).pivot(index="arm", columns="size", values="text").fillna("")
    order = sorted(table.columns, key=lambda c: (c != "ref", c == "all", int(c) if c.isdigit() else 0))
    return table[order]


def _grid_done(args: argparse.Namespace, profile, runs) -> set[str]:
    """Run ids already in the grid's results folder, read without writing anything."""
    from .ablation import results_dir
    from .results_table import finished_run_ids

    if args.out:
        out = Path(args.out).expanduser()
    else:
        import pooch

        from .datasets import DATA_DIR_ENV

        raw = Path(args.cache_dir or os.environ.get(DATA_DIR_ENV) or pooch.os_cache("sarslide"))
        if not raw.is_dir():
            return set()
        out = results_dir(args.event, profile, raw)
    return finished_run_ids(out) if out.is_dir() else set()


def cmd_grid(args: argparse.Namespace) -> int:
    """Run the ablation grid headless and print its summary."""
    from .ablation import ARMS, experiment_grid, results_dir, run_grid

    profile = _profile(args)
    arms = tuple(a.strip() for a in args.arms.split(",")) if args.arms else ARMS
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise CLIError(f"--arms: unknown arm(s) {unknown}; arms are {list(ARMS)}")
    scheduler = _scheduler(args.scheduler)
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads {args.threads}: give at least 1 torch thread per run (or leave it out)")
    if args.max_minutes is not None and not (math.isfinite(args.max_minutes) and args.max_minutes > 0):
        raise CLIError(f"--max-minutes {args.max_minutes}: give a positive number of minutes, e.g. 30")
    runs = experiment_grid(profile, arms)
    done = _grid_done(args, profile, runs)
    complete = args.list or all(r.run_id in done for r in runs)
    if args.out:  # checked before the cache is created or anything computed
        from .filesystem import check_folder

        check_folder(args.out, "--out", writable=not complete)
    cache = _checked_cache_dir(args, writable=not complete)
    out = Path(args.out).expanduser() if args.out else results_dir(args.event, profile, cache)
    if args.list:
        from .ablation import grid_plan

        for run in runs:
            print(f"{run.run_id:24s} {'done' if run.run_id in done else 'to do'}")
        print(f"{len(runs)} runs, {sum(r.run_id in done for r in runs)} done; results: {out / 'results.parquet'}")
        if any(r.run_id not in done for r in runs):
            plan = grid_plan(runs, event=args.event, profile=profile, out_dir=out, cache_dir=cache,
                             device=args.device, prepare=False)  # fmt: skip
            print(plan.describe())
        return 0
    print(f"{len(runs)} runs ({', '.join(arms)}) on {args.event}, profile {profile.name}; results in {out}")
    table = run_grid(runs, event=args.event, profile=profile, out_dir=out, cache_dir=cache,
                     scheduler=scheduler, device=args.device, num_threads=args.threads, progress=True,
                     max_minutes=args.max_minutes)  # fmt: skip
    left = table.attrs.get("left_for_later", [])
    if left:
        print(f"stopped for the time budget: {len(left)} of {len(runs)} runs left; run the same "
              "command again to go on (finished runs are kept)")  # fmt: skip
    from .ablation import summarize
    from .atomic import atomic_file

    reused = table.attrs.get("reused_runs", [])
    if reused:
        print(f"{len(reused)} of {len(runs)} runs were already finished with these settings; reused")
    summary = summarize(table)
    _print_health(table, out)

    with atomic_file(out / "summary.csv", suffix=".csv") as tmp:
        summary.to_csv(tmp, index=False)
    print("\nAPRC on the test chips, mean ± SEM over seeds (ref: the non-learned references)")
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
    print(f"\ntraining health of {len(health)} runs: "
          + ", ".join(f"{n} {status}" for status, n in counts.items())
          + f"; {first} keep their first epoch as best")  # fmt: skip
    for row in health[health["status"] != "trained"].itertuples():
        print(f"  {row.run_id:24s} {row.status:10s} {row.reason}")


# ----------------------------------------------------------------------------- map
def _checkpoint_paths(spec: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        sub = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = sorted(sub.glob("top-epoch*.pt")) or sorted(sub.glob("*.pt"))
        if not found:
            raise FileNotFoundError(f"--model {spec}: the folder holds no checkpoint (*.pt)")
        return found
    if not path.exists():
        raise FileNotFoundError(
            f"--model {spec}: no such checkpoint file, and not a run id (arm-n<size|all>-s<seed>, "
            f"e.g. {DEFAULT_RUN}; arms none, hokkaido, kaikoura)"
        )
    return [path]


def _models(args, profile, cache):
    """(models, band stats, chips or None, description) for ``--model``."""
    from .ablation import run_models
    from .datasets import prepare_event

    spec = args.model or DEFAULT_RUN
    run = parse_run_id(spec)
    if run is not None:
        chips = prepare_event(args.train_event, profile, cache_dir=cache)
        models = run_models(run, event=args.train_event, profile=profile, cache_dir=cache,
                            device=args.device, progress=True)  # fmt: skip
        return models, chips.stats, chips, f"run {run.run_id} ({len(models)} checkpoints, trained on {args.train_event})"
    from .checkpoints import checkpoint_info, load_checkpoints

    paths = _checkpoint_paths(spec)
    models = load_checkpoints(paths, "stage2", device=args.device or "cpu")
    all_stats = [checkpoint_info(p).get("stats") for p in paths]
    if any(st != all_stats[0] for st in all_stats[1:]):
        raise CLIError(
            f"--model {spec}: the checkpoints were trained with different band statistics "
            "(different chips); map with checkpoints of one run, or one checkpoint at a time"
        )
    stats = all_stats[0]
    chips = None
    if stats is None or args.threshold is None:
        chips = prepare_event(args.train_event, profile, cache_dir=cache)
        stats = stats or chips.stats
    return models, stats, chips, f"{len(paths)} checkpoint(s) from {paths[0].parent}"


def _synthetic_pair(event, custom: bool, args, profile, cache):
    from .datasets import prepare_cube, profile_pass_pair

    if not custom and args.scene_size is None:
        cube = prepare_cube(event.name, profile, cache_dir=cache)
    else:
        from .synthetic import make_cube

        if args.scene_size is not None:
            shape = (args.scene_size, args.scene_size)
        else:
            from .acquire import event_geobox

            shape = tuple(int(s) for s in event_geobox(event).shape)
            if max(shape) > MAX_SYNTHETIC_SIDE:
                raise CLIError(
                    f"the bbox is {shape[0]}×{shape[1]} px at {event.resolution:g} m; a synthetic scene "
                    f"is limited to {MAX_SYNTHETIC_SIDE} px a side: pass --scene-size or a smaller bbox"
                )
        cube = make_cube(shape, event=event, n_pre=profile.n_pre_passes, n_post=profile.n_post_passes,
                         seed=args.seed)  # fmt: skip
    # A new area (a bbox) has no paper passes to name: take the nearest same-track pair.
    return profile_pass_pair(cube, profile.with_overrides(named_passes=False) if custom else profile)


def _real_pair(event, custom: bool, source: str, args, profile, cache):
    from .acquire import MissingKeyError, NetworkUnavailableError
    from .cube import open_cube
    from .datasets import profile_pass_pair

    fetch_hint = (
        f"run `sarslide fetch {event.name if not custom else '--bbox … --date …'} --source {source}` "
        "on a machine with network first, or map offline with --profile demo (synthetic)"
    )
    try:
        if source == "zenodo":
            if custom:
                raise CLIError("--source zenodo holds only the paper's events; use --source planetary-computer for a bbox")
            from .acquire import load_paper_cube

            cube = load_paper_cube(event, cache_dir=cache)
        else:
            path = _pc_cube_path(cache, event, args.collection)
            if path.exists():
                cube = open_cube(path, require_labels=False)
            else:
                cube = _load_pc(event, args, profile.n_pre_passes, profile.n_post_passes)
    except NetworkUnavailableError as err:
        raise NetworkUnavailableError(f"{err} Or {fetch_hint}.") from err
    except MissingKeyError as err:
        raise MissingKeyError(f"{err} Or {fetch_hint}.") from err
    # A new area (a bbox) has no paper passes to name: take the nearest same-track pair.
    return profile_pass_pair(cube, profile.with_overrides(named_passes=False) if custom else profile)


def _window(args, models, pair) -> int:
    import numpy as np

    multiple = int(np.lcm.reduce([int(getattr(m, "size_multiple", 1) or 1) for m in models]))
    if args.window is not None:
        return args.window
    fit = min(pair.sizes["y"], pair.sizes["x"], 256) // multiple * multiple
    if fit < 32:
        raise CLIError(f"the scene is {pair.sizes['y']}×{pair.sizes['x']} px, too small to map; use a larger area")
    return fit


def _check_map_args(args: argparse.Namespace):
    """``(profile, event, custom, source)`` of ``sarslide map``, every argument checked.

    Runs before the heavy imports and any data work, so a bad flag fails in a second.
    """
    profile = _profile(args)
    event, custom = _resolve_event(args)
    if args.source:
        source = args.source
    elif profile.offline:
        source = "synthetic"
    else:
        source = "planetary-computer" if custom else "zenodo"
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CLIError(
            f"--threshold {args.threshold}: a probability threshold lies in [0, 1]"
        )
    if args.model and parse_run_id(args.model) is None:
        _checkpoint_paths(args.model)
    positive = (
        ("--cell-size", args.cell_size),
        ("--top", args.top),
        ("--window", args.window),
        ("--scene-size", args.scene_size),
    )
    for flag, value in positive:
        if value is not None and value <= 0:
            raise CLIError(f"{flag} {value}: must be positive")
    return profile, event, custom, source


def _map_threshold(args: argparse.Namespace, models, stats, chips) -> tuple[float, str]:
    """``(threshold, how it was chosen)``: ``--threshold``, else calibrated on validation.

    The calibration predicts the chip set's validation chips with the same models
    (ensemble mean of probabilities) and makes the mapped landslide area unbiased there
    (:func:`sarslide.mapping.calibrate_threshold`).
    """
    if args.threshold is not None:
        return float(args.threshold), "given"
    from .mapping import calibrate_threshold
    from .predict import predict_proba
    from .transforms import standardize

    val = chips.split("validation")
    val_prob = predict_proba(models, standardize(val.images, stats), device=args.device)
    return calibrate_threshold(val_prob, val.labels), "calibrated on validation chips"


def _write_map_files(out: Path, prob, binary, heatmap, ranked, title: str) -> dict[str, Path]:
    """Write the three COGs, the ranked cells (GeoJSON, CSV) and the quick-look PNG.

    Returns ``{kind: path}`` in the order written (``probability``, ``binary``,
    ``density``, ``cells_geojson``, ``cells_csv``, ``quicklook``).
    """
    from . import mapping

    cells = mapping.cells_frame(ranked, heatmap)
    files = {
        "probability": mapping.write_cog(prob, out / "landslide_probability.tif"),
        "binary": mapping.write_cog(binary, out / "landslide_map.tif"),
        "density": mapping.write_cog(heatmap, out / "landslide_density.tif"),
    }
    files["cells_geojson"], files["cells_csv"] = mapping.write_cells(
        cells, out / "most_affected_cells.geojson", out / "most_affected_cells.csv"
    )
    files["quicklook"] = mapping.write_quicklook(
        prob, binary, heatmap, out / "quicklook.png", ranked=ranked.head(10), title=title
    )
    return files


def _map_areas_km2(prob, binary) -> tuple[float, float]:
    """``(mapped landslide area, valid area)`` in km² of a map on a regular grid."""
    import numpy as np

    valid = int(np.isfinite(prob.values).sum())
    dx = float(prob["x"][1] - prob["x"][0])
    dy = float(prob["y"][0] - prob["y"][1])
    pixel_km2 = abs(dx * dy) / 1e6
    return float((binary.values == 1).sum()) * pixel_km2, valid * pixel_km2


def _print_map_summary(record: dict[str, Any], ranked, files: dict[str, Path]) -> None:
    """The threshold, the mapped area, the five most affected cells and the files."""
    print(
        f"threshold {record['threshold']:.3f} ({record['threshold_choice']}); mapped "
        f"landslide area {record['mapped_area_km2']:.2f} km² "
        f"of {record['valid_area_km2']:.1f} km²"
    )
    if len(ranked):
        print("most affected cells:")
        digits = {"x": 0, "y": 0, "lon": 4, "lat": 4, "landslide_fraction": 3,
                  "landslide_area_km2": 3}  # fmt: skip
        print(ranked.head(5).round(digits).to_string(index=False))
    for key, path in files.items():
        print(f"{key:14s} {path}")


def cmd_map(args: argparse.Namespace) -> int:
    """Map an area: COGs, ranked cells (GeoJSON, CSV), quick-look PNG, map.json."""
    profile, event, custom, source = _check_map_args(args)

    from . import mapping
    from .atomic import atomic_file

    cache = _cache_dir(args)
    out = Path(args.out) if args.out else cache / "maps" / f"{event.name}-{profile.name}"
    out.mkdir(parents=True, exist_ok=True)
    if source == "synthetic":
        pair = _synthetic_pair(event, custom, args, profile, cache)
    else:
        pair = _real_pair(event, custom, source, args, profile, cache)
    size = f"{pair.sizes['y']}×{pair.sizes['x']} px"
    print(f"scene: {event.name} ({source}), {size}, {pair.rio.crs}")
    models, stats, chips, model_text = _models(args, profile, cache)
    print(f"model: {model_text}")
    window = _window(args, models, pair)
    prob = mapping.predict_probability(
        pair, models, stats, window=window, device=args.device, progress=True
    )
    threshold, how = _map_threshold(args, models, stats, chips)
    binary = mapping.binary_map(prob, threshold)
    heatmap = mapping.density_heatmap(binary, cell_size=args.cell_size)
    ranked = mapping.rank_cells(heatmap, top=args.top)
    title = f"{event.title} — {source}, threshold {threshold:.3g}"
    files = _write_map_files(out, prob, binary, heatmap, ranked, title)
    mapped_km2, valid_km2 = _map_areas_km2(prob, binary)
    record = {
        "event": event.name,
        "title": event.title,
        "event_time_utc": event.time_utc.isoformat(),
        "bounds_lonlat": list(event.bounds_lonlat),
        "crs": str(pair.rio.crs),
        "source": source,
        "profile": profile.name,
        "profile_overrides": list(args.set or []),
        "model": model_text,
        "threshold": threshold,
        "threshold_choice": how,
        "window": window,
        "cell_size_m": float(args.cell_size),
        "mapped_area_km2": mapped_km2,
        "valid_area_km2": valid_km2,
        "pre_times": list(pair.attrs.get("pre_times", [])),
        "post_times": list(pair.attrs.get("post_times", [])),
        "files": {k: p.name for k, p in files.items()},
    }
    with atomic_file(out / "map.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    _print_map_summary(record, ranked, files)
    return 0


# ----------------------------------------------------------------------------- parser
def _common(debug_only: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback on errors")  # fmt: skip
    if debug_only:
        return p
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="data cache (default: $SARSLIDE_DATA_DIR, else ~/.cache/sarslide)")  # fmt: skip
    return p


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", "-p", default=None,
                   help="demo (offline, synthetic) or paper (default: $SARSLIDE_PROFILE or demo)")  # fmt: skip
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override one profile field, e.g. --set stage2_max_epochs=2 (repeatable)")  # fmt: skip
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def _bbox_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                   help="a new area: west south east north in degrees (WGS 84)")  # fmt: skip
    p.add_argument("--date", help="event day YYYY-MM-DD (00:00 UTC) or time 2018-09-05T18:08Z; with --bbox")
    p.add_argument("--name", help="short name of a --bbox area (default aoi-<date>-<lon>-<lat>)")


def _pc_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("planetary-computer source")
    g.add_argument("--collection", default="sentinel-1-rtc", choices=("sentinel-1-rtc", "sentinel-1-grd"),
                   help="rtc: terrain corrected, needs PC_SDK_SUBSCRIPTION_KEY; grd: anonymous, uncalibrated")  # fmt: skip
    g.add_argument("--days-before", type=int, default=36, help="search window before the event (days, default 36)")
    g.add_argument("--days-after", type=int, default=24, help="search window after the event (days, default 24)")
    g.add_argument("--catalog", metavar="URL", help="another STAC API (default: Planetary Computer's)")
    g.add_argument("--no-sign", action="store_true",
                   help="use asset URLs as they are (a STAC API other than Planetary Computer's)")  # fmt: skip
    g.add_argument("--resolution", type=float, default=None, help="grid of a --bbox area in metres (default 10)")


def build_parser() -> argparse.ArgumentParser:
    """The ``sarslide`` argument parser (sub-commands fetch, grid, map)."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Landslide mapping from Sentinel-1 radar (Böhm et al. 2022): fetch data, run the "
                    "ablation grid, map an area.",
        epilog="Run `sarslide COMMAND --help` for a command's options.",
        parents=[_common(debug_only=True)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    f = sub.add_parser("fetch", parents=[common], help="download and verify an event's data into the cache",
                       description=cmd_fetch.__doc__ + " Afterwards `map` and `grid` run without network.")  # fmt: skip
    f.add_argument("event", nargs="?", help="hokkaido or kaikoura (or use --bbox/--date with planetary-computer)")
    f.add_argument("--source", choices=("zenodo", "planetary-computer"), default=None,
                   help="the paper's datacube (default for a named event) or Planetary Computer passes")  # fmt: skip
    _pc_args(f)
    f.add_argument("--n-pre", type=int, default=1, help="pre-event passes to fetch (planetary-computer)")
    f.add_argument("--n-post", type=int, default=1, help="post-event passes to fetch (planetary-computer)")
    f.add_argument("--refresh", action="store_true", help="load again even if cached (planetary-computer)")
    f.add_argument("--url", help="download the datacube from this mirror URL instead of the Zenodo record")
    f.add_argument("--known-hash", help="checksum of --url, e.g. sha256:<hex> or md5:<hex>")
    _bbox_args(f)
    f.set_defaults(func=cmd_fetch)

    g = sub.add_parser("grid", parents=[common], help="run the ablation grid headless (resumable)",
                       description=cmd_grid.__doc__ + " Finished runs in the results table are skipped.")  # fmt: skip
    _profile_args(g)
    g.add_argument("--event", default="hokkaido", help="stage-2 event (default hokkaido)")
    g.add_argument("--arms", help="comma-separated pretraining arms (default none,hokkaido,kaikoura)")
    g.add_argument("--scheduler", default=None,
                   help="serial (default), local (a dask LocalCluster) or a scheduler address tcp://host:8786")  # fmt: skip
    g.add_argument("--threads", type=int, default=None, help="torch threads per run (1 on a multi-worker cluster)")
    g.add_argument("--out", metavar="DIR", help="results folder (default <cache>/ablation/<event>-<profile>)")
    g.add_argument("--list", action="store_true", help="list the runs and which are done; train nothing")
    g.add_argument("--max-minutes", type=float, default=None, metavar="MIN",
                   help="time budget: stop cleanly between runs once spent (the next call goes on)")  # fmt: skip
    g.set_defaults(func=cmd_grid)

    m = sub.add_parser("map", parents=[common], help="map an event or a bbox: COGs, GeoJSON/CSV cells, PNG",
                       description=cmd_map.__doc__)  # fmt: skip
    m.add_argument("--event", help="a known event: hokkaido or kaikoura")
    _bbox_args(m)
    m.add_argument("--source", choices=SOURCES, default=None,
                   help="synthetic (offline; default on the demo profile), zenodo or planetary-computer")  # fmt: skip
    _pc_args(m)
    _profile_args(m)
    m.add_argument("--model", metavar="RUN_OR_CHECKPOINT",
                   help=f"run id arm-n<size|all>-s<seed> (default {DEFAULT_RUN}; trained if missing), "
                        "a checkpoint file or a folder of checkpoints")  # fmt: skip
    m.add_argument("--train-event", default="hokkaido", help="event whose chips train / calibrate the model")
    m.add_argument("--threshold", type=float, default=None,
                   help="probability threshold (default: calibrated on validation chips)")  # fmt: skip
    m.add_argument("--cell-size", type=float, default=1000.0, help="density heatmap cell in metres (default 1000)")
    m.add_argument("--top", type=int, default=50, help="how many ranked cells to export (default 50)")
    m.add_argument("--window", type=int, default=None, help="sliding-window size in pixels (default ≤ 256)")
    m.add_argument("--scene-size", type=int, default=None,
                   help="synthetic source: an N×N px scene (default: the event's profile scene, or the bbox)")  # fmt: skip
    m.add_argument("--seed", type=int, default=0, help="synthetic source: scene seed for a bbox / --scene-size")
    m.add_argument("--out", metavar="DIR", help="output folder (default <cache>/maps/<event>-<profile>)")
    m.set_defaults(func=cmd_map)
    return parser


# ----------------------------------------------------------------------------- main
def _known_errors() -> tuple[type[BaseException], ...]:
    known: list[type[BaseException]] = [ValueError, KeyError, FileNotFoundError, NotADirectoryError,
                                         IsADirectoryError, PermissionError, ConnectionError, TimeoutError]  # fmt: skip
    errors = sys.modules.get("sarslide.acquire.errors")  # only raised if it was imported
    if errors is not None:
        known.append(errors.NoPassesError)
    atomic = sys.modules.get("sarslide.atomic")
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
