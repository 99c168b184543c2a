"""Write molecules.csv: the organic (C, H, N, O) molecules of the pre-training set (issue 17).

Three sources, in this order, duplicates (by RDKit canonical SMILES) kept at their first place:
1. HELDOUT: molecules kept out of every training split (transfer to unseen molecules);
2. CURATED: hand-picked molecules per functional group (heterocycles, bifunctional, rings, ...);
3. ENUMERATED: every substituent R of R_GROUPS joined to every group X of X_GROUPS (R-X),
   e.g. propyl + ester = CCCC(=O)OC (enols and enamines left out);
4. QM9: the molecules of data/qm9_100.xyz with C, H, N, O only, their bonds perceived from the
   geometry by RDKit (rdDetermineBonds), named qm9_<frame>.
Training molecules have at most MAX_HEAVY heavy atoms; held-out ones may have more (aspirin: 13).
The functional groups are assigned by SMARTS (GROUPS), not by hand.

    python examples/organic/make_molecules.py      # rewrites molecules.csv (deterministic)
"""
import csv
from pathlib import Path

import ase.io
from rdkit import Chem, RDLogger
from rdkit.Chem import rdDetermineBonds, rdMolDescriptors

HERE = Path(__file__).resolve().parent
QM9 = HERE.parents[1] / "data" / "qm9_100.xyz"
MAX_HEAVY = 9
ELEMENTS = {"C", "H", "N", "O"}

HELDOUT = [  # (name, SMILES): two per group where it matters, the two MD17 drug molecules
    ("ethanol", "CCO"), ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"), ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("diethyl_ether", "CCOCC"), ("butanone", "CCC(C)=O"), ("propanal", "CCC=O"),
    ("butanoic_acid", "CCCC(=O)O"), ("methyl_propanoate", "CCC(=O)OC"), ("diethylamine", "CCNCC"),
    ("n_methylacetamide", "CNC(C)=O"), ("butyronitrile", "CCCC#N"), ("toluene", "Cc1ccccc1"),
    ("phenol", "Oc1ccccc1"), ("pyridine", "c1ccncc1"), ("furan", "c1ccoc1"), ("imidazole", "c1c[nH]cn1"),
    ("glycine", "NCC(=O)O"), ("uracil", "O=c1cc[nH]c(=O)[nH]1"), ("morpholine", "C1COCCN1"),
    ("cyclohexanone", "O=C1CCCCC1"),
]

