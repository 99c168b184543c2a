"""gmnn-active: the batch spreads over events (greedy in the model's posterior), the MD stops
where the model leaves its domain, a loop runs and reports, an interrupted loop resumes without
labelling a structure twice (and re-selects exactly what it selected before), bad configs are
one-line errors. Labels: GFN2-xTB (milliseconds); model: 16-16 on 30 ethanol frames."""
import json

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from gmnn_testing import ETHANOL

import tblite  # noqa: F401,E402  (in requirements.txt: missing is a failure, not a skip)


# ---- selection and MD, no model -----------------------------------------------------------------

def test_greedy_batch_takes_one_candidate_of_each_event():
    """Two clusters of near-identical candidates; cluster A is the more uncertain. The k most
    uncertain would be two of A; the greedy rank update makes the second pick one of B."""
    from gmnn.batch_selection import greedy_selection, random_selection
    rng = np.random.default_rng(0)
    d = 6
    covariance = np.diag([50.0, 0.0, 0.0, 50.0, 50.0, 50.0])
    a, b = np.eye(d)[1] * 3.0, np.eye(d)[2] * 2.0
    ordinary = np.eye(d)[0]  # every candidate's second atom: a direction the training set knows well
    phi, structure = [], []
    for k, centre in enumerate([a, a, a, b, b, b]):
        phi += [centre + 0.01 * rng.normal(size=d), ordinary]
        structure += [k, k]
    phi, structure = np.array(phi), np.array(structure)
    per_candidate = [np.sum(phi[structure == k] ** 2 / (np.diag(covariance) + 1e-3), axis=1).max() for k in range(6)]
    assert set(np.argsort(per_candidate)[::-1][:2]) <= {0, 1, 2}  # what "the k most uncertain" would take
    picked = greedy_selection(phi, structure, covariance, 1e-3, 2)
    assert picked.indices[0] in (0, 1, 2) and picked.indices[1] in (3, 4, 5)
    assert picked.rigidity[0] > picked.rigidity[1]
    # three picks: the third is the A-like or B-like candidate whose event is least explained
    assert len(set(greedy_selection(phi, structure, covariance, 1e-3, 6).indices)) == 6
    assert greedy_selection(phi, structure, covariance, 1e-3, 2) == picked  # deterministic
    r = random_selection(6, 3, [0, 1, 1])
    assert r.indices == random_selection(6, 3, [0, 1, 1]).indices and len(set(r.indices)) == 3


class _FakeUncertainCalculator(Calculator):
    """Harmonic bonds to the start positions; sigma_F grows by `rate` per force call."""
    implemented_properties = ["energy", "forces", "forces_uncertainty"]

    def __init__(self, rate, force=None, **kw):
        super().__init__(**kw)
        self.rate, self.force, self.calls, self.origin = rate, force, 0, None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.origin is None:
            self.origin = self.atoms.positions.copy()
        dx = self.atoms.positions - self.origin
        forces = -2 * dx if self.force is None else np.full_like(dx, self.force)
        self.results = {"energy": float(np.sum(dx ** 2)), "forces": forces,
                        "forces_uncertainty": np.full(len(self.atoms), self.rate * self.calls)}
        self.calls += 1


def test_md_stops_where_the_model_leaves_its_domain():
    from gmnn.sampling import explore_md
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    whole = explore_md(water, _FakeUncertainCalculator(0.0), steps=40, threshold=1.0, sample_every=10)
    assert whole.stop == "length" and whole.steps_reached == 40
    assert [f.info["md_step"] for f in whole.frames] == [10, 20, 30, 40]
    # sigma_F = 0.1 x step crosses 1.05 at step 11: 10 steps reached
    run = explore_md(water, _FakeUncertainCalculator(0.1), steps=40, threshold=1.05, sample_every=4,
                     frames_before_stop=3)
    assert run.stop == "uncertainty" and run.steps_reached == 10
    assert [f.info["md_step"] for f in run.frames] == [4, 8, 9, 10, 11]  # samples, the steps before, the stop
    assert run.frames[-1].info["max_sigma_F"] > 1.05 and run.frames[-1].arrays["sigma_F"].shape == (3,)
    apart = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [5.0, 0, 0]])
    broken = explore_md(apart, _FakeUncertainCalculator(0.0), steps=40, threshold=1.0, sample_every=4)
    assert broken.stop.startswith("broken: atom 2 (H) has no neighbour") and broken.steps_reached == 0
    assert broken.frames == []
    for force, why in ((100.0, "broken: force 173 eV/A > 50"), (np.nan, "broken: forces or uncertainty not finite")):
        assert explore_md(water, _FakeUncertainCalculator(0.0, force), steps=40, threshold=1.0).stop == why


