"""Make the liquid-ethanol geometries in data/ with gmnn-sample --clusters / --dimers, then
interleave them into the three files to label (README.md). Re-running is cheap and gives the
same files: the MD frames (data/md_droplet_*.xyz) are reused, and continued only if a command
needs more of them than are on disk.

    python examples/liquid_ethanol/make_data.py
"""
import shlex
import subprocess
import sys
from pathlib import Path

import ase.io

from gmnn.clusters import interleave

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
START = "../../data/rmd17_ethanol_100.xyz"   # frame 0: the molecule
LIQUID = "--molecules 16 --density 0.785"     # a droplet of 16 ethanol at the liquid's density (300 K: 0.785 g/cm^3)
MD = {300: 1, 400: 2, 350: 3}                 # temperature (K): seed; 350 K is the held-out MD
SKIP = {300: 12, 400: 8, 350: 10}             # MD frames (50 fs apart) left out: the H-bonds still forming
# (temperature, what, how many); clusters: 3 molecules (PBE/def2-SVP ~2 min each, README)
PARTS = [(300, "clusters", 130), (400, "clusters", 70), (300, "dimers", 130), (400, "dimers", 70),
         (350, "clusters", 50), (350, "dimers", 50)]
OPTIONS = {"clusters": "--per-frame 4 --max-molecules 3 --cutoff 5.0",
           "dimers": "--per-frame 4 --scan 0.9,1.1,1.25,1.5,2.0"}


def command(temperature: int, what: str, samples: int) -> str:
    return (f"gmnn-sample {START} -o data/parts/{what}_{temperature}K.xyz --{what} {LIQUID} "
            f"--temperature {temperature} --seed {MD[temperature]} --frames data/md_droplet_{temperature}K.xyz "
            f"--skip-frames {SKIP[temperature]} --samples {samples} {OPTIONS[what]}")


def main():
    (DATA / "parts").mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    for part in PARTS:
        line = command(*part)
        print(line, flush=True)
        args = shlex.split(line)
        subprocess.run([str(bin_dir / args[0])] + args[1:], cwd=HERE, check=True)
    read = lambda t, what: ase.io.read(DATA / "parts" / f"{what}_{t}K.xyz", index=":")
    files = {"ethanol_clusters.xyz": interleave(read(300, "clusters"), read(400, "clusters")),
             "ethanol_dimers.xyz": interleave(read(300, "dimers"), read(400, "dimers")),
             "ethanol_liquid_heldout.xyz": interleave(read(350, "clusters"), read(350, "dimers"))}
    for name, frames in files.items():
        ase.io.write(DATA / name, frames, format="extxyz")
        print(f"data/{name}: {len(frames)} structures")


if __name__ == "__main__":
    main()
