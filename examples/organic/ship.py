"""Ship a pre-trained organic model into the package (issue 17): its best checkpoint without
optimizer state as python/gmnn/pretrained_models/<name>.ckpt, and its model card <name>.json with
the errors measured here (the run's validation frames, every held-out molecule, which training
never saw), plus results/<name>_heldout.md, the held-out errors molecule by molecule.

The run is either gmnn-train's (the GFN2-xTB pre-training) or gmnn-finetune's (the PBE stage, a
fine-tune of a shipped model): the card then records the model it started from, the
cross-validation that chose it and, next to its held-out errors, the two baselines it must beat:
the starting model with its energy shifts re-fitted to the new labels (zero-shot) and GFN2-xTB
itself against the same labels (results/xtb_vs_pbe_heldout.json).

    python examples/organic/ship.py --run runs/organic_gfn2 --name organic-gfn2xtb
    python examples/organic/ship.py --run runs/organic_pbe --name organic-pbe-def2svp --level pbe/def2-svp
"""
import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import gmnn
from gmnn.checkpoint import load_checkpoint, load_model
from gmnn.config import config_from_dict
from gmnn.data import read_structures
from gmnn.evaluation import error_metrics, predict_graphs
from gmnn.finetuning import finetune
from gmnn.graph import build_graphs
from gmnn.pretrained import MODELS_DIR, sha256, slim_checkpoint
from gmnn.units import ENERGY_UNITS

HERE = Path(__file__).resolve().parent
KCAL = 1 / ENERGY_UNITS["kcal/mol"]  # kcal/mol per eV
LEVELS = {"gfn2-xtb": "GFN2-xTB (tblite), total energies and forces of the neutral singlet, no solvent",
          "pbe/def2-svp": "PBE/def2-SVP (PySCF, density fitting), all-electron total energies and forces of the "
                          "neutral singlet; the level of rMD17 and of the project's other data"}
HELDOUT = {"gfn2-xtb": HERE / "data" / "xtb" / "organic_heldout_gfn2.xyz",
           "pbe/def2-svp": HERE / "data" / "pbe_heldout_pbe_def2svp.xyz"}
GEOMETRIES = ("per molecule, from its SMILES (RDKit ETKDG conformers): MMFF94 Langevin MD at 300, 500, 700 and 1000 K "
              "(45 frames each) and GFN2-xTB normal-mode displacements at 500 and 1000 K (40 each)")


def errors(metrics: dict, description: str) -> dict:
    out = {"description": description, "n_structures": int(metrics["n_structures"])}
    for key in ("energy_mae", "energy_rmse", "energy_per_atom_mae", "forces_mae", "forces_rmse"):
        out[key + ("_eV" if key.startswith("energy") else "_eV_per_A")] = round(metrics[key], 5)
    out["energy_mae_kcal_per_mol"] = round(KCAL * metrics["energy_mae"], 3)
    out["forces_mae_kcal_per_mol_per_A"] = round(KCAL * metrics["forces_mae"], 3)
    return out


def per_molecule(model, structures) -> dict:
    """Errors of each molecule (info['name']) and of all of them together."""
    groups = defaultdict(list)
    for s in structures:
        groups[s.info["name"]].append(s)
    predict = lambda group: error_metrics(predict_graphs(model, build_graphs(group, model.atomic_numbers, model.cutoff)))
    return {name: predict(group) for name, group in sorted(groups.items())}, predict(structures)


def table(rows: dict, level: str, name: str, zero_shot_rows: dict | None = None) -> str:
    """Held-out errors molecule by molecule; for a fine-tune, next to its zero-shot baseline's forces."""
    header = "| held-out molecule | structures | E MAE (meV) | E MAE (meV/atom) | F MAE (meV/Å) |"
    if zero_shot_rows:
        header += " zero-shot F MAE (meV/Å) |"
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for molecule, m in rows.items():
        line = (f"| {molecule} | {m['n_structures']} | {1000 * m['energy_mae']:.1f} | "
                f"{1000 * m['energy_per_atom_mae']:.2f} | {1000 * m['forces_mae']:.1f} |")
        if zero_shot_rows:
            line += f" {1000 * zero_shot_rows[molecule]['forces_mae']:.1f} |"
        lines.append(line)
    return (f"Errors of {name} against {level} labels of the {len(rows)} molecules that no training split "
            "holds (examples/organic/molecules.csv, split=heldout; make_data.py's held-out set: MMFF94 MD at "
            "300-1000 K and GFN2-xTB normal modes at 500/1000 K).\n\n" + "\n".join(lines) + "\n")


