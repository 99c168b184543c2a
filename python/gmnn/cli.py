"""Command-line entry points: gmnn-train, gmnn-eval, gmnn-export, gmnn-calibrate, gmnn-active, ...

Errors the user can fix (bad config, bad data, missing files) are printed as one line and
exit with status 2; anything else is a bug and keeps its traceback.
"""
import argparse
import logging
import sys
from pathlib import Path

def _user_errors():
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import DataError
    from .model_file import ModelFileError
    from .levels import LabelError
    from .training import NonFiniteLoss
    from .uncertainty import CalibrationError
    return (ConfigError, DataError, CheckpointError, ModelFileError, LabelError, NonFiniteLoss, CalibrationError,
            FileNotFoundError, OSError)


def _run(fn):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return fn()
    except _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def train_main(argv=None):
    p = argparse.ArgumentParser(prog="gmnn-train", description="Train a GM-NN potential from a YAML config.")
    p.add_argument("config", help="YAML config (see examples/ and README)")
    runs = p.add_mutually_exclusive_group()  # what to do with an output_dir that holds a run
    runs.add_argument("--resume", action="store_true", help="continue from <output_dir>/last.ckpt")
    runs.add_argument("--overwrite", action="store_true",
                      help="replace the run in output_dir (deletes its checkpoints and metrics)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def run():
        from .config import load_config
        from .distributed import init_from_env
        from .training import train
        init_from_env()  # under torchrun: data-parallel training
        train(load_config(args.config), resume=args.resume, show_progress=not args.no_progress,
              overwrite=args.overwrite)
        return 0
    return _run(run)


def eval_main(argv=None):
    p = argparse.ArgumentParser(prog="gmnn-eval", description="Errors of a model on labelled data.")
    p.add_argument("model", help="checkpoint (.ckpt), exported model (.pt) or the name of a shipped pre-trained "
                                 "model (gmnn.list_pretrained())")
    p.add_argument("data", nargs="+", help="data file(s): extxyz/ASE, .npz, ANI .h5")
    p.add_argument("--energy-key", default="auto")
    p.add_argument("--forces-key", default="auto")
    p.add_argument("--energy-unit", default=None, help="e.g. kcal/mol, Hartree (default: the format's)")
    p.add_argument("--force-unit", default=None)
    p.add_argument("--length-unit", default=None)
    p.add_argument("--level", default=None, help="level of theory (ANI HDF5)")
    p.add_argument("--index", default=":", help="ASE index of frames to read, e.g. '80:'")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--energy-outlier-limit", default="10", metavar="EV_PER_ATOM",
                   help="refuse a file whose energies lie further than this from a per-element fit, or from "
                        "the model's for most structures (other units or level of theory?); 'none': no check")
    p.add_argument("--json", default="eval_metrics.json", help="where to write the metrics")
    p.add_argument("--plot", nargs="?", const="parity", default=None,
                   help="write parity plots <PREFIX>_<file>.png (default prefix: parity) and, for a model with "
                        "an uncertainty, calibration plots <PREFIX>_<file>_uncertainty.png")
    p.add_argument("--csv", default=None,
                   help="where to write one row per structure: energies, errors and uncertainties (default: the "
                        "--json path with .csv, next to it)")
    p.add_argument("--no-uncertainty", action="store_true",
                   help="skip the uncertainty of a model that has one")
    args = p.parse_args(argv)

    def run():
        from .config_rules import at_least, check_option
        from .data import check_energy_outliers, read_structures
        from .evaluation import check_energies_against_model, evaluate, format_table, write_json, write_predictions_csv
        from .graph import build_graphs
        from .loading import load
        from .plotting import calibration_plot, parity_plot
        check_option("--batch-size", args.batch_size, at_least(1))
        limit = _outlier_limit(args.energy_outlier_limit)
        model = load(args.model)
        uncertainty = model.has_uncertainty and not args.no_uncertainty
        if not model.has_uncertainty:
            print(f"{args.model}: no calibrated uncertainty (gmnn-calibrate adds one); evaluating errors only")
        csv_path = args.csv or str(Path(args.json).with_suffix(".csv"))
        results = {}
        for n_file, path in enumerate(args.data):
            structures = read_structures(path, energy_key=args.energy_key, forces_key=args.forces_key,
                                         energy_unit=args.energy_unit, force_unit=args.force_unit,
                                         length_unit=args.length_unit, level=args.level, index=args.index)
            check_energy_outliers(structures, limit, remedy="give the file's unit with --energy-unit, or "
                                  "--energy-outlier-limit none to evaluate anyway")
            graphs = build_graphs(structures, model.atomic_numbers, model.cutoff, progress=True)
            metrics, preds = evaluate(model, graphs, args.batch_size, uncertainty=uncertainty)
            check_energies_against_model(path, preds, limit, read_as=args.energy_unit or "the format's default unit: "
                                         "eV for extxyz/ASE, kcal/mol for .npz, Hartree for ANI .h5")
            results[Path(path).name] = metrics
            write_predictions_csv(csv_path, preds, Path(path).name, append=n_file > 0)
            if args.plot:
                out = parity_plot(preds, f"{args.plot}_{Path(path).stem}.png", title=Path(path).name)
                print(f"wrote {out}")
                if uncertainty:
                    out = calibration_plot(preds, f"{args.plot}_{Path(path).stem}_uncertainty.png", title=Path(path).name)
                    print(f"wrote {out}")
        print(format_table(results))
        if uncertainty:
            print(uncertainty_table(results))
        write_json(args.json, results)
        print(f"wrote {args.json} and {csv_path}")
        return 0
    return _run(run)


