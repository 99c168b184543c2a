"""Condensed-phase configurations (gmnn.clusters, gmnn-sample --clusters / --dimers): the liquid
box and droplet, clusters of whole molecules cut across periodic boundaries, dimer
classification and distance scans. No DFT; xTB only for a 3-molecule droplet of a few steps."""
import ase.io
import numpy as np
import pytest
from ase import Atoms

from gmnn.clusters import (SphericalWall, cluster_around, cut_clusters, density_g_cm3, dimers, hbond_distance, liquid_box,
                           liquid_droplet, liquid_frames, molecules, scan, whole_positions)
from gmnn_testing import ETHANOL

SIZE = 9  # atoms of ethanol


@pytest.fixture(scope="module")
def ethanol():
    mol = ase.io.read(ETHANOL, index=0)
    mol.pbc, mol.cell = False, None
    return mol


@pytest.fixture(scope="module")
def box(ethanol):
    return liquid_box(ethanol, 16, 0.785, seed=1)


def _internal(atoms: Atoms) -> np.ndarray:
    """Sorted intramolecular distances: equal for rigid copies of a molecule, whatever the order."""
    return np.sort(atoms.get_all_distances().ravel())


def _molecule_distances(frame: Atoms, mols):
    """Smallest atom distance (minimum image) between every pair of molecules, by brute force."""
    d = frame.get_all_distances(mic=bool(np.any(frame.pbc)))
    return np.array([[d[np.ix_(a, b)].min() for b in mols] for a in mols])


def _assert_whole_ethanols(config: Atoms, ethanol: Atoms, n: int):
    """n whole ethanol molecules, each a rigid copy of the start (so no molecule is split across a
    periodic boundary), with no periodicity."""
    assert not np.any(config.pbc)
    assert len(config) == n * SIZE
    mols = molecules(config)
    assert len(mols) == n
    for m in mols:
        assert config[m].get_chemical_formula() == ethanol.get_chemical_formula()
        np.testing.assert_allclose(_internal(config[m]), _internal(ethanol), atol=1e-6)


# ---- the liquid -----------------------------------------------------------------------------

def test_liquid_box_has_the_density_whole_molecules_and_no_overlaps(box, ethanol):
    mass_g = 16 * ethanol.get_masses().sum() / 6.02214076e23
    assert mass_g / (box.get_volume() * 1e-24) == pytest.approx(0.785, rel=1e-6)
    assert density_g_cm3(box) == pytest.approx(0.785, rel=1e-6)
    assert box.pbc.all() and np.allclose(box.cell.array, np.eye(3) * box.cell[0, 0])
    mols = molecules(box)  # by connectivity, minimum image
    assert sorted(len(m) for m in mols) == [SIZE] * 16
    d = _molecule_distances(box, mols)
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 2.0
    assert box.info["molecules"] == 16


def test_liquid_box_refuses_what_cannot_fit(ethanol):
    from gmnn.clusters import ClusterError
    with pytest.raises(ClusterError, match="too small"):
        liquid_box(ethanol, 2, 0.785)
    two = ethanol + ethanol.copy()
    two.positions[SIZE:] += 20.0
    with pytest.raises(ClusterError, match="one molecule, found 2"):
        liquid_box(two, 4, 0.785)


def test_droplet_centres_lie_in_the_wall_at_the_liquid_number_density(ethanol):
    drop = liquid_droplet(ethanol, 16, 0.785, seed=3)
    assert not np.any(drop.pbc)
    mols = molecules(drop)
    assert len(mols) == 16
    radius = drop.info["wall_radius"]
    volume_cm3 = 4 / 3 * np.pi * radius ** 3 * 1e-24
    assert 16 * ethanol.get_masses().sum() / 6.02214076e23 / volume_cm3 == pytest.approx(0.785, rel=1e-6)
    centres = np.array([drop[m].get_center_of_mass() for m in mols])
    assert np.linalg.norm(centres, axis=1).max() <= radius + 1e-9
    d = _molecule_distances(drop, mols)
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 2.0


