"""How sure a model is: last-layer prediction rigidity (LLPR; Bigi, Chong, Ceriotti and Grasselli,
2024) over atomic environments, calibrated on held-out data.

The atomic network ends in a linear layer, so an atom's energy is phi_i . theta + shift, with
phi_i the (scaled) input of that layer plus a bias entry, and a structure's energy is
Phi . theta, Phi = sum_i phi_i. Treating theta as the only uncertain parameters gives a
Gaussian posterior whose precision is built from the training features. Here it is built from
the training *atoms*, C = sum over training atoms of phi_i phi_i^T, so an environment the
training set never showed gets a large sigma, whatever its labels:

    sigma_F(atom i)^2    = beta^2 |W^T phi_i|^2 + f0^2,    W W^T = (C + reg I)^-1  (eV/A)
    sigma_E(structure)^2 = alpha^2 |W^T Phi|^2 + e0^2                          (eV)

Why atoms, not structures (the textbook LLPR): measured on ethanol (examples/uncertainty),
the per-atom force uncertainty ranks force errors with Spearman 0.65 instead of 0.40, and tells
two molecules in contact from single molecules with ROC AUC 1.00 instead of 0.91; energy
rankings are the same (0.31 vs 0.30). sigma_F is the atom's own rigidity (one d x d product per
atom, no extra backward pass: cheap enough for every MD step).

The floors e0, f0 are the error no feature direction explains (label noise, a level of theory
the model cannot represent): without them one held-out structure with a tiny rigidity term and
an ordinary error inflates alpha for all.

Calibration (`fit`): the regulariser reg (a fraction of C's mean eigenvalue) maximises the
Gaussian likelihood of the held-out force errors per atom (|F - F_ref|^2 / 3 per component), or
of the energy errors when there are no force labels; then alpha, e0 and beta, f0 maximise the
likelihood of the energy and force errors.

The model carries the result as buffers of `LastLayerUncertainty` (float64 in any model dtype),
so checkpoints, model files and LAMMPS all have it; a model whose energy_scale is 0 was never
calibrated and reports no uncertainty.
"""
import logging
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

# candidate regularisers, as fractions of the mean eigenvalue of C
REGULARISERS = 10.0 ** np.arange(-12.0, 1.0)


class CalibrationError(ValueError):
    """The data cannot calibrate an uncertainty (the model then has none, rather than a wrong one)."""


class LastLayerUncertainty(nn.Module):
    """The calibrated posterior of the last layer. `whitening` W: W W^T = (C + reg I)^-1;
    `covariance` C is kept for fine-tuning (new structures add to it) and dropped by export."""

    def __init__(self, n_features: int):
        super().__init__()
        d = n_features
        self.register_buffer("whitening", torch.zeros(d, d, dtype=torch.float64))
        self.register_buffer("covariance", torch.zeros(d, d, dtype=torch.float64))
        self.register_buffer("n_structures", torch.zeros((), dtype=torch.float64))
        self.register_buffer("regulariser", torch.zeros((), dtype=torch.float64))
        self.register_buffer("energy_scale", torch.zeros((), dtype=torch.float64))  # alpha, 0: not calibrated
        self.register_buffer("energy_floor", torch.zeros((), dtype=torch.float64))  # e0, eV
        self.register_buffer("force_scale", torch.zeros((), dtype=torch.float64))   # beta
        self.register_buffer("force_floor", torch.zeros((), dtype=torch.float64))   # f0, eV/A

    def _apply(self, fn, recurse=True):
        # float64 whatever the model dtype: the posterior spans many orders of magnitude
        exact = {name: b.detach().clone() for name, b in self._buffers.items()}
        super()._apply(fn, recurse)
        for name, b in exact.items():
            self._buffers[name] = b.to(self._buffers[name].device)
        return self

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """|W^T phi|^2 per row of phi (n, d) float64: the rigidity term, sigma^2 in units of alpha^2."""
        return (phi @ self.whitening).square().sum(-1)

    @torch.jit.export
    def energy_sigma(self, structure_phi: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.energy_scale.square() * self.forward(structure_phi) + self.energy_floor.square())

    @torch.jit.export
    def force_sigma(self, phi: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.force_scale.square() * self.forward(phi) + self.force_floor.square())

    @property
    def calibrated(self) -> bool:
        return bool(self.energy_scale > 0)