def uncertainty_table(results) -> str:
    """Per file: Spearman rank correlation of sigma with the observed error, and RMS(error / sigma)."""
    lines = ["uncertainty    Spearman E   Spearman F   RMS(err/σ) E   RMS(err/σ) F"]
    for name, m in results.items():
        lines.append(f"{name:<14}{m['energy_uncertainty_spearman']:>11.2f}{m['forces_uncertainty_spearman']:>13.2f}"
                     f"{m['energy_error_over_uncertainty_rms']:>15.2f}{m['forces_error_over_uncertainty_rms']:>15.2f}")
    return "\n".join(lines)


def _outlier_limit(text: str):
    """--energy-outlier-limit: a positive number of eV/atom, or 'none' (no check)."""
    import math
    from .config import ConfigError
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--energy-outlier-limit must be a positive number of eV/atom or 'none', got {text!r}")
    return value


def export_main(argv=None):
    p = argparse.ArgumentParser(prog="gmnn-export", description="Write a TorchScript model file for LAMMPS.")
    p.add_argument("checkpoint", help="trained checkpoint (.ckpt), or the name of a shipped pre-trained model")
    p.add_argument("-o", "--output", required=True, help="model file to write, e.g. model.pt")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="precision of the exported model (default: the checkpoint's)")
    p.add_argument("--force", action="store_true",
                   help="replace OUTPUT even if it is not a model file (it is never the checkpoint read)")
    args = p.parse_args(argv)

    def run():
        from .export import export_model
        from .loading import read_metadata
        path = export_model(args.checkpoint, args.output, dtype=args.dtype, force=args.force)
        meta = read_metadata(path)
        from ase.data import chemical_symbols
        elements = " ".join(chemical_symbols[int(z)] for z in meta["atomic_numbers"].split())
        print(f"wrote {path}: elements {elements}, cutoff {meta['cutoff']} A, {meta['dtype']}, "
              f"format {meta['format_version']}")
        print(f"LAMMPS:  pair_style gmnn\n         pair_coeff * * {path} {elements}")
        return 0
    return _run(run)


