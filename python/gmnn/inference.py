"""One way to evaluate a model, whatever it is (a GMNN, or a model file that loading.load read):
`predict` calls its TorchScript-able forward (edges in, float64 atomic energies out;
docs/model_file.md), in blocks of atoms if asked, sums the energies of each structure in
float64, and turns the energy gradient w.r.t. the edge vectors into forces and virials with
`forces_and_virials`, the one place in Python that does (in C++: gmnn::tally_edge_gradients).
Training (create_graph=True for force training), evaluation, the energy-shift fit and the ASE
calculator all call `predict`. The energy gradient comes from autograd over forward or, where
nothing differentiates it again, from the model's forward_gradients (fused.py: the same numbers
without an autograd graph)."""
from typing import Dict, Iterator, Optional, Tuple

import torch


def forces_and_virials(grad: torch.Tensor, edge_vectors: torch.Tensor, centers: torch.Tensor,
                       neighbors: torch.Tensor, n_atoms: int, edge_structure: Optional[torch.Tensor] = None,
                       n_structures: int = 1, virials: bool = False,
                       force_dtype: Optional[torch.dtype] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """From g_e = dE/d(edge_vectors[e]), edge e = x_j - x_i (i = centers[e], j = neighbors[e]):
    forces F_i += g_e, F_j -= g_e, (n_atoms, 3), summed in `force_dtype` (default: g's); and,
    with `virials`, each structure's dE/d(strain)_ab = sum_e g_e,a r_e,b, (n_structures, 3, 3)
    in float64, summed over its edges (`edge_structure`; None: one structure). That is minus the
    LAMMPS virial W; the ASE stress is its symmetric part divided by the volume."""
    g = grad if force_dtype is None else grad.to(force_dtype)
    forces = torch.zeros((n_atoms, 3), dtype=g.dtype, device=g.device)
    forces = forces.index_add(0, centers, g).index_add(0, neighbors, -g)
    if not virials:
        return forces, None
    if edge_structure is None:
        edge_structure = torch.zeros(grad.shape[0], dtype=torch.long, device=grad.device)
    per_edge = grad.double().unsqueeze(2) * edge_vectors.double().unsqueeze(1)
    strain = torch.zeros((n_structures, 3, 3), dtype=torch.float64, device=grad.device)
    return forces, strain.index_add(0, edge_structure, per_edge)


def predict(model, batch, forces: bool = True, stress: bool = False, create_graph: bool = False,
            atoms_per_pass: Optional[int] = None, force_dtype: Optional[torch.dtype] = None,
            uncertainty: bool = False, fused: Optional[bool] = None) -> Dict[str, torch.Tensor]:
    """`energy` per structure and `atomic_energies` (float64), `forces` (summed in `force_dtype`,
    default the model dtype, which force training differentiates again) and, if
    asked, `stress` (float64, (B, 3, 3): the symmetric dE/d(strain) over the volume) of a
    GraphBatch. `create_graph`: the forces can be differentiated again (force training).
    `atoms_per_pass`: at most that many atoms (centres) per forward/backward pass, so memory stays
    bounded for 10^5-atom structures (the option of the same name in pair_style gmnn); the
    results do not depend on it, since an atom's energy depends only on its own edges. None: one
    pass. Blocks need the edges sorted by centre, as neighbor_list and collate give them.
    `uncertainty` (a calibrated model, uncertainty.py) adds `energy_uncertainty` per structure,
    `forces_uncertainty` per atom and the last-layer features behind them, `atomic_features`
    and `structure_features` (float64).
    `fused`: the energy gradient from the model's forward_gradients (fused.py; nothing can then be
    differentiated again) instead of autograd over forward; None: whenever the model has it
    (models, and model files exported since fused.py) and `create_graph` is False."""
    n = batch.species.shape[0]
    gradients = forces or stress
    fused_call = _fused_method(model, uncertainty) if gradients and not create_graph and fused is not False else None
    if fused and fused_call is None:
        raise ValueError("fused=True needs forces or stress, no create_graph, and a model with forward_gradients "
                         "(model files exported before fused.py have none)")
    call = fused_call if fused_call is not None else model.forward_uncertainty if uncertainty else model
    edge_structure = batch.atom_structure[batch.centers] if stress else None
    atomic_parts, force_sum, strain = [], None, None
    sigma_parts, phi_parts = [], []
    for first, last, start, stop in atom_blocks(batch.centers, n, atoms_per_pass):
        vectors = batch.edge_vectors[start:stop].to(model.dtype)
        if gradients and fused_call is None:
            vectors = vectors.detach().requires_grad_(True)
        centers, neighbors = batch.centers[start:stop], batch.neighbors[start:stop]
        atomic = _forward_block(call, vectors, centers, neighbors, batch.species, first, last)
        if fused_call is not None:  # (energies, [sigma_F, phi,] edge gradients)
            grad = atomic[-1]
            atomic = tuple(atomic[:-1]) if uncertainty else atomic[0]
        if uncertainty:
            atomic, sigma, phi = atomic
            sigma_parts.append(sigma)
            phi_parts.append(phi)
        atomic_parts.append(atomic)
        if gradients:
            if fused_call is None:
                (grad,) = torch.autograd.grad(atomic.sum(), vectors, create_graph=create_graph)
            f, s = forces_and_virials(grad, vectors, centers, neighbors, n,
                                      None if edge_structure is None else edge_structure[start:stop],
                                      batch.n_structures, virials=stress, force_dtype=force_dtype)
            force_sum = f if force_sum is None else force_sum + f
            if stress:
                strain = s if strain is None else strain + s
    device = batch.species.device
    if len(atomic_parts) == 1:
        atomic = atomic_parts[0]
    else:
        atomic = torch.cat(atomic_parts) if atomic_parts else torch.zeros(0, dtype=torch.float64, device=device)
    energy = torch.zeros(batch.n_structures, dtype=torch.float64, device=device)
    energy = energy.index_add(0, batch.atom_structure, atomic)
    out = {"energy": energy, "atomic_energies": atomic}
    if uncertainty:
        phi = torch.cat(phi_parts) if phi_parts else torch.zeros((0, 1), dtype=torch.float64, device=device)
        summed = torch.zeros((batch.n_structures, phi.shape[1]), dtype=torch.float64, device=device)
        summed = summed.index_add(0, batch.atom_structure, phi)
        out["atomic_features"], out["structure_features"] = phi, summed
        out["energy_uncertainty"] = model.energy_uncertainty(summed)
        out["forces_uncertainty"] = torch.cat(sigma_parts) if sigma_parts else torch.zeros(0, dtype=torch.float64,
                                                                                           device=device)
    if forces:
        out["forces"] = force_sum if force_sum is not None else torch.zeros((n, 3), dtype=force_dtype or model.dtype,
                                                                            device=device)
    if stress:
        if strain is None:
            strain = torch.zeros((batch.n_structures, 3, 3), dtype=torch.float64, device=device)
        out["stress"] = 0.5 * (strain + strain.transpose(1, 2)) / batch.volume.unsqueeze(-1).unsqueeze(-1)
    return out


def atom_blocks(centers: torch.Tensor, n_atoms: int,
                atoms_per_pass: Optional[int]) -> Iterator[Tuple[int, int, int, int]]:
    """(first, last, start, stop): atoms first..last-1 and their edges start..stop-1; the edges are
    sorted by centre, so each block of centres owns one contiguous range of them."""
    if n_atoms == 0:
        return
    if atoms_per_pass is None or atoms_per_pass >= n_atoms:
        yield 0, n_atoms, 0, int(centers.shape[0])
        return
    firsts = torch.arange(0, n_atoms + atoms_per_pass, atoms_per_pass, device=centers.device)
    bounds = torch.searchsorted(centers, firsts).tolist()
    for block, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        first = block * atoms_per_pass
        yield first, min(first + atoms_per_pass, n_atoms), start, stop


def _fused_method(model, uncertainty: bool):
    """The model's forward_gradients (forward_uncertainty_gradients with `uncertainty`): a GMNN's,
    or a model file's TorchScript module's when it has one; else None."""
    if uncertainty and not getattr(model, "has_uncertainty", False):
        return None  # forward_uncertainty says why, as before
    module = getattr(model, "module", model)  # loading.ExportedModel: the file's module
    return getattr(module, "forward_uncertainty_gradients" if uncertainty else "forward_gradients", None)


def _forward_block(call, vectors, centers, neighbors, species, first: int, last: int):
    """What `call` (forward, forward_uncertainty or their fused variants) returns for atoms
    first..last-1 from their edges. The model takes centres as atoms 0..m-1 followed by the other
    atoms their edges reach (as LAMMPS ghosts): those are renumbered after the block."""
    n = species.shape[0]
    if first == 0 and last == n:
        return call(vectors, centers, neighbors, species, n)
    m = last - first
    outside = torch.unique(neighbors[(neighbors < first) | (neighbors >= last)])
    local = torch.empty(n, dtype=torch.long, device=species.device)
    local[first:last] = torch.arange(m, device=species.device)
    local[outside] = m + torch.arange(len(outside), device=species.device)
    block_species = torch.cat([species[first:last], species[outside]])
    return call(vectors, centers - first, local[neighbors], block_species, m)
