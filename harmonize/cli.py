"""``harmonize``: sources -> FHIR R5 -> ML-ready datasets, from the command line.

Typical use (the first command does everything; the others are its steps)::

    harmonize build mds-sim-n4427-seed0 --use-case mds --source simulated --n 4427 --seed 0
    harmonize show card mds-sim-n4427-seed0
    harmonize show quality mds-sim-n4427-seed0

    harmonize export-simulated --use-case mds --n 1000 --seed 0 --out exports/mds
    harmonize ingest --use-case mds --export exports/mds --out fhir/mds
    harmonize extract --use-case mds --fhir fhir/mds --out datasets/mds-mine
    harmonize guide mds

Sources other than the generic ``export`` and ``csv`` (the simulators, the real
cohorts) are registered by the packages that provide them; the command imports
those packages first (:func:`harmonize.registry.load_source_plugins`: entry points
of group ``harmonize.sources``, then ``$HARMONIZE_SOURCES``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_EPILOG = """\
steps:  source export --(ingest)--> FHIR R5 NDJSON per resource type per centre
        --(extract)--> one parquet per centre + quality report + dataset card (content-hash id)
`build` runs every step for a registered dataset and caches it under DATA_ROOT/datasets/NAME;
training configs name that dataset (conf/use_case/*.yaml: dataset) and results.json records its id.
sources: export, csv, and those installed packages register (entry points `harmonize.sources`,
or $HARMONIZE_SOURCES=module[,module]), e.g. simulated, simulated_dialects, iwgpm, beataml.
examples:
  harmonize build mds-sim-n4427-seed0 --use-case mds --n 4427 --seed 0
  harmonize show quality mds-sim-n4427-seed0
  harmonize ingest --use-case mds --export exports/mds --out fhir/mds
  harmonize guide new --from my_cohort.csv     # a starter guide + mapping for your own table
"""


def _guide(name: str) -> Any:
    from harmonize.guide import load_guide, require_fhir

    guide = load_guide(name)
    require_fhir(guide)
    return guide


def _dataset_dir(name_or_dir: str, data_root: str) -> Path:
    from harmonize.identity import CARD_FILE
    from harmonize.registry import dataset_folder

    path = Path(name_or_dir)
    if (path / CARD_FILE).is_file():
        return path
    folder = dataset_folder(data_root, name_or_dir)
    if not (folder / CARD_FILE).is_file():
        raise SystemExit(
            f"harmonize: no dataset {name_or_dir!r} (looked for {path / CARD_FILE} and "
            f"{folder / CARD_FILE}); build it with `harmonize build`"
        )
    return folder


def _cmd_build(args: argparse.Namespace) -> None:
    from harmonize.datasets import load_or_build_dataset
    from harmonize.registry import dataset_folder, spec_for_run

    guide = _guide(args.use_case)
    spec = spec_for_run(
        use_case=guide.use_case,
        guide=args.use_case,
        source=args.source,
        dataset=args.name,
        n_patients=args.n,
        seed_data=args.seed,
        treatment="treatment" in guide.layers,  # e.g. `harmonize build mds+treatment`
    )
    df, card = load_or_build_dataset(spec, guide, args.data_root, progress=not args.quiet)
    print(
        f"{card['name']}: id {card['id']}, {card['n_rows']} rows, {card['n_events']} events, "
        f"{len(card['centres'])} centre(s) -> {dataset_folder(args.data_root, spec.name)}"
    )


def _cmd_export(args: argparse.Namespace) -> None:
    from harmonize.registry import source_registration, spec_for_run

    guide = _guide(args.use_case)
    # The registered simulated source writes its canonical export into the folder it is given.
    spec = spec_for_run(
        use_case=guide.use_case,
        guide=args.use_case,
        source="simulated",
        dataset=None,
        n_patients=args.n,
        seed_data=args.seed,
        treatment="treatment" in guide.layers,
    )
    folder = Path(args.out)
    source = source_registration("simulated").factory(guide, spec.options_dict(), folder)
    n = sum(source.n_records(c) for c in source.centres())
    print(f"wrote the canonical export of {n} simulated patients to {folder}")


def _cmd_ingest(args: argparse.Namespace) -> None:
    from harmonize.fhir import ingest_source
    from harmonize.sources import CanonicalExportSource

    guide = _guide(args.use_case)
    stats = ingest_source(CanonicalExportSource(args.export, guide), guide, args.out, progress=not args.quiet)
    for centre, st in stats.items():
        resources = sum(st.resources.values())
        print(
            f"{centre}: {st.n_patients} patients, {resources} resources "
            f"({', '.join(f'{k} {v}' for k, v in sorted(st.resources.items()))}), "
            f"{sum(st.quarantined.values())} quarantined -> {Path(args.out) / centre}"
        )


def _cmd_extract(args: argparse.Namespace) -> None:
    from harmonize.datasets import extract_dataset
    from harmonize.fhir import SOURCE_MANIFEST

    guide = _guide(args.use_case)
    fhir_dir = Path(args.fhir)
    manifest_path = fhir_dir / SOURCE_MANIFEST
    from harmonize.errors import InputError

    manifest: Any = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as err:  # JSON or UTF-8 errors are ValueErrors
            raise InputError(manifest_path, 0, "(file)", f"not a JSON manifest: {err}") from None
        if not isinstance(manifest, dict):
            raise InputError(manifest_path, 0, "(file)", "not a JSON object; rerun `harmonize ingest`")
    truth = None
    if args.truth:
        import polars as pl

        try:
            truth = pl.read_parquet(args.truth)
        except Exception as err:  # polars' own errors and OSError
            raise InputError(args.truth, 0, "(file)", f"not a readable parquet file: {err}") from None
    card = extract_dataset(
        fhir_dir,
        args.out,
        guide,
        name=args.name or Path(args.out).name,
        source_card={"name": "fhir", "options": {"path": str(fhir_dir)}},
        provenance=manifest.get("provenance", {}),
        truth=truth,
        centres=manifest.get("centres"),
        progress=not args.quiet,
    )
    print(f"{card['name']}: id {card['id']}, {card['n_rows']} rows -> {args.out}")


def _cmd_map(args: argparse.Namespace) -> None:
    from harmonize.datasets import build_dataset
    from harmonize.registry import DatasetSpec

    guide = _guide(args.use_case)
    out = Path(args.out)
    spec = DatasetSpec(
        name=args.name or out.name,
        guide=args.use_case,
        source="csv",
        options=(("mapping", list(args.mapping)),),
    )
    card = build_dataset(spec, guide, out, progress=not args.quiet, allow_empty=args.allow_empty)
    problems = 0
    for c in card["centres"]:
        report = json.loads((out / "quality" / f"{c['name']}.json").read_text(encoding="utf-8"))
        findings = report["findings"]["count"]
        problems += c["quarantined"] + findings
        unmapped = report["source"].get("unmapped_columns", [])
        for warning in report["source"].get("mapping_warnings", []):
            print(f"  warning: mapping {report['source'].get('mapping')}: {warning}", file=sys.stderr)
        table_notes = report["source"].get("table", {})
        folded = table_notes.get("records", {}).get("records_folded_into_a_field", {}).get("count", 0)
        for what in ("byte_order_mark", "row_names"):
            if what in table_notes:
                print(f"  note: {report['source'].get('file')}: {table_notes[what]}")
        if folded:
            print(f"  warning: {report['source'].get('file')}: {folded} line(s) folded into quoted fields")
        hits = report["source"].get("missing_sentinels", {}).get("set_missing", [])
        if hits:
            n = sum(h["cells"] for h in hits)
            cells = ", ".join(f"{h['column']} {h['sentinel']!r} x{h['cells']}" for h in hits)
            print(f"  note: missing-value sentinels set {n} cell(s) missing: {cells}")
        for name, d in report["source"].get("derived_features", {}).items():
            print(
                f"  note: {name} = {d['rule']}: {d['positive']} positive, {d['negative']} negative, "
                f"{d['undetermined']} undetermined"
            )
        print(
            f"{c['name']}: {c['n_records']} records -> {c['n_rows']} rows, {c['quarantined']} quarantined, "
            f"{findings} row-level findings; unmapped columns: {', '.join(unmapped) or 'none'}"
        )
        for r in report["quarantined"]["ingest"]["rows"] + report["findings"]["rows"]:
            action = r.get("action", "record quarantined")
            print(f"  {r['source']} row {r['row']}, field {r['field']!r}: {r['reason']} ({action})")
    print(
        f"{card['name']}: id {card['id']}, {card['n_rows']} rows -> {out} "
        f"(quality reports in {out / 'quality'})"
    )
    if args.strict and problems:
        sys.exit(3)


def _cmd_show(args: argparse.Namespace) -> None:
    from harmonize.identity import read_card

    folder = _dataset_dir(args.dataset, args.data_root)
    card = read_card(folder)
    if args.what == "card":
        print(json.dumps(card, indent=2))
        return
    centres = [c["name"] for c in card["centres"]]
    chosen = [args.centre] if args.centre else centres
    for centre in chosen:
        if centre not in centres:
            raise SystemExit(
                f"harmonize: dataset {card['name']!r} has no centre {centre!r}; centres: {centres}"
            )
        suffix = "json" if args.json else "md"
        print((folder / "quality" / f"{centre}.{suffix}").read_text(encoding="utf-8"))


def _cmd_guide(args: argparse.Namespace) -> None:
    if args.guide == "new":
        _cmd_guide_new(args)
        return
    if args.table is not None:
        raise SystemExit("harmonize guide: --from goes with `harmonize guide new --from TABLE`")
    guide = _guide(args.guide)
    print(
        f"{guide.use_case} guide v{guide.version} ({guide.path}): diagnosis "
        f"{guide.condition.system}|{guide.condition.code}"
    )
    undefined = []
    for f in guide.features:
        m = f.fhir
        where = f"{m.resource}.{m.element}" if m.element else m.resource
        code = f" {m.coding.system}|{m.coding.code}" if m.coding is not None else ""
        gene = f" gene {m.gene} ({m.hgnc})" if m.gene else ""
        unit = f" [{f.unit}]" if f.unit else ""
        print(f"  {f.name:<14} {f.kind:<11} {f.group:<11} {where}{code}{gene}{unit}")
        if f.definition:
            print(f"  {'':<14} = {f.definition}")
        else:
            undefined.append(f.name)
    if undefined:
        print(
            f"{len(undefined)} of {len(guide.features)} features have no definition: {', '.join(undefined)}"
        )


def _cmd_guide_new(args: argparse.Namespace) -> None:
    from harmonize.starter import write_starter

    if args.table is None:
        raise SystemExit("harmonize guide new: give the table: harmonize guide new --from TABLE [-o GUIDE]")
    guide_path, mapping_path, summary = write_starter(
        args.table,
        guide_out=args.out,
        mapping_out=args.mapping_out,
        use_case=args.use_case_name,
        delimiter=args.delimiter,
        force=args.force,
    )
    for line in summary:
        print(line)
    print(f"wrote {guide_path} and {mapping_path}; check the TODO lines, then:")
    print(f"  harmonize map --use-case {guide_path} --mapping {mapping_path} --out DATASET_FOLDER")


def build_parser() -> argparse.ArgumentParser:
    """The ``harmonize`` argument parser (build, export-simulated, ingest, extract, show, guide)."""
    parser = argparse.ArgumentParser(
        prog="harmonize",
        description="Harmonise cohort exports through FHIR R5 into registered ML-ready datasets.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an internal error (a bug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, use_case: bool = True) -> None:
        if use_case:
            p.add_argument(
                "--use-case", required=True, help="guide name (harmonize/guides/NAME.yaml) or path"
            )
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        # Also after the command (`harmonize map ... --debug`); SUPPRESS keeps the top-level value.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    b = sub.add_parser("build", help="build (or reuse) a registered dataset: every step, cached")
    b.add_argument(
        "name",
        nargs="?",
        default=None,
        help="dataset name (default: the source's; simulated: USE_CASE-sim-nN-seedS)",
    )
    common(b)
    b.add_argument("--source", default="simulated", help="a registered source (default: simulated)")
    b.add_argument("--n", type=int, default=4427, help="simulated patients (default: 4427)")
    b.add_argument("--seed", type=int, default=0, help="simulator seed (default: 0)")
    b.add_argument("--data-root", default="data", help="cache root (default: data)")
    b.set_defaults(func=_cmd_build)

    e = sub.add_parser("export-simulated", help="write a simulated cohort as a canonical per-centre export")
    common(e)
    e.add_argument("--n", type=int, default=4427, help="patients (default: 4427)")
    e.add_argument("--seed", type=int, default=0, help="simulator seed (default: 0)")
    e.add_argument("--out", required=True, help="export folder to write")
    e.set_defaults(func=_cmd_export)

    i = sub.add_parser(
        "ingest", help="source export -> validated FHIR R5 NDJSON (one file per type per centre)"
    )
    common(i)
    i.add_argument("--export", required=True, help="canonical export folder (with export.json)")
    i.add_argument("--out", required=True, help="FHIR folder to write (one sub-folder per centre)")
    i.set_defaults(func=_cmd_ingest)

    x = sub.add_parser("extract", help="FHIR NDJSON -> per-centre parquet, quality reports, dataset card")
    common(x)
    x.add_argument("--fhir", required=True, help="FHIR folder written by `harmonize ingest`")
    x.add_argument("--out", required=True, help="dataset folder to write")
    x.add_argument("--name", default=None, help="dataset name (default: the folder's name)")
    x.add_argument(
        "--truth", default=None, help="optional ground-truth parquet (simulations) to keep beside it"
    )
    x.set_defaults(func=_cmd_extract)

    m = sub.add_parser("map", help="a user table + mapping YAML -> FHIR -> dataset (csv source)")
    common(m)
    m.add_argument("--mapping", required=True, action="append", help="mapping YAML (repeat: one per centre)")
    m.add_argument("--out", required=True, help="dataset folder to write")
    m.add_argument("--name", default=None, help="dataset name (default: the folder's name)")
    m.add_argument(
        "--strict", action="store_true", help="exit 3 when any record is quarantined or value rejected"
    )
    m.add_argument(
        "--allow-empty",
        action="store_true",
        help="write the dataset even when a centre has no usable row (default: exit 4 naming the reasons)",
    )
    m.set_defaults(func=_cmd_map)

    s = sub.add_parser("show", help="print a dataset's card or its quality report(s)")
    s.add_argument("what", choices=["card", "quality"], help="card (JSON) or quality (Markdown; --json)")
    s.add_argument("dataset", help="dataset name (under DATA_ROOT/datasets) or folder")
    s.add_argument("--centre", default=None, help="one centre's quality report (default: all)")
    s.add_argument("--json", action="store_true", help="quality report as JSON")
    s.add_argument("--data-root", default="data", help="cache root (default: data)")
    s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s.set_defaults(func=_cmd_show)

    g = sub.add_parser(
        "guide",
        help="check a guide and list its features (`guide new --from TABLE`: a starter guide)",
        description="`harmonize guide NAME_OR_PATH` checks a guide and lists each feature, where it lives "
        "in FHIR and its definition. `harmonize guide new --from TABLE [-o GUIDE]` writes a starter guide "
        "and a mapping for the table (kinds, levels and ranges from its columns) for you to edit.",
    )
    g.add_argument("guide", help="guide name or path; `new` writes a starter guide from --from TABLE")
    g.add_argument(
        "--from", dest="table", default=None, help="guide new: the table (csv, tsv, xlsx, parquet)"
    )
    g.add_argument("-o", "--out", default=None, help="guide new: guide file (default: TABLE_STEM.guide.yaml)")
    g.add_argument(
        "--mapping-out", default=None, help="guide new: mapping file (default: TABLE_STEM.mapping.yaml)"
    )
    g.add_argument("--name", dest="use_case_name", default=None, help="guide new: use case name (TABLE_STEM)")
    g.add_argument(
        "--delimiter", default=None, help="guide new: delimiter of a text table (default: guessed)"
    )
    g.add_argument("--force", action="store_true", help="guide new: overwrite existing files")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    g.set_defaults(func=_cmd_guide)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one guarded boundary around every command.

    Bad input (a file that cannot be read as mapped, a broken mapping or guide, a stale
    dataset) exits 1 with one message naming file, row and field; no usable row exits 4;
    anything else is a bug: exit 70 saying where to report it, the traceback only with
    ``--debug``. Exit codes: :mod:`harmonize.errors`.
    """
    from harmonize.errors import EXIT_BAD_INPUT, EXIT_NO_ROWS, NoUsableRows
    from harmonize.guide import GuideError
    from harmonize.identity import DatasetCacheError
    from harmonize.registry import load_source_plugins

    args = build_parser().parse_args(argv)
    try:
        load_source_plugins()  # after parsing: `--help` needs no plugin
        args.func(args)
    except NoUsableRows as err:
        print(f"harmonize {args.command}: error: {err}", file=sys.stderr)
        sys.exit(EXIT_NO_ROWS)
    except (GuideError, DatasetCacheError, ImportError, OSError, ValueError, KeyError) as err:
        # InputError (SourceError, MappingError) is a ValueError: the message names file, row, field.
        print(f"harmonize {args.command}: error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print(f"harmonize {args.command}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        sys.exit(_internal_error(args, err))


def _internal_error(args: argparse.Namespace, err: Exception) -> int:
    """Report a bug: what failed and where, how to report it; the traceback only under --debug."""
    import traceback

    from harmonize.errors import EXIT_INTERNAL, REPORT_BUGS

    frames = traceback.extract_tb(err.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    print(
        f"harmonize {args.command}: internal error (a bug, not your input's fault): "
        f"{type(err).__name__}: {err} (at {where}). Please report it to {REPORT_BUGS}"
        + ("" if args.debug else "; rerun with --debug for the traceback"),
        file=sys.stderr,
    )
    if args.debug:
        traceback.print_exception(err, file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    main()