def label_main(argv=None):
    p = argparse.ArgumentParser(
        prog="gmnn-label",
        description="Reference labels from quantum chemistry (needs `pip install gmnn[qc]`). Every finished "
                    "structure is appended at once to OUTPUT; re-running skips the ones done (found by geometry). "
                    "SIGTERM / Ctrl-C keep every finished structure.")
    p.add_argument("input", help="structures (extxyz/ASE, .npz, ANI .h5); positions in Angstrom")
    p.add_argument("-o", "--output", required=True, help="extxyz file to append labels to")
    p.add_argument("--level", required=True,
                   help="'gfn2-xtb', or 'method/basis': pbe/def2-svp, b3lyp/6-31g*, hf/sto-3g, mp2/cc-pvdz, ccsd(t)/cc-pvdz")
    p.add_argument("--no-forces", action="store_true", help="energies only (CCSD(T) forces are ~30x the energy)")
    p.add_argument("--index", default=":", help="which input structures, e.g. '0:50'")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    p.add_argument("--no-density-fit", action="store_true", help="DFT without density fitting")
    p.add_argument("--frozen-core", action="store_true", help="MP2/CC with frozen core orbitals")
    p.add_argument("--charge", type=int, default=0)
    p.add_argument("--spin", type=int, default=0, help="number of unpaired electrons")
    p.add_argument("--input-level", default=None, help="level whose geometries to read from an ANI .h5")
    args = p.parse_args(argv)

    def run():
        from .data import parse_index, read_structures
        from .labelling import Interrupted, label_structures
        from .levels import LabelError, Level
        level = Level.parse(args.level, density_fit=not args.no_density_fit, frozen_core=args.frozen_core,
                            charge=args.charge, spin=args.spin)
        if Path(args.output).resolve() == Path(args.input).resolve():
            raise LabelError(f"output {args.output} is the input: use another file for the labels")
        structures = read_structures(args.input, energy_key="none", forces_key="none", level=args.input_level)
        if not structures:
            raise LabelError(f"{args.input}: no structures to label")
        atoms = [s.to_atoms() for s in structures]
        for a, s in zip(atoms, structures):  # the input's metadata goes into the label file
            a.info.update(s.info)
        indices = list(range(len(atoms)))[parse_index(args.index)]
        if not indices:
            raise LabelError(f"--index {args.index!r} selects none of the {len(atoms)} structure(s) in {args.input}")
        try:
            new = label_structures(atoms, args.output, level, forces=not args.no_forces, workers=args.workers,
                                   threads=args.threads, indices=indices)
        except Interrupted as stopped:
            print(stopped, file=sys.stderr)
            return stopped.status
        print(f"{args.output}: {new} structure(s) labelled at {level.describe()}, {len(indices) - new} already there")
        return 0
    return _run(run)