CURATED = [
    # alkanes, alkenes, alkynes, rings
    ("methane", "C"), ("ethane", "CC"), ("propane", "CCC"), ("butane", "CCCC"), ("isobutane", "CC(C)C"),
    ("pentane", "CCCCC"), ("neopentane", "CC(C)(C)C"), ("hexane", "CCCCCC"), ("heptane", "CCCCCCC"),
    ("octane", "CCCCCCCC"), ("2_methylpentane", "CCCC(C)C"), ("cyclopropane", "C1CC1"), ("cyclobutane", "C1CCC1"),
    ("cyclopentane", "C1CCCC1"), ("cyclohexane", "C1CCCCC1"), ("methylcyclohexane", "CC1CCCCC1"),
    ("norbornane", "C1CC2CCC1C2"), ("ethene", "C=C"), ("propene", "C=CC"), ("1_butene", "C=CCC"),
    ("2_butene", "CC=CC"), ("isobutene", "C=C(C)C"), ("1_3_butadiene", "C=CC=C"), ("isoprene", "C=CC(C)=C"),
    ("cyclopentene", "C1CC=CC1"), ("cyclohexene", "C1CCC=CC1"), ("1_3_cyclohexadiene", "C1CC=CC=C1"),
    ("ethyne", "C#C"), ("propyne", "CC#C"), ("1_butyne", "CCC#C"), ("2_butyne", "CC#CC"),
    # aromatics
    ("benzene", "c1ccccc1"), ("ethylbenzene", "CCc1ccccc1"), ("o_xylene", "Cc1ccccc1C"), ("m_xylene", "Cc1cccc(C)c1"),
    ("p_xylene", "Cc1ccc(C)cc1"), ("styrene", "C=Cc1ccccc1"), ("phenylacetylene", "C#Cc1ccccc1"),
    ("benzaldehyde", "O=Cc1ccccc1"), ("acetophenone", "CC(=O)c1ccccc1"), ("benzoic_acid", "OC(=O)c1ccccc1"),
    ("anisole", "COc1ccccc1"), ("aniline", "Nc1ccccc1"), ("benzonitrile", "N#Cc1ccccc1"),
    ("benzamide", "NC(=O)c1ccccc1"), ("o_cresol", "Cc1ccccc1O"), ("p_cresol", "Cc1ccc(O)cc1"),
    ("catechol", "Oc1ccccc1O"), ("hydroquinone", "Oc1ccc(O)cc1"), ("resorcinol", "Oc1cccc(O)c1"),
    ("p_toluidine", "Cc1ccc(N)cc1"), ("o_aminophenol", "Nc1ccccc1O"), ("p_aminophenol", "Nc1ccc(O)cc1"),
    ("salicylaldehyde", "O=Cc1ccccc1O"), ("nitrobenzene", "O=[N+]([O-])c1ccccc1"),
    ("benzyl_alcohol", "OCc1ccccc1"), ("phenylacetic_acid", "OC(=O)Cc1ccccc1"),
    # heterocycles, aromatic
    ("pyrrole", "c1cc[nH]c1"), ("thiophene_free_oxazole", "c1cocn1"), ("isoxazole", "c1cnoc1"),
    ("pyrazole", "c1cn[nH]c1"), ("1_2_4_triazole", "c1nc[nH]n1"), ("tetrazole", "c1nnn[nH]1"),
    ("pyrimidine", "c1cncnc1"), ("pyrazine", "c1cnccn1"), ("pyridazine", "c1ccnnc1"), ("1_3_5_triazine", "c1ncncn1"),
    ("2_methylpyridine", "Cc1ccccn1"), ("3_methylpyridine", "Cc1cccnc1"), ("4_methylpyridine", "Cc1ccncc1"),
    ("2_aminopyridine", "Nc1ccccn1"), ("3_hydroxypyridine", "Oc1cccnc1"), ("2_pyridone", "O=c1cccc[nH]1"),
    ("nicotinamide", "NC(=O)c1cccnc1"), ("2_methylfuran", "Cc1ccco1"), ("furfural", "O=Cc1ccco1"),
    ("furfuryl_alcohol", "OCc1ccco1"), ("2_acetylfuran", "CC(=O)c1ccco1"), ("n_methylpyrrole", "Cn1cccc1"),
    ("2_methylimidazole", "Cc1ncc[nH]1"), ("n_methylimidazole", "Cn1ccnc1"), ("cytosine", "Nc1cc[nH]c(=O)n1"),
    ("thymine", "Cc1c[nH]c(=O)[nH]c1=O"), ("indole", "c1ccc2[nH]ccc2c1"), ("benzofuran", "c1ccc2occc2c1"),
    ("benzoxazole", "c1ccc2ocnc2c1"), ("benzimidazole", "c1ccc2[nH]cnc2c1"), ("purine", "c1ncc2[nH]cnc2n1"),
    ("maleimide", "O=C1C=CC(=O)N1"),
    # heterocycles, saturated
    ("oxirane", "C1CO1"), ("aziridine", "C1CN1"), ("oxetane", "C1COC1"), ("azetidine", "C1CNC1"),
    ("tetrahydrofuran", "C1CCOC1"), ("pyrrolidine", "C1CCNC1"), ("tetrahydropyran", "C1CCOCC1"),
    ("piperidine", "C1CCNCC1"), ("1_4_dioxane", "C1COCCO1"), ("piperazine", "C1CNCCN1"),
    ("gamma_butyrolactone", "O=C1CCCO1"), ("delta_valerolactone", "O=C1CCCCO1"), ("2_pyrrolidone", "O=C1CCCN1"),
    ("caprolactam", "O=C1CCCCCN1"), ("n_methylpyrrolidone", "CN1CCCC1=O"), ("1_3_dioxolane", "C1OCCO1"),
    ("succinimide", "O=C1CCC(=O)N1"), ("hydantoin", "O=C1CNC(=O)N1"), ("proline", "OC(=O)C1CCCN1"),
    ("n_methylmorpholine", "CN1CCOCC1"), ("quinuclidine", "C1CN2CCC1CC2"),
    # small molecules and bifunctional ones
    ("water", "O"), ("ammonia", "N"), ("hydrogen_cyanide", "C#N"), ("formaldehyde", "C=O"), ("methanol", "CO"),
    ("formic_acid", "OC=O"), ("formamide", "NC=O"), ("acetaldehyde", "CC=O"), ("acetone", "CC(C)=O"),
    ("acetic_acid", "CC(=O)O"), ("acetamide", "CC(N)=O"), ("acetonitrile", "CC#N"), ("methylamine", "CN"),
    ("dimethylamine", "CNC"), ("trimethylamine", "CN(C)C"), ("dimethyl_ether", "COC"), ("methyl_formate", "COC=O"),
    ("methyl_acetate", "COC(C)=O"), ("ethyl_acetate", "CCOC(C)=O"), ("vinyl_acetate", "C=COC(C)=O"),
    ("n_n_dimethylformamide", "CN(C)C=O"), ("n_n_dimethylacetamide", "CN(C)C(C)=O"), ("urea", "NC(N)=O"),
    ("n_methylurea", "CNC(N)=O"), ("carbamic_acid_methyl_ester", "COC(N)=O"), ("dimethyl_carbonate", "COC(=O)OC"),
    ("ethylene_glycol", "OCCO"), ("glycerol", "OCC(O)CO"), ("2_methoxyethanol", "COCCO"),
    ("ethanolamine", "NCCO"), ("ethylenediamine", "NCCN"), ("glycolic_acid", "OCC(=O)O"), ("lactic_acid", "CC(O)C(=O)O"),
    ("pyruvic_acid", "CC(=O)C(=O)O"), ("glyoxal", "O=CC=O"), ("methylglyoxal", "CC(=O)C=O"),
    ("2_3_butanedione", "CC(=O)C(C)=O"), ("acetylacetone", "CC(=O)CC(C)=O"), ("malonic_acid", "OC(=O)CC(=O)O"),
    ("succinic_acid", "OC(=O)CCC(=O)O"), ("oxalic_acid", "OC(=O)C(=O)O"), ("malonaldehyde", "O=CC=CO"),
    ("acrolein", "C=CC=O"), ("acrylic_acid", "C=CC(=O)O"), ("acrylonitrile", "C=CC#N"), ("acrylamide", "C=CC(N)=O"),
    ("methyl_acrylate", "C=CC(=O)OC"), ("methyl_methacrylate", "C=C(C)C(=O)OC"), ("crotonaldehyde", "CC=CC=O"),
    ("propargyl_alcohol", "C#CCO"), ("allyl_alcohol", "C=CCO"), ("allylamine", "C=CCN"),
    ("malononitrile", "N#CCC#N"), ("cyanoacetic_acid", "N#CCC(=O)O"), ("aminoacetonitrile", "NCC#N"),
    ("glycolonitrile", "N#CCO"), ("lactonitrile", "CC(O)C#N"), ("alanine", "CC(N)C(=O)O"), ("serine", "NC(CO)C(=O)O"),
    ("beta_alanine", "NCCC(=O)O"), ("valine", "CC(C)C(N)C(=O)O"), ("threonine", "CC(O)C(N)C(=O)O"),
    ("asparagine", "NC(=O)CC(N)C(=O)O"), ("aspartic_acid", "NC(CC(=O)O)C(=O)O"), ("glycinamide", "NCC(N)=O"),
    ("n_acetylglycine", "CC(=O)NCC(=O)O"), ("alanine_dipeptide_fragment", "CC(=O)NC(C)C(=O)NC"),
    ("methyl_carbamate_n_methyl", "CNC(=O)OC"), ("hydroxyacetone", "CC(=O)CO"), ("3_hydroxybutanone", "CC(O)C(C)=O"),
    ("diacetone_alcohol", "CC(=O)CC(C)(C)O"), ("methoxyacetic_acid", "COCC(=O)O"), ("dimethoxymethane", "COCOC"),
    ("1_2_dimethoxyethane", "COCCOC"), ("diglycolic_ether_alcohol", "OCCOCCO"), ("levulinic_acid", "CC(=O)CCC(=O)O"),
    ("nitromethane", "C[N+](=O)[O-]"), ("nitroethane", "CC[N+](=O)[O-]"), ("acetaldoxime", "CC=NO"),
    ("acetone_oxime", "CC(C)=NO"), ("hydroxylamine_n_methyl", "CNO"), ("methylhydrazine", "CNN"),
    ("acetohydrazide", "CC(=O)NN"), ("n_methylformamide", "CNC=O"), ("tert_butyl_methyl_ether", "COC(C)(C)C"),
    ("ethyl_formate", "CCOC=O"), ("propylene_carbonate", "CC1COC(=O)O1"), ("ethylene_carbonate", "O=C1OCCO1"),
    ("cyclopentanone", "O=C1CCCC1"), ("cyclobutanone", "O=C1CCC1"), ("cyclopentanol", "OC1CCCC1"),
    ("cyclohexylamine", "NC1CCCCC1"), ("2_cyclohexen_1_one", "O=C1CCCC=C1"), ("1_4_benzoquinone", "O=C1C=CC(=O)C=C1"),
    ("imidazolidinone", "O=C1NCCN1"), ("tropolone", "O=c1cccccc1O"),
]

