"""Models, structures and damaged model files that the C++ tests (gmnn._native in
tests/test_native.py, pair_style gmnn in tests/lammps/) compare with the Python calculator.
(A module with its own name, like gmnn_testing and lammps_testing.)"""
import numpy as np

ELEMENTS = ["C", "H", "O"]


def make_model(seed: int = 0, cutoff: float = 4.0, scale: float = 3.0):
    """A small untrained GM-NN with realistic shifts; scale 3 gives forces of ~1 eV/Å."""
    import torch
    import gmnn
    torch.manual_seed(seed)
    model = gmnn.build_model(ELEMENTS, hidden=(32, 32), dtype="float64", cutoff=cutoff)
    with torch.no_grad():
        # model element order is by atomic number: H, C, O
        model.scale_shift.shift.copy_(torch.tensor([-13.6, -1029.5, -2041.3]))
        model.scale_shift.scale.fill_(scale)
    return model


def ethanol_cluster(n_mol: int = 3, seed: int = 1, box: float = 9.0):
    """n_mol ethanol molecules with random orientations, no overlaps; no cell."""
    from ase import Atoms
    from ase.build import molecule
    rng = np.random.default_rng(seed)
    out = Atoms()
    tries = 0
    while len(out) < 9 * n_mol:
        tries += 1
        assert tries < 10000
        m = molecule("CH3CH2OH")
        m.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
        m.translate(rng.uniform(0, box, 3) - m.get_center_of_mass())
        if len(out) and np.min(np.linalg.norm(out.positions[:, None] - m.positions[None], axis=-1)) < 2.2:
            continue
        out += m
    out.positions -= out.positions.min(axis=0)
    return out


def periodic_box(triclinic: bool, seed: int = 2):
    """Two ethanol + one water... in a small periodic cell (some edges cross the boundary)."""
    from ase import Atoms
    from ase.build import molecule
    rng = np.random.default_rng(seed)
    if triclinic:
        cell = np.array([[7.6, 0.0, 0.0], [1.3, 7.1, 0.0], [-0.9, 1.1, 7.3]])
    else:
        cell = np.diag([7.4, 7.8, 7.2])
    atoms = Atoms(cell=cell, pbc=True)
    for name in ["CH3CH2OH", "CH3CH2OH", "H2O", "CH4"]:
        for _ in range(10000):
            m = molecule(name)
            m.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
            m.translate(rng.uniform(0, 1, 3) @ cell - m.get_center_of_mass())
            if len(atoms):
                trial = atoms + m
                d = trial.get_all_distances(mic=True)[len(atoms):, :len(atoms)]
                if d.min() < 2.0:
                    continue
            atoms += m
            break
    atoms.wrap()
    return atoms


def small_cell():
    """A triclinic cell shorter than 2x the 4 Å cutoff in every direction (many self-images)."""
    from ase import Atoms
    cell = np.array([[3.1, 0.0, 0.0], [0.6, 3.3, 0.0], [0.4, -0.5, 3.2]])
    pos = np.array([[0.1, 0.2, 0.3], [1.2, 0.4, 0.5], [0.3, 1.5, 1.9], [2.0, 2.2, 1.1], [1.5, 2.9, 2.6]])
    return Atoms("COHHC", positions=pos, cell=cell, pbc=True)


STRUCTURES = {
    "molecule": lambda: ethanol_cluster(1),
    "cluster": lambda: ethanol_cluster(3),
    "box": lambda: periodic_box(False),
    "triclinic": lambda: periodic_box(True),
    "small_cell": small_cell,
}


def reference(calc, atoms):
    """Python (GMNNCalculator) results in a dict."""
    atoms = atoms.copy()
    atoms.calc = calc
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
           "energies": atoms.get_potential_energies()}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress(voigt=False)
    return out


# ---- bad model files --------------------------------------------------------------------

def _write_variant(tmp_path, model64, name, **meta_override):
    """Re-save the exported model with some metadata changed (None = key removed)."""
    import torch
    from gmnn.model_file import META_KEYS
    extra = {f"gmnn/{k}": "" for k in META_KEYS}
    module = torch.jit.load(model64, _extra_files=extra)
    files = {k: v for k, v in extra.items()}
    for k, v in meta_override.items():
        if v is None:
            files.pop(f"gmnn/{k}")
        else:
            files[f"gmnn/{k}"] = v
    path = tmp_path / name
    torch.jit.save(module, str(path), _extra_files=files)
    if "gmnn/checksum" in files:  # a consistently written file: the checksum matches its content
        from gmnn.model_file import content_checksum
        files["gmnn/checksum"] = content_checksum(path)
        torch.jit.save(module, str(path), _extra_files=files)
    return str(path)


def bad_model_files(tmp_path, model64):
    """name -> (path, expected message fragment); shared with the LAMMPS error tests."""
    raw = open(model64, "rb").read()
    files = {}
    files["missing"] = (str(tmp_path / "does_not_exist.pt"), "cannot open")
    (tmp_path / "empty.pt").write_bytes(b"")
    files["empty"] = (str(tmp_path / "empty.pt"), "empty")
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    files["truncated"] = (str(tmp_path / "truncated.pt"), "TorchScript archive")
    (tmp_path / "garbage.pt").write_bytes(b"this is not a model\n" * 50)
    files["garbage"] = (str(tmp_path / "garbage.pt"), "TorchScript archive")
    files["not_gmnn"] = (_write_variant(tmp_path, model64, "plain.pt", format_version=None), "not a gmnn model")
    files["future_version"] = (_write_variant(tmp_path, model64, "v4.pt", format_version="4"), "format_version 4")
    files["real_units"] = (_write_variant(tmp_path, model64, "real.pt", units="real"), "units 'real'")
    files["bad_dtype"] = (_write_variant(tmp_path, model64, "f16.pt", dtype="float16"), "float16")
    return files