def sample_main(argv=None):
    p = argparse.ArgumentParser(
        prog="gmnn-sample",
        description="Draw configurations for labelling by Langevin MD (ASE): of the molecule itself, or with "
                    "--normal-modes displaced along its normal modes, or with --clusters / --dimers of a liquid of "
                    "its copies (GFN2-xTB droplet held by a soft wall, or --periodic box), cut into clusters of whole "
                    "molecules or dimers at contact and distance scans. The molecule: a structure file, a SMILES "
                    "(--smiles) or a .smi file of SMILES (RDKit conformer, briefly relaxed with --calculator).")
    p.add_argument("input", nargs="?", default=None,
                   help="starting structure (first frame is used): the molecule; or a .smi file, one 'SMILES [name]' "
                        "a line, each molecule sampled in turn into OUTPUT")
    p.add_argument("-o", "--output", required=True, help="extxyz file of sampled configurations")
    p.add_argument("--calculator", default="gfn2-xtb",
                   help="'gfn2-xtb' / 'gfn1-xtb' (tblite), 'mmff94' (RDKit force field: cheap configurations of organic "
                        "molecules, to be labelled by gmnn-label), or a gmnn model (.ckpt or .pt)")
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--timestep", type=float, default=None, help="fs (default 0.5; 1.0 for a liquid)")
    p.add_argument("--friction", type=float, default=0.01, help="1/fs")
    p.add_argument("--samples", type=int, default=100, help="configurations to write")
    p.add_argument("--stride", type=int, default=None, help="MD steps between samples (default 20; 50 for a liquid)")
    p.add_argument("--equilibration", type=int, default=None,
                   help="MD steps before the first sample (default 200; 500 for a liquid)")
    p.add_argument("--seed", type=int, default=0, help="of the MD or the displacements, and of a SMILES' conformer")
    smiles = p.add_argument_group("molecules from SMILES (--smiles, or a .smi file as input)")
    smiles.add_argument("--smiles", default=None,
                        help="a SMILES instead of INPUT, e.g. 'CCO': an RDKit ETKDG conformer (seeded by --seed), "
                             "relaxed with --calculator to 0.05 eV/A (at most 300 steps)")
    smiles.add_argument("--elements", default=None,
                        help="comma-separated elements the molecule may have, e.g. C,H,N,O (default: any)")
    nm = p.add_argument_group("normal modes (--normal-modes)")
    nm.add_argument("--normal-modes", action="store_true",
                    help="instead of MD: relax to 0.0001 eV/A, Hessian by finite differences of the --calculator "
                         "forces, then --samples geometries displaced along the normal modes with thermal "
                         "amplitudes at --temperature (docs in gmnn/normal_modes.py)")
    nm.add_argument("--nm-scheme", choices=("boltzmann", "ani"), default="boltzmann",
                    help="boltzmann: each normal coordinate Gaussian (harmonic canonical ensemble, mean energy "
                         "(3N-6) kT/2); ani: ANI-1's random coefficients c_i with sum <= 1 (energy 3 N kT sum(c)/2)")
    nm.add_argument("--min-frequency", type=float, default=300.0,
                    help="cm^-1: softer modes (torsions) are displaced as if they had this frequency")
    liquid = p.add_argument_group("liquid (--clusters, --dimers)")
    kinds = liquid.add_mutually_exclusive_group()
    kinds.add_argument("--clusters", action="store_true",
                       help="clusters: a central molecule and its closest neighbours within --cutoff")
    kinds.add_argument("--dimers", action="store_true",
                       help="dimers: pairs in contact, alternately H-bonded and not, and distance scans of a pair")
    liquid.add_argument("--molecules", type=int, default=16, help="molecules in the liquid")
    liquid.add_argument("--density", type=float, default=None, help="g/cm^3 of the liquid (ethanol: 0.785)")
    liquid.add_argument("--periodic", action="store_true",
                        help="a periodic box with periodic xTB (default: a droplet held by a soft spherical wall; "
                             "periodic GFN2-xTB is ~15x slower for 16 ethanol)")
    liquid.add_argument("--frames", default=None, metavar="FILE",
                        help="extxyz of the liquid's MD frames: appended to as the MD runs, reused (and continued) "
                             "by a later command, e.g. --dimers after --clusters, or after an interruption")
    liquid.add_argument("--skip-frames", type=int, default=0,
                        help="leave out the first N MD frames (the liquid still equilibrating)")
    liquid.add_argument("--per-frame", type=int, default=4,
                        help="clusters (central molecules) or contact pairs taken from each MD frame")
    liquid.add_argument("--cutoff", type=float, default=5.0, help="A: neighbours of a central molecule")
    liquid.add_argument("--max-molecules", type=int, default=3, help="molecules in a cluster, central included")
    liquid.add_argument("--min-molecules", type=int, default=None,
                        help="if given, each cluster's size is drawn from min..max molecules")
    liquid.add_argument("--scan", default="0.9,1.1,1.25,1.5,2.0",
                        help="factors of a pair's centre-of-mass distance for the scan from each frame ('none')")
    args = p.parse_args(argv)
    in_liquid = args.clusters or args.dimers
    for name, plain, liquid_default in (("timestep", 0.5, 1.0), ("stride", 20, 50), ("equilibration", 200, 500)):
        if getattr(args, name) is None:
            setattr(args, name, liquid_default if in_liquid else plain)

    def run():
        from .config import ConfigError
        from .config_rules import at_least, check_option, positive_number
        from .data import read_structures
        for option, value, rule in (("--temperature", args.temperature, positive_number("K")),
                                    ("--timestep", args.timestep, positive_number("fs")),
                                    ("--friction", args.friction, positive_number("1/fs")),
                                    ("--samples", args.samples, at_least(1)), ("--stride", args.stride, at_least(1)),
                                    ("--equilibration", args.equilibration, at_least(0)),
                                    ("--seed", args.seed, at_least(0))):
            check_option(option, value, rule)
        if (args.input is None) == (args.smiles is None):
            raise ConfigError("give the molecule as INPUT (a structure or .smi file) or as --smiles, not "
                              + ("both" if args.smiles is not None else "neither"))
        if in_liquid and (args.smiles is not None or args.normal_modes or args.elements):
            raise ConfigError(f"--{'clusters' if args.clusters else 'dimers'} takes a structure file, and no "
                              f"--smiles, --normal-modes or --elements")
        from .molecules import is_smiles_file
        if args.input is not None and not is_smiles_file(args.input):
            read_structures(args.input, energy_key="none", forces_key="none", index="0")  # a clear error
        if not in_liquid:
            return _sample_molecules(args)
        from .clusters import ClusterError, sample_liquid
        kind = "clusters" if args.clusters else "dimers"
        if args.density is None:
            raise ConfigError(f"--{kind} needs --density: g/cm^3 of the liquid (ethanol: 0.785)")
        for option, value, rule in (("--density", args.density, positive_number("g/cm^3")),
                                    ("--molecules", args.molecules, at_least(2)),
                                    ("--per-frame", args.per_frame, at_least(1)),
                                    ("--skip-frames", args.skip_frames, at_least(0)),
                                    ("--cutoff", args.cutoff, positive_number("A")),
                                    ("--max-molecules", args.max_molecules, at_least(2))):
            check_option(option, value, rule)
        if args.min_molecules is not None and not 2 <= args.min_molecules <= args.max_molecules:
            raise ConfigError(f"--min-molecules must be between 2 and --max-molecules ({args.max_molecules}), "
                              f"got {args.min_molecules}")
        factors = ()
        if args.scan.strip().lower() != "none":
            try:
                factors = tuple(float(f) for f in args.scan.split(","))
            except ValueError:
                raise ConfigError(f"--scan must be comma-separated factors (e.g. 0.9,1.1,1.5) or 'none', "
                                  f"got {args.scan!r}") from None
            bad = [f for f in factors if not (0 < f < float("inf"))]
            if bad:
                raise ConfigError(f"--scan factors must be positive numbers, got {bad[0]}")
        if args.frames is not None and Path(args.frames).resolve() == Path(args.output).resolve():
            raise ConfigError(f"--frames {args.frames} is the output: use another file for the MD frames")
        try:
            n, frames = sample_liquid(args.input, args.output, kind, args.molecules, args.density, args.periodic,
                                      args.calculator, args.temperature, args.timestep, args.friction, args.samples,
                                      args.stride, args.equilibration, args.seed, args.frames, args.per_frame,
                                      args.cutoff, args.max_molecules, args.min_molecules, factors,
                                      args.skip_frames)
        except ClusterError as exc:
            raise ConfigError(str(exc)) from None
        print(f"wrote {n} {kind} from {frames} MD frame(s) to {args.output}")
        return 0
    return _run(run)


