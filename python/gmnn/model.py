"""The GM-NN potential: descriptor -> atomic network -> per-element scale and shift (spec 1).

`GMNN.forward` is the TorchScript-able core shared by training, the ASE calculator and the
exported LAMMPS model: edges in, atomic energies out. inference.predict adds the autograd parts
(forces, stress); `layer_groups` and `param_groups` are the layers as training sees them.
"""
from dataclasses import asdict, dataclass
from typing import List, Sequence, Tuple

import torch
from ase.data import atomic_numbers as ATOMIC_NUMBERS, chemical_symbols
from torch import nn

from .descriptor import GaussianMomentDescriptor
from .ntk import NTKLinear, ScaledSiLU
from .uncertainty import LastLayerUncertainty

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class ModelOptions:
    """Hyper-parameters of a GM-NN model; stored in every checkpoint to rebuild it."""
    atomic_numbers: List[int]
    cutoff: float = 5.0          # r_c in Angstrom
    n_radial: int = 5            # S: radial channels (5 -> 360 features)
    n_basis: int = 7             # K: Gaussians per radial function
    r_min: float = 0.5           # first Gaussian centre in Angstrom
    hidden: Tuple[int, ...] = (512, 512)
    dtype: str = "float32"

    def __post_init__(self):
        self.atomic_numbers = [int(z) for z in self.atomic_numbers]
        self.hidden = tuple(int(h) for h in self.hidden)
        if len(set(self.atomic_numbers)) != len(self.atomic_numbers):
            raise ValueError(f"duplicate elements in {self.atomic_numbers}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.cutoff <= self.r_min:
            raise ValueError(f"cutoff ({self.cutoff}) must exceed r_min ({self.r_min})")

    # the fields a config's `model:` section may set (atomic_numbers come from the data or `elements`)
    CONFIG_FIELDS = ("cutoff", "n_radial", "n_basis", "r_min", "hidden", "dtype")

    @classmethod
    def from_config(cls, model_config, atomic_numbers: Sequence[int]) -> "ModelOptions":
        """Options from a config's `model:` section: given fields by keyword, the rest default."""
        from .config import ConfigError
        given = {name: getattr(model_config, name) for name in cls.CONFIG_FIELDS
                 if getattr(model_config, name) is not None}
        try:
            return cls(list(atomic_numbers), **given)
        except ValueError as exc:
            raise ConfigError(f"model: {exc}") from None

    def to_config(self):
        """The config `model:` section that says exactly these options (what config.json records)."""
        from .config import ModelConfig
        return ModelConfig(elements=[chemical_symbols[z] for z in self.atomic_numbers], cutoff=float(self.cutoff),
                           n_radial=self.n_radial, n_basis=self.n_basis, r_min=float(self.r_min),
                           hidden=list(self.hidden), dtype=self.dtype)

    def contradictions(self, model_config) -> List[str]:
        """Fields a config's `model:` section gives with values other than these options'."""
        out = []
        for name in self.CONFIG_FIELDS:
            given = getattr(model_config, name)
            if given is None:
                continue
            mine = getattr(self, name)
            if (tuple(given) if name == "hidden" else given) != mine:
                out.append(f"model.{name}: {given} in the config, {list(mine) if name == 'hidden' else mine} in the model")
        return out


class AtomicNetwork(nn.Module):
    """Features -> one number per atom: NTK linear layers with scaled SiLU in between."""

    def __init__(self, n_features: int, hidden: Sequence[int]):
        super().__init__()
        widths = [n_features, *hidden, 1]
        layers: List[nn.Module] = []
        for k in range(len(widths) - 1):
            layers.append(NTKLinear(widths[k], widths[k + 1]))
            if k < len(widths) - 2:
                layers.append(ScaledSiLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)

    @torch.jit.export
    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the last (linear) layer: forward(x) = last layer of hidden(x)."""
        n = len(self.layers)
        for k, layer in enumerate(self.layers):
            if k < n - 1:
                x = layer(x)
        return x

    @torch.jit.export
    def forward_and_input_gradient(self, x: torch.Tensor, weights: torch.Tensor
                                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward(x) (N,), d(sum_i weights_i forward(x)_i)/dx (N, in) without autograd, and
        hidden(x) (fused.py)."""
        jacobians: List[torch.Tensor] = []
        elementwise: List[bool] = []
        hidden = x
        for layer in self.layers:
            hidden = x
            x, jacobian = layer.forward_and_jacobian(x)
            jacobians.append(jacobian)
            elementwise.append(layer.elementwise)
        grad = weights.unsqueeze(-1)
        for k in range(len(jacobians) - 1, -1, -1):
            if elementwise[k]:  # an activation's slope (N, width)
                grad = grad * jacobians[k]
            else:  # a linear layer's weight (out, in)
                grad = grad @ jacobians[k]
        return x.squeeze(-1), grad, hidden

    def linear_layers(self) -> List[NTKLinear]:
        return [m for m in self.layers if isinstance(m, NTKLinear)]


class ElementScaleShift(nn.Module):
    """E_i = scale[Z_i] * E_i^NN + shift[Z_i]. Fitted from data (see `fit_scale_shift`).

    The shifts stay float64 in a float32 model (as in apax): they are large (about -1030 eV for
    carbon), float32 rounds them by up to 6e-8 of themselves, and a 10^5-atom energy sums that
    (3.6 eV in tests/test_physics.py). `model.to(...)` moves them with the model, in float64."""

    def __init__(self, n_elements: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n_elements), requires_grad=False)
        self.shift = nn.Parameter(torch.zeros(n_elements, dtype=torch.float64), requires_grad=False)

    def _apply(self, fn, recurse=True):
        exact = self.shift.detach().clone()
        super()._apply(fn, recurse)
        self.shift.data = exact.to(self.shift.device)
        return self


