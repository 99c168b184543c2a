"""gmnn.dispersion.tail_pressure_bar: the pressure D3 loses when cut short, checked against the
volume derivative of the energy D3 loses, on liquid ethanol. The derivative scales the cutoffs with
the box, so that no pair crosses a cutoff: with fixed hard cutoffs -dE/dV also counts the pairs that
cross (the impulsive term of truncated potentials, here as large as the tail itself), which forces,
and so a barostat, never see."""
import numpy as np
import pytest
from ase.build import molecule
from ase.units import bar

from gmnn import dispersion
from gmnn.clusters import liquid_box


@pytest.fixture(scope="module")
def liquid():
    return liquid_box(molecule("CH3CH2OH"), 27, density_g_cm3=0.785, seed=1)


def lost_energy(atoms, cutoff, cn_cutoff, scale):
    def energy(cut, cn):
        return dispersion.D3(cutoff=cut * scale, cn_cutoff=cn * scale).get_potential_energy(atoms)
    return energy(dispersion.CUTOFF, dispersion.CN_CUTOFF) - energy(cutoff, cn_cutoff)


def test_tail_pressure_is_minus_the_volume_derivative_of_the_lost_energy(liquid):
    tail = dispersion.tail_pressure_bar(liquid, 12.0, 10.0)
    h = 1e-3  # relative change of the box length
    energies = []
    for s in (1 + h, 1 - h):
        scaled = liquid.copy()
        scaled.set_cell(liquid.cell * s, scale_atoms=True)
        energies.append(lost_energy(scaled, 12.0, 10.0, s))
    d_volume = liquid.get_volume() * ((1 + h) ** 3 - (1 - h) ** 3)
    assert tail == pytest.approx(-(energies[0] - energies[1]) / d_volume / bar, rel=1e-3)
    assert -300.0 < tail < -30.0  # dispersion attracts: tens to hundreds of bar at liquid density


def test_tail_pressure_shrinks_with_the_cutoff_and_vanishes_at_the_recommended_one(liquid):
    tails = [dispersion.tail_pressure_bar(liquid, c, 10.0) for c in (10.0, 12.0, 15.0, 20.0)]
    assert tails[0] < tails[1] < tails[2] < tails[3] < 0
    assert dispersion.tail_pressure_bar(liquid, dispersion.CUTOFF, dispersion.CN_CUTOFF) == 0.0