def _sample_molecules(args) -> int:
    """gmnn-sample without --clusters / --dimers: MD or normal modes of each molecule, into one file."""
    import ase.io
    from .config import ConfigError
    from .config_rules import check_option, positive_number
    from .molecules import MoleculeError, starting_structures
    from .normal_modes import NormalModeError, displace, minimum
    from .sampling import make_calculator, md_frames
    check_option("--min-frequency", args.min_frequency, positive_number("cm^-1"))
    elements = [e for e in args.elements.split(",") if e.strip()] if args.elements else None
    frames, molecules = [], 0
    try:
        for start in starting_structures(args.input, args.smiles, args.seed, args.calculator, elements):
            molecules += 1
            if args.normal_modes:
                modes = minimum(start, make_calculator(args.calculator))
                frames += displace(modes, args.temperature, args.samples, args.seed, args.nm_scheme,
                                   args.min_frequency)
            else:
                frames += md_frames(start, args.calculator, args.temperature, args.timestep, args.friction,
                                    args.samples, args.stride, args.equilibration, args.seed)
    except (MoleculeError, NormalModeError) as exc:
        raise ConfigError(str(exc)) from None
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(args.output, frames, format="extxyz")
    how = "normal-mode displacements" if args.normal_modes else "configurations"
    print(f"wrote {len(frames)} {how} of {molecules} molecule(s) to {args.output}")
    return 0