# R is written so that X, appended to the SMILES, bonds to R's last atom (its attachment point)
R_GROUPS = [("methyl", "C"), ("ethyl", "CC"), ("propyl", "CCC"), ("isopropyl", "CC(C)"), ("butyl", "CCCC"),
            ("isobutyl", "CC(C)C"), ("sec_butyl", "CCC(C)"), ("tert_butyl", "CC(C)(C)"), ("pentyl", "CCCCC"),
            ("neopentyl", "CC(C)(C)C"), ("cyclopropyl", "C1CC1"), ("cyclobutyl", "C1CCC1"),
            ("cyclopentyl", "C1CCCC1"), ("cyclohexyl", "C1CCCCC1"), ("vinyl", "C=C"), ("allyl", "C=CC"),
            ("propenyl", "CC=C"), ("propargyl", "C#CC"), ("propynyl", "CC#C"), ("phenyl", "c1ccccc1"),
            ("benzyl", "c1ccccc1C"), ("o_tolyl", "Cc1ccccc1")]
X_GROUPS = [("ol", "O"), ("methyl_ether", "OC"), ("al", "C=O"), ("methyl_ketone", "C(C)=O"), ("acid", "C(=O)O"),
            ("methyl_ester", "C(=O)OC"), ("acetate", "OC(C)=O"), ("amine", "N"), ("methylamine", "NC"),
            ("dimethylamine", "N(C)C"), ("amide", "C(N)=O"), ("acetamide", "NC(C)=O"), ("n_methylamide", "C(=O)NC"),
            ("nitrile", "C#N")]