def structure_features(model, graphs, batch_size: int = 64) -> Dict[str, np.ndarray]:
    """Phi per structure (M, d), phi per atom (sum N, d), atom -> structure index, predicted
    energies (M,) and forces (sum N, 3) of `graphs` (a GMNN), float64."""
    from .graph import collate
    from .inference import predict
    parts = {"Phi": [], "phi": [], "energy": [], "forces": [], "structure": []}
    offset = 0
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start:start + batch_size])
        out = predict(model, batch, forces=True, uncertainty=True, force_dtype=torch.float64)
        parts["Phi"].append(out["structure_features"].detach().numpy())
        parts["phi"].append(out["atomic_features"].detach().numpy())
        parts["energy"].append(out["energy"].detach().numpy())
        parts["forces"].append(out["forces"].detach().numpy())
        parts["structure"].append(batch.atom_structure.numpy() + offset)
        offset += batch.n_structures
    return {k: np.concatenate(v) for k, v in parts.items()}


def whitening(covariance: np.ndarray, regulariser: float) -> np.ndarray:
    """W with W W^T = (C + reg I)^-1 (from the eigenvectors of C; stable for rank-deficient C)."""
    values, vectors = np.linalg.eigh(covariance)
    return vectors / np.sqrt(np.clip(values, 0.0, None) + regulariser)


def fit(model, train, valid=(), prior: Optional[LastLayerUncertainty] = None,
        folds: Sequence[Tuple[object, Sequence, Sequence]] = ()) -> Dict[str, float]:
    """Calibrate `model.uncertainty` (a GMNN, in place): C from the `train` graphs (plus the
    `prior`'s: the calibrated uncertainty of the model fine-tuning started from, i.e. its
    pre-training structures), the regulariser, alpha and beta from the `valid` graphs' errors.
    `folds` instead of valid: (fold model, its training graphs, its held-out graphs) of a
    cross-validated fine-tune; each fold's held-out errors are judged by its own C. Without
    force labels, the force calibration is the prior's. Returns the calibration summary."""
    cov, n = training_covariance(model, train, prior)
    if folds:
        cases = [(training_covariance(m, t, prior)[0], held_out_errors(m, h)) for m, t, h in folds]
    else:
        if not valid:
            log.warning("uncertainty: no validation structures; calibrating on the training structures, so the "
                        "uncertainties will be too small")
            valid = train
        cases = [(cov, held_out_errors(model, valid))]
    has_forces = any(np.isfinite(h["force_error"]).any() for _, h in cases)
    if has_forces:
        summary = calibrate(cases)
    elif prior is not None and prior.calibrated:
        # energy labels only: they cannot calibrate forces; keep the pre-trained model's force
        # calibration, and its regulariser (relative to C) so that its scale keeps its meaning
        fraction = float(prior.regulariser) / mean_eigenvalue(prior.covariance.numpy())
        summary = calibrate(cases, fraction)
        summary.update(force_scale=float(prior.force_scale), force_floor=float(prior.force_floor),
                       forces_from="the pre-trained model (energy labels only)")
    else:
        raise CalibrationError("no force labels to calibrate the force uncertainty on, and the pre-trained "
                               "model has no calibrated uncertainty to take it from (gmnn-calibrate it first)")
    reg = summary["regulariser_fraction"] * mean_eigenvalue(cov)
    u = model.uncertainty
    u.covariance.copy_(torch.from_numpy(cov))
    u.n_structures.fill_(n)
    u.regulariser.fill_(reg)
    u.whitening.copy_(torch.from_numpy(whitening(cov, reg)))
    for name in ("energy_scale", "energy_floor", "force_scale", "force_floor"):
        getattr(u, name).fill_(summary[name])
    summary.update(regulariser=reg, covariance_structures=n)
    return summary


def training_covariance(model, train, prior: Optional[LastLayerUncertainty] = None):
    """C = sum of phi_i phi_i^T over the atoms of the `train` graphs (plus the prior's C), and the
    number of structures behind it."""
    d = model.uncertainty.whitening.shape[0]
    phi = structure_features(model, train)["phi"] if train else np.zeros((0, d))
    cov, n = phi.T @ phi, float(len(train))
    if prior is not None and prior.calibrated:
        cov, n = cov + prior.covariance.numpy(), n + float(prior.n_structures)
    return cov, n