def finetune_main(argv=None):
    p = argparse.ArgumentParser(prog="gmnn-finetune",
                                description="Fine-tune a pre-trained GM-NN on new labels (transfer learning).")
    p.add_argument("config", help="YAML config: data, training and the finetune section")
    p.add_argument("--from", dest="pretrained", default=None,
                   help="pre-trained checkpoint (.ckpt), or the name of a shipped pre-trained model, e.g. "
                        "ethanol-pbe-def2svp (gmnn.list_pretrained(); an existing file of that name wins)")
    p.add_argument("--add-elements", action="store_true",
                   help="allow elements the pre-trained model does not know (new pair coefficients)")
    runs = p.add_mutually_exclusive_group()  # what to do with an output_dir that holds a run
    runs.add_argument("--resume", action="store_true", help="continue from <output_dir>/last.ckpt")
    runs.add_argument("--overwrite", action="store_true",
                      help="replace the run in output_dir (deletes its checkpoints and metrics)")
    p.add_argument("--zero-shot", action="store_true",
                   help="write the baseline instead: the pre-trained model with its energy shifts re-fitted "
                        "on the data, no training")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    def run():
        from .config import load_config
        from .distributed import init_from_env
        from .finetuning import finetune
        init_from_env()
        finetune(load_config(args.config), args.pretrained, args.add_elements, args.resume,
                 show_progress=not args.no_progress, overwrite=args.overwrite, zero_shot_only=args.zero_shot)
        return 0
    return _run(run)