NOT_JOINED = {(r, x) for r in ("vinyl", "propenyl") for x in ("ol", "amine", "methylamine")}  # enols, enamines

GROUPS = [  # (name, SMARTS): a molecule gets every group it matches
    ("alcohol", "[CX4][OX2H]"), ("phenol", "c[OX2H]"), ("ether", "[OX2]([#6;!$(C=[O,N])])[#6;!$(C=[O,N])]"),
    ("aldehyde", "[CX3H1,CX3H2](=O)"), ("ketone", "[#6][CX3](=O)[#6]"), ("acid", "[CX3](=O)[OX2H1]"),
    ("ester", "[#6,#1][CX3](=O)[OX2][#6]"), ("amine", "[NX3;!$(N[#6,#7]=[O,N]);!$(N-[N,O]);!$(N-a);!a]"),
    ("aniline", "[NX3;H2,H1;!$(NC=O)]-a"), ("amide", "[NX3][CX3](=O)"), ("nitrile", "[CX2]#[NX1]"),
    ("nitro", "[N+](=O)[O-]"), ("imine_oxime", "[CX3]=[NX2]"), ("hydrazine_hydroxylamine", "[NX3]-[NX3,OX2]"),
    ("alkene", "[CX3]=[CX3]"), ("alkyne", "[CX2]#[CX2]"), ("aromatic", "a"), ("heterocycle", "[!#6;R]"),
]


