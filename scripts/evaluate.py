"""Measure how often the service finds the right person, and how rarely a stranger.

  python scripts/evaluate.py [SET_DIR ...] [--pack buffalo_s,yunet_sface] [--costs] [--out reports/evaluation]
  python scripts/evaluate.py SET_DIR --url http://127.0.0.1:8000 --key K --secret S

A set is a folder in the ``../shared/datasets`` layout: ``manifest.csv`` (path,identity or
path,expected_faces) and optionally ``pairs.csv`` (fold,path_a,path_b,same) or
``pairs_paths.csv`` (path_a,path_b,same; folds assigned in turn). Per set and pack:

- detection: share of photos with a face, faces per photo (and against expected_faces);
- verification: 10-fold accuracy on the pairs (threshold chosen on nine folds, tested on
  the tenth), TAR at FAR 1e-2 and 1e-3 over every same/different pair of the set;
- closed-set identification through the real index: one photo per person enrolled with
  the add use case, every other photo searched, recall@1 and recall@5;
- open-set search at the service's default threshold: only half the people enrolled;
  the share of stranger probes that get an answer (FPIR) and of enrolled people missed.

Each photo is embedded once, by the service's own pipeline (``FaceReader.faces_in``), and the
faces are cached under the output folder keyed by the pipeline's code, so re-runs and
the calibration reuse them. With ``--url`` the identification runs through a running
server instead (the key's gallery must be empty; everything added is deleted at the end);
verification needs pair scores the API does not return, so it is measured locally only.
``--calibrate`` also prints the pack's stranger-rate calibration table from the set's
different-person pairs (see service/core/threshold.py) and the open-set rates at 1k-100k faces.

With several packs, one side-by-side table puts them next to each other on every set.
``--costs`` adds what each pack costs on this machine (service/harness/pack_costs.py): ms per
250x250 photo with the packs timed in turn in the same run, the models' memory, and the
bytes a face takes in the index and in LMDB.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.packs import load_pack
from service.harness import pack_costs, persons_evaluation
from service.harness.evaluation import (
    TIGHT,
    AllPairs,
    DataSet,
    Embedded,
    calibration_markdown,
    default_sets,
    evaluate_set,
    joint_calibration,
    load_set,
    markdown,
    models_markdown,
    side_by_side,
    tight_set,
)
from service.harness.live import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "sets", nargs="*", type=Path, help="data set folders (default: every set in ../shared/datasets)"
    )
    parser.add_argument("--pack", "--packs", dest="packs", default="buffalo_s", help="comma-separated model packs")
    parser.add_argument("--out", default=str(ROOT / "reports" / "evaluation"))
    parser.add_argument("--calibrate", action="store_true", help="print the stranger-rate calibration of each set")
    parser.add_argument("--costs", action="store_true", help="time, memory and bytes per face of each pack")
    parser.add_argument("--persons", action="store_true", help="grouping against Immich's rules, and search by person")
    parser.add_argument("--parts", action="store_true", help="also each embedder of a fused pack alone (research)")
    parser.add_argument(
        "--tight", type=int, default=0, metavar="PEOPLE",
        help=f"also {TIGHT}: tight crops of LFW photos of this many people, made in memory",
    )  # fmt: skip
    parser.add_argument("--reference", default="buffalo_s", help="the pack others are compared with split by split")
    parser.add_argument("--url", help="measure identification through this running server (loopback or yours)")
    parser.add_argument("--key")
    parser.add_argument("--secret")
    args = parser.parse_args(argv)
    if args.url and not (args.key and args.secret):
        parser.error("--url needs --key and --secret")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    packs = args.packs.split(",")
    for pack_name in packs:
        load_pack(pack_name)  # fail early on a missing pack
    reports, calibrations = [], {}
    pairs: dict[str, dict[str, AllPairs]] = {pack_name: {} for pack_name in packs}

    def with_every_pack(data: DataSet) -> Embedded:
        """Evaluates ``data`` with each pack in turn; the first pack's faces."""
        faces = []
        for pack_name in packs:
            print(f"evaluating {data.name} with {pack_name} ({len(data.paths)} photos)", file=sys.stderr)
            made, calibrated, measured_pairs, embedded = evaluate_set(data, pack_name, args)
            reports.extend(made)
            calibrations.update({f"{name}/{pack_name}": c for name, c in calibrated.items()})
            pairs[pack_name].update(measured_pairs)
            faces.append(embedded)
        return faces[0]

    tight_from = None  # the LFW faces of the first pack: where the tight crops are cut
    for root in args.sets or default_sets():
        data = load_set(root)
        embedded = with_every_pack(data)
        if data.name == "lfw":
            tight_from = (data, embedded)
    if args.tight and tight_from is not None:
        with_every_pack(tight_set(*tight_from, args.tight))
    for pack_name in packs:  # one default for LFW, its East Asian people and tight crops alike
        found = pairs[pack_name]
        groups = [name for name in found if name != "lfw" and name.startswith("lfw")]
        if "lfw" in found and groups:
            joint = joint_calibration(
                load_pack(pack_name),
                (found["lfw"], calibrations[f"lfw/{pack_name}"]),
                {name: (found[name], calibrations[f"{name}/{pack_name}"]) for name in groups},
            )
            calibrations["+".join(["lfw", *groups]) + f"/{pack_name}"] = joint
    costs = pack_costs.measure(packs) if args.costs else None
    table = "\n\n".join(
        [markdown(reports), side_by_side(reports, costs), models_markdown(reports, args.reference, costs)]
    )
    if costs:
        table += "\n\n" + pack_costs.markdown(costs)
    grouped = {f"{r['set']}/{r['pack']}": r["persons"] for r in reports if "persons" in r}
    if grouped:
        table += "\n\n" + persons_evaluation.markdown(grouped)
    print(table)
    for name, calibrated in calibrations.items():
        print()
        print(calibration_markdown(name, calibrated))
        print("pack.json calibration:", json.dumps(calibrated["manifest"]))
    out = Path(args.out)
    (out / "report.json").write_text(
        json.dumps({"reports": reports, "calibration": calibrations, "costs": costs}, indent=2)
    )
    (out / "report.md").write_text(
        table + "".join(f"\n\n{calibration_markdown(n, c)}" for n, c in calibrations.items()) + "\n"
    )
    print(f"\nwrote {out / 'report.json'}, {out / 'report.md'} and one PNG per labelled set", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