# ---- the loop ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def xtb_start(tmp_path_factory):
    """36 rMD17 ethanol geometries labelled with GFN2-xTB (train 0-29, valid 30-35), a 16-16
    model trained on them for a few epochs (so it is unsure of much: the MD leaves its domain),
    two starting geometries."""
    import ase.io
    from gmnn.config import config_from_dict
    from gmnn.labelling import label_structures
    from gmnn.levels import Level
    from gmnn.training import Trainer
    d = tmp_path_factory.mktemp("active_start")
    frames = ase.io.read(ETHANOL, index=":36")
    for a in frames:
        a.calc = None
    label_structures(frames, d / "xtb.xyz", Level.parse("gfn2-xtb"), progress=False)
    ase.io.write(d / "start.xyz", frames[:2])
    config = config_from_dict({
        "output_dir": str(d / "model"),
        "data": {"train_file": str(d / "xtb.xyz"), "train_index": "0:30", "valid_file": str(d / "xtb.xyz"),
                 "valid_index": "30:"},
        "model": {"hidden": [16, 16], "cutoff": 4.0},
        "training": {"epochs": 5, "batch_size": 8, "lr": 0.01, "threads": 1},
    })
    Trainer(config, show_progress=False).run()
    return d


def active_config(start, out, **changes) -> dict:
    config = {
        "output_dir": str(out), "model": str(start / "model" / "best.ckpt"), "level": "gfn2-xtb",
        "max_iterations": 1,
        "data": {"train_file": str(start / "xtb.xyz"), "train_index": "0:30", "valid_file": str(start / "xtb.xyz"),
                 "valid_index": "30:"},
        "md": {"start": str(start / "start.xyz"), "temperature": 500, "steps": 100, "sample_every": 10,
               "trajectories": 2, "threshold": 3.0},
        "selection": {"batch": 4},
        "training": {"epochs": 3, "batch_size": 8, "threads": 1},
    }
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = value
    return config


def run(config: dict, **kw):
    from gmnn.active import active_config_from_dict, run_active
    return run_active(active_config_from_dict(config), progress=False, **kw)


def frames(path):
    from gmnn.active import _read_frames
    return _read_frames(path)


def keys(atoms_list):
    from gmnn.label_file import geometry_key
    return [geometry_key(a.numbers, a.positions) for a in atoms_list]