def canonical(smiles: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"bad SMILES {smiles!r}")
    return Chem.MolToSmiles(mol)


def groups(smiles: str):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    found = [name for name, smarts in GROUPS if mol.HasSubstructMatch(Chem.MolFromSmarts(smarts))]
    elements = {a.GetSymbol() for a in mol.GetAtoms()}
    if not found:
        found = ["alkane" if elements <= {"C", "H"} else "other"]
    return found


def qm9_molecules():
    RDLogger.DisableLog("rdApp.*")
    for k, atoms in enumerate(ase.io.read(QM9, index=":")):
        if not set(atoms.get_chemical_symbols()) <= ELEMENTS:
            continue
        block = f"{len(atoms)}\n\n" + "".join(f"{s} {x:.6f} {y:.6f} {z:.6f}\n" for s, (x, y, z) in
                                              zip(atoms.get_chemical_symbols(), atoms.positions))
        mol = Chem.MolFromXYZBlock(block)
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=0)
            Chem.SanitizeMol(mol)
        except Exception:  # bond orders not perceived: left out
            continue
        yield f"qm9_{k:03d}", Chem.MolToSmiles(Chem.RemoveHs(mol))


def main():
    rows, seen = [], {}
    heldout = {canonical(s) for _, s in HELDOUT}
    sources = [("heldout", HELDOUT), ("curated", CURATED),
               ("enumerated", [(f"{r}_{x}", rs + xs) for r, rs in R_GROUPS for x, xs in X_GROUPS
                               if (r, x) not in NOT_JOINED]),
               ("qm9", list(qm9_molecules()))]
    for source, molecules in sources:
        for name, smiles in molecules:
            key = canonical(smiles)
            if key in seen:
                continue
            mol = Chem.MolFromSmiles(key)
            heavy = mol.GetNumHeavyAtoms()
            split = "heldout" if key in heldout else "train"
            if split == "train" and heavy > MAX_HEAVY:
                continue
            assert {a.GetSymbol() for a in mol.GetAtoms()} <= ELEMENTS, name
            seen[key] = name
            formula = rdMolDescriptors.CalcMolFormula(mol)
            rows.append(dict(name=name, smiles=key, groups=";".join(groups(key)), heavy_atoms=heavy,
                             formula=formula, split=split, source=source))
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names)), "duplicate names"
    with open(HERE / "molecules.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    train = [r for r in rows if r["split"] == "train"]
    print(f"molecules.csv: {len(rows)} molecules, {len(train)} train, {len(rows) - len(train)} held out")
    for source in ("curated", "enumerated", "qm9"):
        print(f"  {source}: {sum(r['source'] == source for r in train)}")
    count = {}
    for r in train:
        for g in r["groups"].split(";"):
            count[g] = count.get(g, 0) + 1
    print("  groups (train):", ", ".join(f"{g} {n}" for g, n in sorted(count.items(), key=lambda t: -t[1])))


if __name__ == "__main__":
    main()
