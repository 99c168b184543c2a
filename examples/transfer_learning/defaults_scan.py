"""Which gmnn-finetune settings work for energy-only fine-tuning (issue 11, item 2)?

One setting at a time is changed from gmnn-finetune's defaults (learning rate, epochs, batch size,
layer lr factor, freezing, L2-SP anchor). Each variant fine-tunes the pre-trained PBE model on the
CCSD(T) energies of rMD17 frames 0..N-1 and is scored on frames 25-49: CCSD(T) energies AND forces
of 25 structures the fine-tune never saw. The final test set (frames 50-99, run_experiment.py) is
not used here, so the defaults are not chosen on it.

    python examples/transfer_learning/defaults_scan.py --pretrained runs/transfer_learning_1300/pretrain/best.ckpt

Finished runs are reused; results: <out>/defaults_scan.{json,md} (copied to results/ by hand).
"""
import argparse
import json
from pathlib import Path

import ase.io

from gmnn.checkpoint import load_model
from gmnn.config import config_from_dict
from gmnn.data import read_structures
from gmnn.evaluation import error_metrics, predict_graphs
from gmnn.finetuning import finetune
from gmnn.graph import build_graphs
from gmnn.pretrained import resolve_model_source
from gmnn.units import ENERGY_UNITS

HERE = Path(__file__).resolve().parent
KCAL = 1 / ENERGY_UNITS["kcal/mol"]  # kcal/mol per eV
SCORE_SOURCES = range(25, 50)

# name -> (training overrides, finetune overrides); "default" is gmnn-finetune as shipped
VARIANTS = {
    "zero-shot": ({}, {}),  # the baseline: no training, energy shifts re-fitted
    "default": ({}, {}),
    "lr 1e-3": ({"lr": 1e-3}, {}),
    "lr 1e-2": ({"lr": 1e-2}, {}),
    "epochs 200": ({"epochs": 200}, {}),
    "epochs 1000": ({"epochs": 1000}, {}),
    "batch 2": ({"batch_size": 2}, {}),
    "layer factor 1": ({}, {"layer_lr_factor": 1.0}),
    "layer factor 6": ({}, {"layer_lr_factor": 6.0}),
    "freeze descriptor": ({}, {"freeze": ["descriptor"]}),
    "freeze descriptor+dense0": ({}, {"freeze": ["descriptor", "dense0"]}),
    "anchor 1e-4": ({}, {"anchor_weight": 1e-4}),
    "anchor 1e-2": ({}, {"anchor_weight": 1e-2}),
}


def slug(name: str) -> str:
    return name.replace(" ", "_").replace("+", "_")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", required=True, help="a checkpoint, or a shipped model's name")
    p.add_argument("--out", default="runs/defaults_scan")
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 25])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    out = Path(args.out)
    pretrained = resolve_model_source(args.pretrained)
    model = load_model(pretrained)
    forces_file = HERE / "data/ethanol_ccsdt_ccpvdz_forces.xyz"
    sources = [int(a.info["source_index"]) for a in ase.io.read(forces_file, ":")]
    labelled = [s for s, k in zip(read_structures(forces_file), sources) if k in SCORE_SOURCES]
    assert len(labelled) == len(SCORE_SOURCES), "CCSD(T) forces of frames 25-49 missing"
    score_graphs = build_graphs(labelled, model.atomic_numbers, model.cutoff)
    energies = HERE / "data/ethanol_ccsdt_ccpvdz.xyz"
    results_path = out / "defaults_scan.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for n in args.sizes:
        for name in args.variants:
            key = f"N={n} {name}"
            run_dir = out / f"n{n}" / slug(name)
            training, ft = VARIANTS[name]
            config = config_from_dict({"output_dir": str(run_dir),
                                       "data": {"train_file": str(energies), "train_index": f"0:{n}"},
                                       "training": {"force_weight": 0.0, "threads": 1, **training},
                                       "finetune": dict(ft)})
            if not (run_dir / "final_metrics.json").exists():
                finetune(config, pretrained, show_progress=False, overwrite=True,
                         zero_shot_only=name == "zero-shot")
            winner = json.loads((run_dir / "final_metrics.json").read_text())["selection"]["winner"]
            m = error_metrics(predict_graphs(load_model(run_dir / "best.ckpt"), score_graphs))
            results[key] = {"n": n, "variant": name, "energy_mae_kcal": KCAL * m["energy_mae"],
                            "forces_mae_kcal": KCAL * m["forces_mae"], "selected": winner}
            print(json.dumps(results[key]), flush=True)
            out.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=2))
            (out / "defaults_scan.md").write_text(table(results))
    print(table(results))


def table(results) -> str:
    sizes = sorted({r["n"] for r in results.values()})
    names = [v for v in VARIANTS if any(r["variant"] == v for r in results.values())]
    head = "| variant | " + " | ".join(f"N = {n}: E / F" for n in sizes) + " |"
    rows = [head, "|---" * (len(sizes) + 1) + "|"]
    for v in names:
        cells = []
        for n in sizes:
            r = results.get(f"N={n} {v}")
            cells.append(f"{r['energy_mae_kcal']:.3f} / {r['forces_mae_kcal']:.2f}" if r else "-")
        rows.append(f"| {v} | " + " | ".join(cells) + " |")
    rows.append("")
    rows.append("CCSD(T) energy / force MAE (kcal/mol, kcal/mol/Å) on rMD17 frames 25-49 (25 structures, "
                "never in the fine-tuning set), energy-only fine-tuning on frames 0..N-1.")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