def held_out_errors(model, graphs) -> Dict[str, np.ndarray]:
    """The features and the energy and per-atom force errors of `model` on labelled `graphs`
    (NaN where a label is missing)."""
    feats = structure_features(model, graphs)
    e_ref = np.array([np.nan if g.energy is None else g.energy for g in graphs])
    f_ref = np.concatenate([g.forces.numpy() if g.forces is not None else np.full((g.n_atoms, 3), np.nan)
                            for g in graphs])
    return {"Phi": feats["Phi"], "phi": feats["phi"], "energy_error": feats["energy"] - e_ref,
            "force_error": np.linalg.norm(feats["forces"] - f_ref, axis=1) / np.sqrt(3.0)}


def mean_eigenvalue(covariance: np.ndarray) -> float:
    return max(float(np.trace(covariance)) / len(covariance), 1e-300)


def calibrate(cases: Sequence[Tuple[np.ndarray, Dict[str, np.ndarray]]],
              fraction: Optional[float] = None) -> Dict[str, float]:
    """The regulariser (a fraction of C's mean eigenvalue; given, or chosen by the likelihood of
    the held-out force errors, or energy errors without force labels), then alpha, e0 and beta, f0
    by that of the energy and force errors, pooled over the (C, held_out_errors) cases. No force
    labels: no force_scale in the result."""
    n_e = sum(int(np.isfinite(h["energy_error"]).sum()) for _, h in cases)
    if not n_e:
        raise CalibrationError("no held-out structures with energies to calibrate the uncertainty on")
    has_forces = any(np.isfinite(h["force_error"]).any() for _, h in cases)
    best = None
    for fraction in REGULARISERS if fraction is None else [fraction]:
        terms = {"energy": [], "forces": []}
        err2 = {"energy": [], "forces": []}
        for cov, held in cases:
            w = whitening(cov, fraction * mean_eigenvalue(cov))
            for kind, features, errors in (("energy", "Phi", "energy_error"), ("forces", "phi", "force_error")):
                has = np.isfinite(held[errors])
                terms[kind].append(np.sum((held[features][has] @ w) ** 2, axis=1))
                err2[kind].append(held[errors][has] ** 2)
        fits = {kind: fit_variance(np.concatenate(terms[kind]), np.concatenate(err2[kind]))
                for kind in ("energy", "forces") if kind == "energy" or has_forces}
        judge = fits["forces" if has_forces else "energy"][2]
        if best is None or judge < best[0]:
            best = (judge, fraction, fits)
    _, fraction, fits = best
    out = {"regulariser_fraction": float(fraction), "energy_scale": fits["energy"][0],
           "energy_floor": fits["energy"][1], "energy_nll": fits["energy"][2], "n_held_out": n_e}
    if has_forces:
        out.update(force_scale=fits["forces"][0], force_floor=fits["forces"][1], force_nll=fits["forces"][2],
                   n_held_out_atoms=int(sum(len(e) for e in err2["forces"])))
    return out


def fit_variance(terms: np.ndarray, err2: np.ndarray) -> Tuple[float, float, float]:
    """scale, floor maximising the Gaussian likelihood of errors (squared: err2) whose variance
    is scale^2 * terms + floor^2; and the mean negative log-likelihood (up to a constant)."""
    from scipy.optimize import minimize
    terms = np.maximum(terms, 1e-300)

    def nll(log_params):
        var = np.exp(log_params[0]) * terms + np.exp(log_params[1])
        return float(np.mean(np.log(var) + err2 / var))

    typical = max(float(np.mean(err2)), 1e-30)
    starts = [(np.log(typical / np.mean(terms)), np.log(typical * f)) for f in (1e-6, 0.1, 0.5)]
    result = min((minimize(nll, x0, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 4000})
                  for x0 in starts), key=lambda r: r.fun)
    return float(np.sqrt(np.exp(result.x[0]))), float(np.sqrt(np.exp(result.x[1]))), float(result.fun)


def rank_correlation(predicted: Sequence[float], observed: Sequence[float]) -> float:
    """Spearman's rank correlation (no ties expected in continuous values)."""
    from scipy.stats import spearmanr
    return float(spearmanr(predicted, observed).statistic)
