// gmnn_elements.h -- chemical symbols and standard atomic masses of the elements. No torch here.

#ifndef GMNN_ELEMENTS_H
#define GMNN_ELEMENTS_H

#include <string>

namespace gmnn {

// Chemical symbol <-> atomic number (1..118). Returns -1 / "" when unknown.
int atomic_number(const std::string &symbol);
std::string chemical_symbol(int z);

// Standard atomic weight of element z in g/mol (IUPAC 2016, as ase.data.atomic_masses); 0 when
// z is unknown.
double standard_atomic_mass(int z);

}  // namespace gmnn

#endif  // GMNN_ELEMENTS_H