def pretraining(run: Path, config, metrics) -> dict:
    """The card's data, training and error sections of a gmnn-train run (the GFN2-xTB pre-training)."""
    n_train, n_valid = metrics["train"]["n_structures"], metrics["valid"]["n_structures"]
    with open(HERE / "molecules.csv") as f:
        n_molecules = sum(row["split"] == "train" for row in csv.DictReader(f))
    return {
        "data": {"structures": n_train + n_valid, "molecules": n_molecules,
                 "split": f"a random {n_valid} of them validate (chose the best epoch), {n_train} train",
                 "geometries": GEOMETRIES + ", all labelled with gmnn-label",
                 "commands": ["python examples/organic/make_data.py --shard 0/2 & "
                              "python examples/organic/make_data.py --shard 1/2"]},
        "training": {"command": f"gmnn-train examples/organic/pretrain_gfn2.yaml   # into {config['output_dir']}",
                     "epochs": config["training"]["epochs"],
                     "best_epoch": load_checkpoint(run / "best.ckpt")["best_epoch"]},
        "errors": {"validation": errors(metrics["valid"], f"the {n_valid} validation structures (they chose the best epoch)"),
                   "train": errors(metrics["train"], f"the {n_train} training structures")},
        "calibrated_on": f"the {n_valid} validation structures",
    }


def zero_shot(run: Path, config: dict) -> Path:
    """The baseline of a fine-tune: its starting model with the energy shifts re-fitted to the same
    labels (gmnn-finetune --zero-shot), written once into <run>/zero_shot."""
    out = run / "zero_shot"
    if not (out / "best.ckpt").exists():
        settings = {key: config[key] for key in ("data", "training", "finetune")}
        finetune(config_from_dict({**settings, "output_dir": str(out)}), config["finetune"]["pretrained"],
                 show_progress=False, overwrite=True, zero_shot_only=True)
    return out / "best.ckpt"