def test_spherical_wall_forces_are_minus_the_energy_gradient(ethanol):
    from ase.calculators.calculator import Calculator

    class Zero(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": 0.0, "forces": np.zeros((len(atoms), 3))}

    pair = ethanol + ethanol.copy()
    pair.positions[SIZE:] += [6.0, 1.0, 0.0]
    wall = SphericalWall(Zero(), molecules(pair), radius=1.5, k=2.0)
    energy, forces = wall.wall(pair)
    assert energy > 0
    h = 1e-5
    for atom in (0, 4, 12):
        for axis in range(3):
            plus, minus = pair.copy(), pair.copy()
            plus.positions[atom, axis] += h
            minus.positions[atom, axis] -= h
            fd = -(wall.wall(plus)[0] - wall.wall(minus)[0]) / (2 * h)
            assert forces[atom, axis] == pytest.approx(fd, abs=1e-6)
    pair.calc = wall.calculator
    assert pair.get_potential_energy() == pytest.approx(energy)


# ---- clusters -------------------------------------------------------------------------------

def test_clusters_are_whole_molecules_across_the_boundary_and_the_closest_neighbours(box, ethanol):
    mols = molecules(box)
    split = [m for m in mols if len(molecules(Atoms(numbers=box.numbers[m], positions=box.positions[m]))) > 1]
    assert split, "the wrapped box must have molecules split by the boundary, or this test tests nothing"
    d = _molecule_distances(box, mols)
    whole = whole_positions(box)
    clusters = cut_clusters(box, SIZE, cutoff=5.0, max_molecules=3, rng=np.random.default_rng(0))
    assert len(clusters) == 16  # every molecule central once
    centrals = set()
    for cluster in clusters:
        _assert_whole_ethanols(cluster, ethanol, 3)
        assert cluster.info["kind"] == "cluster" and cluster.info["molecules"] == 3
        central = Atoms(numbers=cluster.numbers[:SIZE], positions=cluster.positions[:SIZE])
        (c,) = [k for k, m in enumerate(mols) if _same_molecule(whole[m], central)]
        centrals.add(c)
        expected = np.sort(np.delete(d[c], c))[:2]  # the two closest other molecules, minimum image
        got = [Atoms(numbers=cluster.numbers[k * SIZE:(k + 1) * SIZE], positions=cluster.positions[k * SIZE:(k + 1) * SIZE])
               for k in (1, 2)]
        actual = [np.min(np.linalg.norm(central.positions[:, None] - g.positions[None], axis=-1)) for g in got]
        np.testing.assert_allclose(actual, expected, atol=1e-6)  # unwrapped to the image next to the centre
        np.testing.assert_allclose(cluster.info["neighbour_distances"], expected, atol=1e-3)
        assert max(actual) < 5.0
    assert centrals == set(range(16))


def _same_molecule(whole: np.ndarray, central: Atoms) -> bool:
    """Whether `central` is the molecule at (whole) positions `whole`, shifted."""
    shift = central.positions - whole
    return bool(np.allclose(shift, shift[0], atol=1e-6))


def test_clusters_do_not_depend_on_atom_order_and_respect_cutoff_and_sizes(box, ethanol):
    rng = np.random.default_rng(5)
    shuffled = box[rng.permutation(len(box))]  # molecules found by bonds, not by atom order
    clusters = cut_clusters(shuffled, SIZE, cutoff=5.0, max_molecules=4, rng=np.random.default_rng(1), centres=8,
                            min_molecules=2)
    assert len(clusters) == 8
    sizes = set()
    for cluster in clusters:
        n = cluster.info["molecules"]
        sizes.add(n)
        _assert_whole_ethanols(cluster, ethanol, n)
        assert all(x < 5.0 for x in cluster.info["neighbour_distances"])
    assert sizes <= {2, 3, 4} and len(sizes) > 1
    # a cutoff shorter than any contact leaves no neighbour: no cluster
    assert cut_clusters(box, SIZE, cutoff=0.5, max_molecules=3, rng=np.random.default_rng(0)) == []


def test_cut_clusters_refuses_a_frame_with_broken_molecules(box):
    from gmnn.clusters import ClusterError
    broken = box.copy()
    del broken[0]  # a molecule lost an atom
    with pytest.raises(ClusterError, match="bond"):
        cut_clusters(broken, SIZE, 5.0, 3, np.random.default_rng(0))


def test_cluster_around_an_atom_keeps_the_start_topology_where_molecules_overlap(box, ethanol):
    """Active learning labels the cluster around the most uncertain atom of a periodic frame, often
    one where molecules came too close: the molecules are those of the start (not this frame's
    bond graph), whole across the boundary, the atom's molecule first, then the closest."""
    mols = molecules(box)
    frame = box.copy()
    d = _molecule_distances(box, mols)
    a, b = 3, int(np.argsort(d[3])[1])  # molecule 3 and its closest neighbour
    i, j = mols[a][0], mols[b][0]
    frame.positions[j] = frame.positions[i] + [0.4, 0.0, 0.0]  # an atom pushed into another molecule
    assert {len(m) for m in molecules(frame)} != {SIZE}  # the bond graph now merges them
    cluster = cluster_around(frame, mols, atom=int(i), max_molecules=3, cutoff=5.0)
    assert cluster.info["molecules"] == 3 and not np.any(cluster.pbc)
    np.testing.assert_array_equal(cluster.numbers[:SIZE], frame.numbers[mols[a]])
    first = cluster.positions[:SIZE] - cluster.positions[0]
    np.testing.assert_allclose(first, frame.get_distances(int(i), mols[a], mic=True, vector=True), atol=1e-9)
    contacts = [np.linalg.norm(cluster.positions[:SIZE, None] - cluster.positions[None, k * SIZE:(k + 1) * SIZE],
                               axis=-1).min() for k in (1, 2)]
    assert contacts[0] < 0.5  # the pushed atom's molecule is the closest
    assert contacts == sorted(contacts) and contacts[1] < 5.0
    # an untouched frame: the same cluster as cut_clusters around that molecule
    same = cluster_around(box, mols, atom=int(mols[a][0]), max_molecules=3)
    _assert_whole_ethanols(same, ethanol, 3)
    np.testing.assert_allclose(same.info["neighbour_distances"], np.sort(np.delete(d[a], a))[:2], atol=1e-3)


# ---- dimers ---------------------------------------------------------------------------------

def _hydroxyl(mol: Atoms):
    o = int(np.flatnonzero(mol.numbers == 8)[0])
    d = np.linalg.norm(mol.positions - mol.positions[o], axis=1)
    h = int(np.argmin(np.where(mol.numbers == 1, d, np.inf)))
    return o, h


def _rotation_taking(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A rotation matrix taking unit vector u to unit vector v."""
    axis = np.cross(u, v)
    s, c = np.linalg.norm(axis), float(u @ v)
    if s < 1e-12:
        return np.eye(3)
    k = axis / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - c) * K @ K


def hbonded_pair(ethanol, distance=1.9):
    """A donates its hydroxyl H to B's O at `distance` A, B pointing away from A."""
    a = ethanol.copy()
    a.positions -= a.get_center_of_mass()
    o, h = _hydroxyl(a)
    u = a.positions[h] - a.positions[o]
    u /= np.linalg.norm(u)
    b = ethanol.copy()
    ob = _hydroxyl(b)[0]
    rel = b.positions - b.positions[ob]
    out = b.get_center_of_mass() - b.positions[ob]
    b.positions = rel @ _rotation_taking(out / np.linalg.norm(out), u).T + a.positions[h] + distance * u
    return a, b


def test_hbond_found_in_an_hbonded_pair_and_not_in_a_far_or_contact_pair(ethanol):
    a, b = hbonded_pair(ethanol, 1.9)
    assert hbond_distance(a, b) == pytest.approx(1.9, abs=1e-9)
    assert np.linalg.norm(a.positions[:, None] - b.positions[None], axis=-1).min() > 1.5
    frame = a + b
    (hb,) = dimers(frame, SIZE, np.random.default_rng(0), pairs=1, scan_factors=())
    assert hb.info["kind"] == "hbond" and hb.info["hbond_distance"] == pytest.approx(1.9, abs=1e-4)

    far = b.copy()
    far.positions += 8.0 * (b.get_center_of_mass() - a.get_center_of_mass()) / \
        np.linalg.norm(b.get_center_of_mass() - a.get_center_of_mass())
    assert hbond_distance(a, far) > 2.5
    assert dimers(a + far, SIZE, np.random.default_rng(0), pairs=2, scan_factors=()) == []  # no contact at all

    # a translated copy side by side: atoms close (< 3 A) but the O-H points nowhere near the other O
    rng = np.random.default_rng(2)
    for _ in range(100):
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        lo, hi = 0.0, 10.0
        for _ in range(50):  # the shift at which the smallest atom distance is 2.6 A
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.linalg.norm(a.positions[:, None] - (a.positions + mid * v)[None], axis=-1).min() \
                < 2.6 else (lo, mid)
        side = a.copy()
        side.positions += hi * v
        if hbond_distance(a, side) > 3.0:
            break
    (contact,) = dimers(a + side, SIZE, np.random.default_rng(0), pairs=1, scan_factors=())
    assert contact.info["kind"] == "contact"
    assert contact.info["min_distance"] == pytest.approx(2.6, abs=1e-3)
    assert contact.info["hbond_distance"] > 2.5


def test_scan_moves_the_pair_along_the_centre_of_mass_line_by_the_factors(ethanol):
    a, b = hbonded_pair(ethanol, 1.9)
    d0 = np.linalg.norm(b.get_center_of_mass() - a.get_center_of_mass())
    factors = (0.9, 1.1, 1.25, 1.5, 2.0)
    points = scan(a, b, factors)
    assert [p.info["scan_factor"] for p in points] == list(factors)
    for f, p in zip(factors, points):
        pa, pb = p[:SIZE], p[SIZE:]
        assert p.info["kind"] == "scan"
        assert np.linalg.norm(pb.get_center_of_mass() - pa.get_center_of_mass()) == pytest.approx(f * d0, rel=1e-9)
        assert p.info["com_distance"] == pytest.approx(f * d0, abs=1e-4)
        np.testing.assert_allclose(_internal(pa), _internal(a), atol=1e-9)  # rigid: only the distance changes
        np.testing.assert_allclose(_internal(pb), _internal(b), atol=1e-9)
        line = (pb.get_center_of_mass() - pa.get_center_of_mass()) / (f * d0)
        np.testing.assert_allclose(line, (b.get_center_of_mass() - a.get_center_of_mass()) / d0, atol=1e-9)
    assert points[-1].info["min_distance"] > 5.0  # the far end is beyond the model's cutoff
    # a factor that would put atoms closer than the floor is left out
    assert [p.info["scan_factor"] for p in scan(a, b, (0.5, 1.1), floor=1.0)] == [1.1]
    # dimers() scans a pair of the frame with the requested factors
    got = dimers(a + b, SIZE, np.random.default_rng(0), pairs=1, scan_factors=(0.95, 1.3))
    assert [g.info["kind"] for g in got] == ["hbond", "scan", "scan"]
    assert [g.info.get("scan_factor") for g in got[1:]] == [0.95, 1.3]


def test_dimers_from_a_periodic_box_are_whole_and_alternate_kinds(box, ethanol):
    got = dimers(box, SIZE, np.random.default_rng(0), pairs=4, scan_factors=(0.9, 1.5))
    kinds = [g.info["kind"] for g in got]
    assert kinds[-2:] == ["scan", "scan"]
    for g in got:
        _assert_whole_ethanols(g, ethanol, 2)
        if g.info["kind"] == "hbond":
            assert g.info["hbond_distance"] < 2.5
        elif g.info["kind"] == "contact":
            assert g.info["min_distance"] < 3.0 and g.info.get("hbond_distance", np.inf) >= 2.5


# ---- MD and the command ---------------------------------------------------------------------

def test_droplet_md_writes_frames_and_continues_them(ethanol, tmp_path):
    pytest.importorskip("tblite")
    drop = liquid_droplet(ethanol, 3, 0.785, seed=0)
    path = tmp_path / "md.xyz"
    run = liquid_frames(drop, path, temperature=300, stride=2, equilibration=2, relax_steps=2, seed=0)
    first = [next(run) for _ in range(2)]
    run.close()
    assert [f.info["md_step"] for f in first] == [2, 4]
    assert len(ase.io.read(path, ":")) == 2
    again = liquid_frames(drop, path, temperature=300, stride=2, equilibration=2, relax_steps=2, seed=0)
    frames = [next(again) for _ in range(3)]
    again.close()
    assert [f.info["md_step"] for f in frames] == [2, 4, 6]  # the two on disk, then the MD goes on
    np.testing.assert_allclose(frames[1].positions, first[1].positions, atol=1e-6)
    assert frames[1].get_momenta().any()
    assert len(ase.io.read(path, ":")) == 3
    for f in frames:
        assert len(molecules(f)) == 3


def _no_md(name):
    raise AssertionError("an MD was started")


@pytest.fixture(scope="module")
def frames_file(ethanol, tmp_path_factory):
    """Two periodic 'MD frames' (packed boxes) at 300 K: enough that the commands run no MD."""
    path = tmp_path_factory.mktemp("liquid") / "md.xyz"
    frames = []
    for seed in (1, 2):
        frame = liquid_box(ethanol, 16, 0.785, seed=seed)
        frame.info.update(temperature_K=300.0, md_step=50 * seed)
        frames.append(frame)
    ase.io.write(path, frames, format="extxyz")
    return path


def test_gmnn_sample_clusters_and_dimers_from_frames(ethanol, frames_file, tmp_path, capsys, monkeypatch):
    import gmnn.sampling
    from gmnn.cli import sample_main
    monkeypatch.setattr(gmnn.sampling, "make_calculator", _no_md)  # the frames on disk must be enough
    frames = frames_file
    out = tmp_path / "clusters.xyz"
    code = sample_main([str(ETHANOL), "-o", str(out), "--clusters", "--periodic", "--density", "0.785",
                        "--frames", str(frames), "--samples", "6", "--per-frame", "4", "--max-molecules", "3"])
    assert code == 0
    assert "wrote 6 clusters from 2 MD frame(s)" in capsys.readouterr().out
    clusters = ase.io.read(out, ":")
    assert len(clusters) == 6 and [c.info["frame"] for c in clusters] == [0] * 4 + [1] * 2
    for c in clusters:
        _assert_whole_ethanols(c, ethanol, 3)
    out = tmp_path / "dimers.xyz"
    code = sample_main([str(ETHANOL), "-o", str(out), "--dimers", "--periodic", "--density", "0.785",
                        "--frames", str(frames), "--samples", "8", "--per-frame", "2", "--scan", "0.9,1.5"])
    assert code == 0
    got = ase.io.read(out, ":")
    assert len(got) == 8
    assert [g.info["frame"] for g in got] == [0] * 4 + [1] * 4
    assert {g.info["kind"] for g in got} >= {"scan"} and len({g.info["kind"] for g in got}) >= 2
    code = sample_main([str(ETHANOL), "-o", str(out), "--dimers", "--periodic", "--density", "0.785",
                        "--frames", str(frames), "--samples", "3", "--per-frame", "2", "--skip-frames", "1"])
    assert code == 0 and {g.info["frame"] for g in ase.io.read(out, ":")} == {1}


@pytest.mark.parametrize("extra, message", [
    ([], r"--clusters needs --density"),
    (["--density", "-1"], r"--density must be a positive number of g/cm\^3, got -1.0"),
    (["--density", "0.785", "--max-molecules", "1"], r"--max-molecules must be >= 2, got 1"),
    (["--density", "0.785", "--skip-frames", "-1"], r"--skip-frames must be >= 0, got -1"),
    (["--density", "0.785", "--min-molecules", "4"], r"--min-molecules must be between 2 and --max-molecules \(3\)"),
    (["--density", "0.785", "--scan", "0.9,x"], r"--scan must be comma-separated factors"),
    (["--density", "0.785", "--scan", "0.9,-1"], r"--scan factors must be positive numbers, got -1.0"),
    (["--density", "0.785", "--periodic", "--molecules", "2"], r"too small for one molecule"),
    (["--density", "0.785", "--periodic", "--temperature", "400", "--frames", "FRAMES"],
     r"holds MD at 300 K, not 400 K"),
])
def test_bad_liquid_options_are_one_line_errors(frames_file, tmp_path, capsys, monkeypatch, extra, message):
    import re
    import gmnn.sampling
    from gmnn.cli import sample_main
    monkeypatch.setattr(gmnn.sampling, "make_calculator", _no_md)
    frames = frames_file
    extra = [str(frames) if x == "FRAMES" else x for x in extra]
    code = sample_main([str(ETHANOL), "-o", str(tmp_path / "out.xyz"), "--clusters"] + extra)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out.xyz").exists()


def test_interleave_spreads_every_list_over_the_whole():
    from gmnn.clusters import interleave
    assert interleave([1, 2, 3], ["a", "b", "c"]) == [1, "a", 2, "b", 3, "c"]
    mixed = interleave(list(range(130)), ["x"] * 70)
    assert len(mixed) == 200 and [m for m in mixed if m != "x"] == list(range(130))
    for n in (10, 50, 100, 150):
        assert abs(sum(m == "x" for m in mixed[:n]) - 0.35 * n) <= 1