def test_two_iterations_label_retrain_and_report(xtb_start, tmp_path):
    out = tmp_path / "run"
    report = run(active_config(xtb_start, out, max_iterations=2))
    rows = report["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1, 2] and [r["labels"] for r in rows] == [0, 4, 8]
    assert report["finished"] == "max_iterations" and report["labels"] == 8
    for r in rows:
        assert 0 <= r["md_min_ps"] <= r["md_mean_ps"] <= r["md_requested_ps"] == pytest.approx(0.05)
        assert r["valid_forces_mae"] > 0 and r["max_sigma_F"] > 0
    assert rows[0]["trajectories_reached"] < 2  # the starting model leaves its domain: there was something to learn
    for k in (0, 1):
        it = out / f"iter_{k}"
        labels = frames(it / "labels.xyz")
        assert len(labels) == 4 and all(a.info["level"] == "gfn2-xtb" for a in labels)
        assert sorted(keys(labels)) == sorted(keys(frames(it / "selected.xyz")))
        assert len(frames(it / "candidates.xyz")) > 4  # a choice was made
        assert all(np.isfinite(a.get_forces()).all() for a in labels)
    assert len(frames(out / "iter_1" / "train_set.xyz")) == 30 + 8
    from gmnn.checkpoint import load_model
    assert load_model(out / "iter_1" / "train" / "best.ckpt").has_uncertainty
    table = (out / "report.md").read_text()
    assert "| 2 | 8 |" in table and "max_iterations reached" in table
    assert (out / "report.png").stat().st_size > 10000
    assert json.loads((out / "state.json").read_text())["finished"] == "max_iterations"
    from gmnn.rundir import RunDirError
    with pytest.raises(RunDirError, match="already holds an active-learning run"):
        run(active_config(xtb_start, out, max_iterations=2))


def test_interrupted_loop_resumes_without_duplicate_labels(xtb_start, tmp_path, monkeypatch):
    """Interrupted after 1 of 4 labels, then after 2 (resumed from the selection on disk); then
    the MD and the selection are lost as well: the resumed loop selects the same structures again
    (seeded), so it labels the missing 2 and no structure twice."""
    import gmnn.active as active
    real = active.label_structures
    out = tmp_path / "run"
    it = out / "iter_0"

    def labelling_stopped_after(n):
        def fake(structures, path, level, **kw):
            done = len(frames(path))
            real(structures, path, level, **{**kw, "indices": list(range(done, n))})
            raise KeyboardInterrupt
        return fake

    config = active_config(xtb_start, out)
    monkeypatch.setattr(active, "label_structures", labelling_stopped_after(1))
    with pytest.raises(active.ActiveInterrupted, match="iteration 0 .labels.*--resume") as stopped:
        run(config)
    assert stopped.value.status == 130
    selected, first_label = (it / "selected.xyz").read_text(), (it / "labels.xyz").read_text()
    assert len(frames(it / "labels.xyz")) == 1
    monkeypatch.setattr(active, "label_structures", labelling_stopped_after(2))
    with pytest.raises(active.ActiveInterrupted):
        run(config, resume=True)
    assert len(frames(it / "labels.xyz")) == 2 and (it / "selected.xyz").read_text() == selected
    for name in ("md.done", "candidates.xyz", "selection.done", "selected.xyz", "selection.json"):
        (it / name).unlink()
    for path in (it / "md").iterdir():
        path.unlink()
    monkeypatch.setattr(active, "label_structures", real)
    report = run(config, resume=True)
    assert (it / "selected.xyz").read_text() == selected
    labels = keys(frames(it / "labels.xyz"))
    assert len(labels) == len(set(labels)) == 4
    assert sorted(labels) == sorted(keys(frames(it / "selected.xyz")))
    assert (it / "labels.xyz").read_text().startswith(first_label)  # kept, not computed again
    assert [r["labels"] for r in report["iterations"]] == [0, 4] and report["finished"] == "max_iterations"


def test_a_model_that_stays_sure_ends_the_loop_at_once(xtb_start, tmp_path):
    out = tmp_path / "run"
    report = run(active_config(xtb_start, out, **{"md.threshold": 1000.0, "md.steps": 30}))
    (row,) = report["iterations"]
    assert report["finished"] == "converged" and row["trajectories_reached"] == 2
    assert row["md_min_ps"] == pytest.approx(0.015) and not (out / "iter_0" / "selected.xyz").exists()
    assert "Finished: every trajectory" in (out / "report.md").read_text()


@pytest.mark.parametrize("change, message", [
    ({"md.treshold": 1.0}, "unknown config key 'md.treshold'; did you mean 'threshold'"),
    ({"md.threshold": -1.0}, "md.threshold must be positive"),
    ({"md.threshold": None}, "md.threshold is required"),
    ({"selection.method": "best"}, "selection.method must be one of 'uncertainty', 'random'"),
    ({"retrain": "finetune"}, "retrain must be one of 'warm_start', 'scratch'"),
    ({"selection.batch": 0}, "selection.batch must be >= 1"),
    ({"level": "pbe"}, "level: level of theory 'pbe': expected 'method/basis'"),
    ({"data.valid_file": None}, "data: give validation structures"),
    ({"model": "missing.ckpt"}, "missing.ckpt: checkpoint not found"),
    ({"md.start": "missing.xyz"}, "missing.xyz: file not found"),
    ("uncalibrated", "has no calibrated uncertainty"),
])
def test_bad_configs_are_one_line_errors(xtb_start, tmp_path, capsys, change, message):
    from gmnn.cli import active_main
    config = active_config(xtb_start, tmp_path / "run")
    if change == "uncalibrated":
        from gmnn.checkpoint import load_checkpoint, save_checkpoint
        payload = load_checkpoint(config["model"])
        payload["model"]["state_dict"]["uncertainty.energy_scale"].zero_()
        save_checkpoint(tmp_path / "uncalibrated.ckpt", payload)
        config["model"] = str(tmp_path / "uncalibrated.ckpt")
    else:
        for key, value in change.items():
            section, _, name = key.rpartition(".")
            (config[section] if section else config)[name] = value
    path = tmp_path / "active.yaml"
    path.write_text(yaml.safe_dump(config))
    assert active_main([str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_periodic_liquid_is_labelled_as_clusters_around_its_most_uncertain_atoms(xtb_start, tmp_path):
    """Liquids: the MD runs in a periodic box of 8 ethanol molecules; each picked frame is labelled
    as the cluster of 2 whole molecules around its most uncertain atom (selection.cluster_molecules),
    which quantum chemistry can compute, and the next model trains on them."""
    import ase.io
    from gmnn.clusters import liquid_box
    from gmnn.config import ConfigError
    molecule = ase.io.read(ETHANOL, index=0)
    molecule.pbc, molecule.cell = False, None
    ase.io.write(tmp_path / "box.xyz", liquid_box(molecule, 8, 0.785, seed=2))
    config = active_config(xtb_start, tmp_path / "liquid", **{
        "md.start": str(tmp_path / "box.xyz"), "md.trajectories": 1, "md.steps": 40, "md.isolated_distance": None,
        "md.sample_every": 2, "md.threshold": 8.0, "selection.batch": 2})
    with pytest.raises(ConfigError, match="cluster_molecules"):
        run(config)
    config["selection"]["cluster_molecules"] = 2
    report = run(config)
    assert report["labels"] == 2
    it = tmp_path / "liquid" / "iter_0"
    candidates, labels = frames(it / "candidates.xyz"), frames(it / "labels.xyz")
    assert all(c.pbc.all() for c in candidates)
    for picked, label in zip(frames(it / "selected.xyz"), labels):
        frame = candidates[picked.info["candidate"]]
        atom = picked.info["centre_atom"]
        assert atom == int(np.argmax(frame.arrays["sigma_F"]))
        assert len(label) == 18 and not label.pbc.any() and np.isfinite(label.get_forces()).all()
        # the central molecule is the uncertain atom's, whole: its distances as in the frame (minimum image)
        m = atom // 9 * 9 + np.arange(9)  # liquid_box writes molecule after molecule
        np.testing.assert_allclose(label.get_all_distances()[:9, :9], frame.get_all_distances(mic=True)[np.ix_(m, m)],
                                   atol=1e-6)
    assert len(frames(it / "train_set.xyz")) == 30 + 2