class GMNN(nn.Module):
    __jit_unused_properties__ = ["dtype", "symbols", "has_uncertainty"]

    def __init__(self, options: ModelOptions):
        super().__init__()
        self.options = options
        self.cutoff = float(options.cutoff)
        self.atomic_numbers: List[int] = list(options.atomic_numbers)
        n_el = len(options.atomic_numbers)
        self.descriptor = GaussianMomentDescriptor(n_el, options.n_radial, options.n_basis,
                                                   options.r_min, options.cutoff)
        self.network = AtomicNetwork(self.descriptor.n_features, options.hidden)
        self.scale_shift = ElementScaleShift(n_el)
        # the last layer's inputs (the descriptor's features for a network without hidden layers) + bias
        last_inputs = options.hidden[-1] if options.hidden else self.descriptor.n_features
        self.uncertainty = LastLayerUncertainty(last_inputs + 1)
        self.to(DTYPES[options.dtype])

    # ---- TorchScript core -------------------------------------------------------------
    def forward(self, edge_vectors: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
                species: torch.Tensor, n_centers: int) -> torch.Tensor:
        """Atomic energies (eV, float64 in any model dtype) of atoms 0..n_centers-1; see
        docs/model_file.md. sigma_Z * E_i^NN in the model dtype, plus the shift in float64."""
        features = self.descriptor(edge_vectors, centers, neighbors, species, n_centers)
        center_species = species[:n_centers]
        energies = self.scale_shift.scale[center_species] * self.network(features)
        return energies.to(torch.float64) + self.scale_shift.shift[center_species]

    @torch.jit.export
    def forward_uncertainty(self, edge_vectors: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
                            species: torch.Tensor, n_centers: int
                            ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward's atomic energies, each atom's force uncertainty (eV/A, float64) and its
        last-layer features phi (n_centers, d) in float64 (uncertainty.py): the energy is
        phi . theta + shift, and the energy uncertainty of a structure is that of its summed phi."""
        features = self.descriptor(edge_vectors, centers, neighbors, species, n_centers)
        center_species = species[:n_centers]
        scale = self.scale_shift.scale[center_species]
        hidden = self.network.hidden(features)
        last = self.network.layers[-1]
        energies = scale * last(hidden).squeeze(-1)
        phi = self._last_layer_features(hidden, scale)
        force_sigma = self.uncertainty.force_sigma(phi)
        return energies.to(torch.float64) + self.scale_shift.shift[center_species], force_sigma, phi

    def _last_layer_features(self, hidden: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """phi (n_centers, d) float64 from the last layer's input and the per-atom scale."""
        last = self.network.layers[-1]
        bias = torch.full_like(scale, last.bias_factor)
        phi = (scale.unsqueeze(-1) * torch.cat([hidden * last.weight_factor, bias.unsqueeze(-1)], dim=-1)).detach()
        return phi.to(torch.float64)

    # ---- the fused path: energies and their edge gradients without autograd (fused.py) -----
    @torch.jit.export
    def forward_gradients(self, edge_vectors: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
                          species: torch.Tensor, n_centers: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """forward's atomic energies (float64) and g = d(sum of them)/d(edge_vectors) (E, 3) in
        the model dtype, by the analytic backward of fused.py instead of autograd; inference only
        (nothing here can be differentiated again). docs/model_file.md."""
        energies, grad, hidden, scale = self._fused(edge_vectors, centers, neighbors, species, n_centers)
        return energies, grad

    @torch.jit.export
    def forward_uncertainty_gradients(self, edge_vectors: torch.Tensor, centers: torch.Tensor,
                                      neighbors: torch.Tensor, species: torch.Tensor, n_centers: int
                                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward_uncertainty's (energies, sigma_F, phi) and forward_gradients' edge gradients."""
        energies, grad, hidden, scale = self._fused(edge_vectors, centers, neighbors, species, n_centers)
        phi = self._last_layer_features(hidden, scale)
        return energies, self.uncertainty.force_sigma(phi), phi, grad

    def _fused(self, edge_vectors: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
               species: torch.Tensor, n_centers: int
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(atomic energies, edge gradients, last layer's input, per-atom scale)."""
        with torch.no_grad():
            features, context = self.descriptor.forward_with_context(edge_vectors, centers, neighbors, species,
                                                                     n_centers)
            center_species = species[:n_centers]
            scale = self.scale_shift.scale[center_species]
            out, grad_features, hidden = self.network.forward_and_input_gradient(features, scale)
            grad = self.descriptor.edge_gradients(grad_features, context)
            energies = (scale * out).to(torch.float64) + self.scale_shift.shift[center_species]
        return energies, grad, hidden, scale

    @torch.jit.export
    def energy_uncertainty(self, structure_features: torch.Tensor) -> torch.Tensor:
        """sigma_E (eV, float64) of structures from their summed phi (B, d)."""
        return self.uncertainty.energy_sigma(structure_features)

    # ---- Python conveniences -----------------------------------------------------------
    @property
    def has_uncertainty(self) -> bool:
        return self.uncertainty.calibrated

    @property
    def dtype(self) -> torch.dtype:
        return self.network.linear_layers()[0].weight.dtype

    @property
    def symbols(self) -> List[str]:
        return [chemical_symbols[z] for z in self.atomic_numbers]

    def layer_groups(self) -> List[Tuple[str, List[nn.Parameter]]]:
        """Trainable layers from input to output: the descriptor's pair coefficients count as
        the lowest layer (used for layer-wise learning rates in fine-tuning)."""
        groups = [("descriptor", [self.descriptor.radial.pair_coefficients])]
        for k, layer in enumerate(self.network.linear_layers()):
            groups.append((f"dense{k}", [layer.weight, layer.bias]))
        return groups

    def checkpoint_state(self) -> dict:
        return {"options": asdict(self.options), "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint_state(cls, state: dict) -> "GMNN":
        model = cls(ModelOptions(**state["options"]))
        model.load_weights(state["state_dict"])
        return model

    def load_weights(self, state_dict: dict) -> None:
        """load_state_dict that accepts checkpoints from before uncertainty.py (no
        `uncertainty.*` buffers: the model is then not calibrated)."""
        result = self.load_state_dict(state_dict, strict=False)
        if result.unexpected_keys or any(not k.startswith("uncertainty.") for k in result.missing_keys):
            self.load_state_dict(state_dict)  # raises with torch's message


def param_groups(model: GMNN, lr: float, layer_lr_factor: float = 1.0, freeze: Sequence[str] = ()) -> List[dict]:
    """One optimizer group per layer (input -> output); layer l gets
    lr / layer_lr_factor^(L - l) (discriminative fine-tuning). Frozen layers get no group and
    requires_grad=False."""
    groups = model.layer_groups()
    names = [name for name, _ in groups]
    unknown = set(freeze) - set(names)
    if unknown:
        raise ValueError(f"cannot freeze unknown layer(s) {sorted(unknown)}; layers: {names}")
    top = len(groups) - 1
    out = []
    for level, (name, params) in enumerate(groups):
        frozen = name in freeze
        for p in params:
            p.requires_grad_(not frozen)
        if not frozen:
            out.append({"params": params, "lr": lr / layer_lr_factor ** (top - level), "name": name})
    return out


def build_model(elements: Sequence, **options) -> GMNN:
    """An untrained GM-NN for the given elements (symbols like "C" or atomic numbers); `options`
    are ModelOptions fields (cutoff, n_radial, n_basis, r_min, hidden, dtype), the rest default."""
    numbers = []
    for el in elements:
        if isinstance(el, str):
            if el not in ATOMIC_NUMBERS:
                raise ValueError(f"unknown element symbol {el!r}")
            numbers.append(ATOMIC_NUMBERS[el])
        else:
            numbers.append(int(el))
    return GMNN(ModelOptions(sorted(numbers), **options))
