// gmnn_elements.cpp -- the element table (symbols, standard atomic masses). No torch here.

#include "gmnn_elements.h"

namespace gmnn {

namespace {
const char *const kSymbols[] = {
    "",   "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si",
    "P",  "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru",
    "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr",
    "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",
    "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac",
    "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf",
    "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
// Standard atomic weights (IUPAC 2016, as ase.data.atomic_masses; for elements without a stable
// isotope the mass number of the longest-lived one), in g/mol = Da; index z - 1.
const double kMasses[] = {
    1.008, 4.0026, 6.94, 9.01218, 10.81, 12.011, 14.007, 15.999, 18.9984, 20.1797,
    22.9898, 24.305, 26.9815, 28.085, 30.9738, 32.06, 35.45, 39.948, 39.0983, 40.078,
    44.9559, 47.867, 50.9415, 51.9961, 54.938, 55.845, 58.9332, 58.6934, 63.546, 65.38,
    69.723, 72.63, 74.9216, 78.971, 79.904, 83.798, 85.4678, 87.62, 88.9058, 91.224,
    92.9064, 95.95, 97.9072, 101.07, 102.906, 106.42, 107.868, 112.414, 114.818, 118.71,
    121.76, 127.6, 126.904, 131.293, 132.905, 137.327, 138.905, 140.116, 140.908, 144.242,
    144.913, 150.36, 151.964, 157.25, 158.925, 162.5, 164.93, 167.259, 168.934, 173.054,
    174.967, 178.49, 180.948, 183.84, 186.207, 190.23, 192.217, 195.084, 196.967, 200.592,
    204.38, 207.2, 208.98, 208.982, 209.987, 222.018, 223.02, 226.025, 227.028, 232.038,
    231.036, 238.029, 237.048, 244.064, 243.061, 247.07, 247.07, 251.08, 252.083, 257.095,
    258.098, 259.101, 262.11, 267.122, 268.126, 271.134, 270.133, 269.134, 278.156, 281.165,
    281.166, 285.177, 286.182, 289.19, 289.194, 293.204, 293.208, 294.214};
constexpr int kMaxZ = 118;
static_assert(sizeof(kMasses) / sizeof(kMasses[0]) == kMaxZ, "one mass per element");
}  // namespace

int atomic_number(const std::string &symbol) {
  for (int z = 1; z <= kMaxZ; ++z)
    if (symbol == kSymbols[z]) return z;
  return -1;
}

std::string chemical_symbol(int z) { return (z >= 1 && z <= kMaxZ) ? kSymbols[z] : ""; }

double standard_atomic_mass(int z) { return (z >= 1 && z <= kMaxZ) ? kMasses[z - 1] : 0.0; }

}  // namespace gmnn