def finetuning(run: Path, args, config, metrics, heldout) -> dict:
    """The card's sections of a gmnn-finetune run (the PBE stage): the model it started from, the
    cross-validation that chose it, and its baselines on the held-out molecules."""
    train = read_structures(config["data"]["train_file"], index=config["data"]["train_index"])
    names = {s.info["name"] for s in train}
    selection = metrics["selection"]
    start = Path(config["finetune"]["pretrained"]).stem
    zero_rows, zero = per_molecule(load_model(zero_shot(run, config)), heldout)
    xtb = json.loads((HERE / "results" / "xtb_vs_pbe_heldout.json").read_text())
    n = len(train)
    return {
        "data": {"structures": n, "molecules": len(names),
                 "split": f"{selection['folds']}-fold cross-validation over all {n} (each validates once; it "
                          "decided whether fine-tuning beats zero-shot), then the mean of the fold models' weights",
                 "geometries": GEOMETRIES + "; the PBE selection of make_data.py (12 geometries a molecule, "
                               "interleaved so that any prefix spans all molecules), its first "
                               f"{n} labelled with gmnn-label --level {args.level}",
                 "commands": [f"gmnn-label examples/organic/data/pbe_selection_train.xyz.gz -o "
                              f"{config['data']['train_file']} --level {args.level} --workers 2"],
                 "pre_trained_from": start},
        "training": {"command": f"gmnn-finetune {args.config} --from {start}   # into {config['output_dir']}",
                     "epochs": config["training"]["epochs"], "selection": selection["summary"],
                     "layer_lr_factor": config["finetune"]["layer_lr_factor"]},
        "errors": {"cross_validation": errors({**selection["held_out"], "n_structures": n},
                                              "each structure predicted by the fold model that did not train on it"),
                   "cross_validation_zero_shot": errors({**selection["held_out_zero_shot"], "n_structures": n},
                                                        f"the same, {start} with shifts re-fitted (zero-shot)"),
                   "train": errors(metrics["train"], f"the {n} training structures"),
                   "heldout_molecules_zero_shot": errors(zero, f"{start} with its energy shifts re-fitted to the {n} "
                                                               "labels, on the held-out molecules"),
                   "heldout_gfn2_xtb": {"description": "GFN2-xTB itself against these labels (examples/organic/"
                                                       "xtb_vs_pbe.py; energies after per-element shifts fitted on "
                                                       "the test structures themselves)",
                                        "n_structures": xtb["structures"],
                                        "energy_mae_eV": xtb["energy_mae_eV_after_element_shifts"],
                                        "forces_mae_eV_per_A": xtb["forces_mae_eV_per_A"]}},
        "calibrated_on": "the cross-validation folds",
        "zero_shot_rows": zero_rows,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="the gmnn-train or gmnn-finetune output folder (best.ckpt, "
                                                "final_metrics.json, config.json)")
    p.add_argument("--name", required=True, help="the shipped name, e.g. organic-gfn2xtb")
    p.add_argument("--level", default="gfn2-xtb", choices=sorted(LEVELS))
    p.add_argument("--config", default="examples/organic/finetune_pbe.yaml", help="a fine-tune's YAML, for the card")
    p.add_argument("--heldout", default=None, help="held-out molecules' labels (default: the level's file)")
    p.add_argument("--cost", default="", help="how long training took, for the card")
    args = p.parse_args()
    run = Path(args.run)
    metrics = json.loads((run / "final_metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())

    destination = MODELS_DIR / f"{args.name}.ckpt"
    slim_checkpoint(run / "best.ckpt", destination)
    model = load_model(destination)
    heldout_structures = read_structures(args.heldout or HELDOUT[args.level])
    molecules, heldout = per_molecule(model, heldout_structures)
    (HERE / "results").mkdir(exist_ok=True)

    if config.get("finetune"):
        sections = finetuning(run, args, config, metrics, heldout_structures)
        summary = (f"fine-tuned from {sections['data']['pre_trained_from']} on {sections['data']['structures']} "
                   f"{args.level} structures of {sections['data']['molecules']} molecules")
    else:
        sections = pretraining(run, config, metrics)
        summary = (f"pre-trained on {sections['data']['structures']} structures of {sections['data']['molecules']} "
                   "molecules")
    (HERE / "results" / f"{args.name}_heldout.md").write_text(
        table(molecules, args.level, args.name, sections.get("zero_shot_rows")))
    training = config["training"]
    card = {
        "name": args.name,
        "summary": f"GM-NN for small organic molecules (C, H, N, O; up to 9 heavy atoms) at {args.level}, {summary}: a "
                   "starting point for fine-tuning on a few higher-level labels of a molecule it has never seen.",
        "elements": model.symbols,
        "level_of_theory": {"labels": LEVELS[args.level], "gmnn_label_level": args.level,
                            "units": "energies in eV (total electronic energies), forces in eV/Angstrom, "
                                     "positions in Angstrom"},
        "training_data": {**sections["data"], "heldout_molecules": sorted(molecules),
                          "details": "examples/organic/README.md"},
        "training": {
            **sections["training"],
            "batch_size": training["batch_size"], "optimizer": training["optimizer"], "lr": training["lr"],
            "lr_decay": f"{training['decay']} to {training['lr_final_factor']} x lr",
            "force_weight": training["force_weight"], "seed": training["seed"], "cost": args.cost,
            "shipped_as": f"python examples/organic/ship.py --run {args.run} --name {args.name} --level {args.level}",
        },
        "architecture": {"cutoff_A": model.cutoff, "n_radial": model.options.n_radial,
                         "n_basis": model.options.n_basis, "r_min_A": model.options.r_min,
                         "hidden": list(model.options.hidden), "dtype": model.options.dtype,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "uncertainty": f"calibrated last-layer (LLPR) uncertainty, calibrated on "
                                        f"{sections['calibrated_on']}" if model.has_uncertainty else "none"},
        "errors": {args.level: {
            **sections["errors"],
            "heldout_molecules": errors(heldout, f"all {heldout['n_structures']} structures of the {len(molecules)} "
                                                 "held-out molecules (never trained on, never used to choose)"),
            "heldout_per_molecule": {name: {"energy_mae_eV": round(m["energy_mae"], 5),
                                            "forces_mae_eV_per_A": round(m["forces_mae"], 5)}
                                     for name, m in molecules.items()},
        }},
        "domain": "isolated (gas-phase) neutral closed-shell molecules of C, H, N and O with up to ~9 heavy atoms "
                  "(aspirin's 13 are handled less well), at the geometries of 300-1000 K MD and normal-mode "
                  "sampling: no intermolecular data (dimers, clusters, liquids), no ions or radicals, no bond "
                  "breaking, no periodic systems. Use the model's uncertainty to see where it extrapolates.",
        "fine_tuning": {
            "command": f"gmnn-finetune finetune.yaml --from {args.name}",
            "config": "output_dir: runs/my_finetune\ndata:\n  train_file: my_labels.xyz   # extxyz, energies in eV "
                      "(and forces in eV/A)\ntraining:\n  force_weight: 0   # energies only; leave it out to fit "
                      "forces too",
            "notes": "gmnn-finetune re-fits the per-element energy shifts to the new level of theory, then trains with "
                     "layer-wise learning rates and chooses the result by 5-fold cross-validation (never worse than "
                     "zero-shot on the data). New elements: --add-elements.",
        },
        "file": destination.name,
        "size_bytes": destination.stat().st_size,
        "sha256": sha256(destination),
        "gmnn_version": gmnn.__version__,
    }
    (MODELS_DIR / f"{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {destination} ({card['size_bytes'] / 1e6:.1f} MB) and its card; held-out molecules: "
          f"E MAE {1000 * heldout['energy_mae']:.1f} meV, F MAE {1000 * heldout['forces_mae']:.1f} meV/A")


if __name__ == "__main__":
    main()