def calibrate_main(argv=None):
    p = argparse.ArgumentParser(prog="gmnn-calibrate",
                                description="Give a trained model its uncertainty (last-layer prediction rigidity, "
                                            "calibrated on held-out structures). gmnn-train and gmnn-finetune do "
                                            "this themselves; this is for checkpoints from older gmnn, or other data.")
    p.add_argument("checkpoint", help="training checkpoint (.ckpt)")
    p.add_argument("--train", required=True, help="the structures the model was trained on (or like them)")
    p.add_argument("--valid", required=True, help="labelled structures it was NOT trained on (scales sigma)")
    p.add_argument("--train-index", default=":", help="ASE index of the --train frames, e.g. ':800'")
    p.add_argument("--valid-index", default=":", help="ASE index of the --valid frames, e.g. '800:'")
    p.add_argument("--energy-unit", default=None, help="e.g. kcal/mol, Hartree (default: the format's)")
    p.add_argument("--force-unit", default=None)
    p.add_argument("--level", default=None, help="level of theory (ANI HDF5)")
    p.add_argument("-o", "--output", default=None, help="calibrated checkpoint (default: <checkpoint>_calibrated.ckpt)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)

    def run():
        from .checkpoint import load_checkpoint, save_checkpoint
        from .data import read_structures
        from .graph import build_graphs
        from .model import GMNN
        from . import uncertainty
        source = Path(args.checkpoint)
        out = Path(args.output) if args.output else source.with_name(f"{source.stem}_calibrated.ckpt")
        if out.exists() and not args.force:
            raise FileExistsError(f"{out} exists; choose another --output, or pass --force to replace it")
        payload = load_checkpoint(source, purpose="calibration")
        model = GMNN.from_checkpoint_state(payload["model"]).eval()
        sets = []
        for path, index in ((args.train, args.train_index), (args.valid, args.valid_index)):
            structures = read_structures(path, energy_unit=args.energy_unit, force_unit=args.force_unit,
                                         level=args.level, index=index)
            sets.append(build_graphs(structures, model.atomic_numbers, model.cutoff, progress=True))
        summary = uncertainty.fit(model, *sets)
        payload["model"], payload["uncertainty"] = model.checkpoint_state(), summary
        save_checkpoint(out, payload)
        print(f"calibrated on {summary['n_held_out']} held-out structures: sigma_E scale {summary['energy_scale']:.3g}, "
              f"sigma_F scale {summary['force_scale']:.3g}; wrote {out}")
        return 0
    return _run(run)


def active_main(argv=None):
    p = argparse.ArgumentParser(
        prog="gmnn-active",
        description="Active learning: MD with the model until its uncertainty exceeds a threshold, label a diverse "
                    "batch of the frames it found, re-train, repeat until the MD reaches the requested length. "
                    "Every stage is kept on disk; --resume continues an interrupted loop (docs/active_learning.md).")
    p.add_argument("config", help="YAML config (docs/active_learning.md)")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true", help="continue the loop in output_dir where it stopped")
    runs.add_argument("--overwrite", action="store_true",
                      help="replace the loop in output_dir (deletes its iterations, labels and models)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    def run():
        from .active import ActiveInterrupted, load_active_config, run_active
        config = load_active_config(args.config)
        try:
            report = run_active(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
        except ActiveInterrupted as stopped:
            print(stopped, file=sys.stderr)
            return stopped.status
        last = report["iterations"][-1]
        print(f"{config.output_dir}: {len(report['iterations'])} iteration(s), {report['labels']} labels; last MD "
              f"reached {last['md_mean_ps']:.3g} ps on average ({last['trajectories_reached']} of "
              f"{last['trajectories']} trajectories the full {last['md_requested_ps']:g} ps); "
              f"report in {Path(config.output_dir) / 'report.md'}")
        return 0
    return _run(run)


def spectrum_main(argv=None):
    p = argparse.ArgumentParser(prog="gmnn-spectrum",
                                description="Vibrational density of states from velocities of an MD trajectory.")
    p.add_argument("trajectory", nargs="+", help="LAMMPS dump(s) with id type vx vy vz [mass], or ASE trajectories")
    p.add_argument("--dt", type=float, required=True, help="time between frames in fs")
    p.add_argument("--labels", nargs="+", default=None, help="legend label per trajectory")
    p.add_argument("--masses", type=float, nargs="+", default=None,
                   help="mass per LAMMPS atom type (if the dump has no mass column)")
    p.add_argument("-o", "--output", default="vdos.png", help="plot to write")
    p.add_argument("--json", default=None, help="write band positions (cm^-1) as JSON")
    args = p.parse_args(argv)

    def run():
        import json
        import numpy as np
        from .spectrum import band_positions, plot_spectra, read_lammps_velocities, vdos
        spectra, bands = {}, {}
        labels = args.labels or [Path(t).name for t in args.trajectory]
        for label, path in zip(labels, args.trajectory):
            try:
                v, types, masses = read_lammps_velocities(path)
            except (ValueError, IndexError):
                import ase.io
                frames = ase.io.read(path, index=":")
                v = np.stack([a.get_velocities() for a in frames])
                masses = frames[0].get_masses()
            else:
                if masses is None and args.masses:
                    masses = np.asarray(args.masses)[types - 1]
            spectra[label] = vdos(v, args.dt, masses)
            bands[label] = band_positions(spectra[label])
            print(label + ": " + ", ".join(f"{k} {v:.0f} cm^-1" for k, v in bands[label].items()))
        plot_spectra(spectra, args.output)
        print(f"wrote {args.output}")
        if args.json:
            Path(args.json).write_text(json.dumps(bands, indent=2))
        return 0
    return _run(run)
