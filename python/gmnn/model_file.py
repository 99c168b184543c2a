"""The model file's format (docs/model_file.md), shared by its writer (export.py) and its
readers (loading.py; the C++ loader, cpp/core/gmnn_model.cpp, checks the same): the version,
the metadata keys, the checksum, and telling a model file from other zip archives."""
import zipfile
import zlib

# 3: the module also has forward_uncertainty and energy_uncertainty (uncertainty.py), and the
# metadata says whether they are calibrated ("uncertainty": "llpr" or "none"); 2: forward returns
# float64 atomic energies whatever the model dtype (the shifts are added in float64); 1: in the
# model dtype. All are read (docs/model_file.md).
FORMAT_VERSION = 3
META_KEYS = ("format_version", "gmnn_version", "cutoff", "atomic_numbers", "dtype", "units", "uncertainty",
             "checksum")
# the TorchScript methods besides forward that a format-3 file keeps
UNCERTAINTY_METHODS = ("forward_uncertainty", "energy_uncertainty")
# and, in files exported since fused.py, the energies with their edge gradients without autograd;
# optional (readers fall back to autograd over forward without them), so no new format version
FUSED_METHODS = ("forward_gradients", "forward_uncertainty_gradients")


class ModelFileError(RuntimeError):
    pass


def archive_names(path):
    """The record names of a zip archive (TorchScript file, torch.save checkpoint); None for a
    file that is not one (or whose directory is corrupt, e.g. a name that is not UTF-8)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except Exception:
        return None


def is_torchscript(path) -> bool:
    """TorchScript archives hold compiled code (`<name>/code/...`); torch.save checkpoints don't."""
    return any("/code/" in name for name in archive_names(path) or ())


def is_model_file(path) -> bool:
    """Whether `path` is a gmnn model file (by its structure: TorchScript with gmnn metadata);
    loading.read_metadata checks the rest."""
    names = archive_names(path) or ()
    return any(n.endswith("/extra/gmnn/format_version") for n in names) and any("/code/" in n for n in names)


def is_torch_archive(path) -> bool:
    """A torch.save archive (a training checkpoint, or another pickle)."""
    return any(n.endswith("/data.pkl") for n in archive_names(path) or ())


def content_checksum(path) -> str:
    """CRC-32 (hex) over the archive records that define the model: code, constants, pickles and
    gmnn metadata (not the random serialization id, not the checksum itself), in name order."""
    skipped = {".data/serialization_id", "version", ".data/version", "extra/gmnn/checksum"}
    crc = 0
    with zipfile.ZipFile(path) as z:
        records = sorted((n.split("/", 1)[1], n) for n in z.namelist() if n.split("/", 1)[1] not in skipped)
        for name, full_name in records:  # same order and bytes as the C++ loader (gmnn_model.cpp)
            crc = zlib.crc32(name.encode(), crc)
            crc = zlib.crc32(z.read(full_name), crc)
    return f"{crc:08x}"
