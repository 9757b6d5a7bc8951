"""`python -m cvcycle export JOB --format mlcolvar|plumed`: a campaign's learned CV for the tools
the field already uses, with the feature names, atom indices and units it expects.

- mlcolvar: `cv.ckpt`, a Lightning checkpoint of an mlcolvar CV (AutoEncoderCV for an
  autoencoder, RegressionCV whose output is logit q for a committor) that
  `<class>.load_from_checkpoint("cv.ckpt")` restores with the campaign's weights. The
  autoencoder's CV normalisation is folded into the encoder's last layer (and undone in the
  decoder's first), so mlcolvar's own forward gives the campaign's CV. It is a torch pickle, as
  mlcolvar's checkpoints are; the campaign's own files stay pickle-free.
- plumed: `model.ptc` (the TorchScript CV, the file PLUMED's PYTORCH_MODEL loads: float
  (1, n_features) -> (1, cv_dim)), `plumed.dat`, which computes the same features with PLUMED
  actions, applies the CV and biases it at the spec's parameters, and for an OPES campaign `STATE`,
  the campaign's bias on that CV as OPES_METAD's restart file (bias.plumed_state), which plumed.dat
  reads (STATE_RFILE, RESTART=YES): PLUMED continues the bias instead of starting afresh.

Both write `features.json` (names, kind, atom indices 0-based and as PLUMED's 1-based serials,
units) and `export.json` (what was exported, from which iteration, and the largest difference
between the exported model and the campaign's CV on that iteration's frames).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import io as cio
from .bias.methods import Opes
from .bias.plumed_state import opes_state
from .campaign import Campaign
from .errors import SpecError
from .systems import thermal_energy

FORMATS = ("mlcolvar", "plumed")
STATE_FILE = "STATE"


def feature_description(spec: dict[str, Any]) -> dict[str, Any]:
    """The features a CV takes, in order, with what defines them."""
    from .features import make_featurizer
    from .systems import MOLECULES

    f = make_featurizer(spec)
    molecule = spec["system"]["potential"] in MOLECULES
    out: dict[str, Any] = {"kind": spec["features"]["kind"], "names": list(f.names),
                           "length_unit": "nm" if molecule else "reduced (the model's own length unit)",
                           "energy_unit": "kJ/mol" if molecule else "reduced (kT = system.temperature)"}
    if spec["features"]["kind"] == "internal":
        out["dihedrals"] = [{"name": n, "atoms": list(a), "plumed_atoms": [i + 1 for i in a]}
                            for n, a in zip(f.dihedral_names, f.dihedral_atoms)]
        out["distances"] = [{"name": n, "atoms": list(a), "plumed_atoms": [i + 1 for i in a]}
                            for n, a in zip(f.distance_names, f.distance_atoms)]
    return out


def _fold_autoencoder(model: Any) -> Any:
    """An mlcolvar AutoEncoderCV computing the campaign's normalised CV: (z - shift) * scale is
    folded into the encoder's last Linear, and its inverse into the decoder's first."""
    from mlcolvar.cvs import AutoEncoderCV

    arch = model.architecture
    act = {"activation": arch["activation"]}
    cv = AutoEncoderCV(encoder_layers=[arch["n_features"], *arch["hidden"], arch["cv_dim"]],
                       options={"encoder": act, "decoder": act})
    sd = {k: v.detach().double() for k, v in model.state_dict().items()}
    shift, scale = sd["cv_shift"], sd["cv_scale"]
    last, first = f"encoder.{len(model.encoder) - 1}", "decoder.0"
    new = {"norm_in.mean": sd["mean"], "norm_in.range": sd["std"]}
    for name, value in sd.items():
        part, _, rest = name.partition(".")
        if part in ("encoder", "decoder"):
            new[f"{part}.nn.{rest}"] = value
    new[f"{last.replace('encoder.', 'encoder.nn.')}.weight"] = sd[f"{last}.weight"] * scale[:, None]
    new[f"{last.replace('encoder.', 'encoder.nn.')}.bias"] = (sd[f"{last}.bias"] - shift) * scale
    new["decoder.nn.0.weight"] = sd[f"{first}.weight"] / scale[None, :]
    new["decoder.nn.0.bias"] = sd[f"{first}.bias"] + sd[f"{first}.weight"] @ shift
    cv.load_state_dict({k: v.float() for k, v in new.items()})
    return cv


def _committor_regression(model: Any) -> Any:
    """An mlcolvar RegressionCV whose output is the committor net's logit q."""
    from mlcolvar.cvs import RegressionCV

    arch = model.architecture
    cv = RegressionCV(layers=[arch["n_features"], *arch["hidden"], 1], options={"nn": {"activation": arch["activation"]}})
    sd = model.state_dict()
    cv.load_state_dict({"norm_in.mean": sd["mean"], "norm_in.range": sd["std"],
                        **{f"nn.nn.{k[4:]}": v for k, v in sd.items() if k.startswith("net.")}})
    return cv


def _require_mlcolvar() -> None:
    import importlib.util

    if importlib.util.find_spec("mlcolvar") is None:
        raise SpecError("export --format mlcolvar needs mlcolvar: pip install mlcolvar (or pip install -e \".[export]\")")


def mlcolvar_cv(model: Any) -> Any:
    """The mlcolvar CV object equivalent to a campaign model (AutoEncoder or CommittorNet)."""
    _require_mlcolvar()
    from .models.autoencoder import AutoEncoder

    return (_fold_autoencoder(model) if isinstance(model, AutoEncoder) else _committor_regression(model)).eval()


def _max_difference(a: torch.nn.Module, b: Any, feats: np.ndarray) -> float:
    with torch.no_grad():
        x = torch.as_tensor(feats, dtype=torch.float32)
        return float((a(x).double() - b(x).double()).abs().max())


def _particle_actions(spec: dict[str, Any], kind: str) -> tuple[list[str], list[str]]:
    """PLUMED actions for the particle features (coordination numbers as COORDINATION of each particle
    with all others, sorted by SORT, their central moments by CUSTOM; pair distances sorted) and the
    names of their outputs in feature order."""
    from .systems import n_particles

    n, f = n_particles(spec), spec["features"]
    pbc = " NOPBC"  # these features describe clusters in open space (spec: bulk systems take steinhardt)

    def sorted_(names: list[str]) -> tuple[list[str], list[str]]:  # SORT's outputs ascend: sorted.1 the smallest
        return [f"sorted: SORT ARG={','.join(names)}"], [f"sorted.{k}" for k in range(1, len(names) + 1)]

    if kind == "sorted_distances":
        pairs = [(i, j) for i in range(1, n + 1) for j in range(i + 1, n + 1)]
        sort, out = sorted_([f"d{i}_{j}" for i, j in pairs])
        return [f"d{i}_{j}: DISTANCE ATOMS={i},{j}{pbc}" for i, j in pairs] + sort, out
    switch = f"SWITCH={{RATIONAL R_0={f['r0']:g} NN={f['nn']:g} MM={f['mm']:g}}}"
    c = [f"c{i}" for i in range(1, n + 1)]
    lines = [f"c{i}: COORDINATION GROUPA={i} GROUPB={','.join(str(j) for j in range(1, n + 1) if j != i)} {switch}{pbc}"
             for i in range(1, n + 1)]
    if kind == "coordination":
        return lines, c
    if kind == "sorted_coordination":
        sort, out = sorted_(c)
        return lines + sort, out
    lines.append(f"cmean: COMBINE ARG={','.join(c)} COEFFICIENTS={','.join([format(1 / n, '.17g')] * n)} PERIODIC=NO")
    for p in f["moments"]:
        terms = "+".join(f"({x}-m)^{p}" for x in c)
        lines.append(f"mu{p}: CUSTOM ARG={','.join(c)},cmean VAR={','.join(c)},m FUNC=({terms})/{n} PERIODIC=NO")
    return lines, [f"mu{p}" for p in f["moments"]]


def plumed_input(spec: dict[str, Any], cv_dim: int, restart: bool = False) -> str:
    """plumed.dat: the features as PLUMED actions, the CV by PYTORCH_MODEL, the spec's bias on it
    (OPES_METAD, restarting from STATE_FILE with `restart`, or METAD)."""
    from .systems import MOLECULES

    kind = spec["features"]["kind"]
    desc = feature_description(spec)
    units = ("UNITS LENGTH=nm ENERGY=kj/mol" if spec["system"]["potential"] in MOLECULES
             else "UNITS NATURAL  # the system's reduced units (kB = 1: TEMP is kT)")
    lines = [f"# cvcycle export: campaign {spec['campaign']['name']} seed {spec['campaign']['seed']}",
             f"# features ({desc['length_unit']}): {', '.join(desc['names'])}", units]
    args: list[str] = []
    if kind == "internal":
        for d in desc["dihedrals"]:
            n = d["name"]
            lines.append(f"{n}: TORSION ATOMS={','.join(map(str, d['plumed_atoms']))}")
            lines.append(f"sin_{n}: CUSTOM ARG={n} FUNC=sin(x) PERIODIC=NO")
            lines.append(f"cos_{n}: CUSTOM ARG={n} FUNC=cos(x) PERIODIC=NO")
            args += [f"sin_{n}", f"cos_{n}"]
        for d in desc["distances"]:
            lines.append(f"{d['name']}: DISTANCE ATOMS={','.join(map(str, d['plumed_atoms']))}")
            args.append(d["name"])
    elif kind == "coordinates":  # 'x' -> particle 1's x, 'y3' -> particle 4's y
        from .features.coordinates import AXES, _parse

        particles = sorted({_parse(n)[0] for n in desc["names"]})
        lines += [f"p{i}: POSITION ATOM={i + 1} NOPBC" for i in particles]
        args += [f"p{i}.{AXES[a]}" for i, a in map(_parse, desc["names"])]
    elif kind in ("coordination", "sorted_coordination", "coordination_moments", "sorted_distances"):
        particle_lines, args = _particle_actions(spec, kind)
        lines += particle_lines
    else:
        raise SpecError(f"export --format plumed: no PLUMED equivalent is written for features.kind = {kind!r} "
                        "(internal coordinates, plain coordinates and the particle features are); use --format mlcolvar")
    lines.append(f"cv: PYTORCH_MODEL FILE=model.ptc ARG={','.join(args)}")
    nodes = ",".join(f"cv.node-{i}" for i in range(cv_dim))
    b = spec["bias"]
    temp = spec["system"]["temperature"]  # kelvin for a molecule; kT itself in natural units (kB = 1)
    common = f"ARG={nodes} PACE={b['pace']} SIGMA={','.join([format(b['sigma'], 'g')] * cv_dim)} TEMP={temp:g}"
    if b["kind"] == "metad":
        label = "metad"
        lines.append(f"metad: METAD {common} HEIGHT={b['height'] * thermal_energy(spec):g} BIASFACTOR={b['bias_factor']:g}")
    else:
        label = "opes"
        lines.append(f"opes: OPES_METAD {common} BARRIER={b['barrier']:g}"
                     + (f" STATE_RFILE={STATE_FILE} RESTART=YES" if restart else ""))
    lines += [f"PRINT ARG={nodes},{label}.bias STRIDE={spec['engine']['report_stride']} FILE=COLVAR", ""]
    return "\n".join(lines)


def continued_bias(c: Campaign, k: int) -> tuple[Opes, int, str] | None:
    """The OPES bias on the CV trained in iteration k as the campaign has it (the end of iteration
    k + 1 where that ran, else primed as iteration k + 1 starts), the number of kernels it stands
    for, and which of the two it is; None for metadynamics or a bias that starts empty."""
    from .routes.simulate import bias_hook, final_bias_hook, prime_bias, primed_kernels

    spec = c.spec
    if spec["bias"]["kind"] != "opes":
        return None
    if (c.iter_dir(k + 1) / "bias.npz").exists():
        hook = final_bias_hook(c, k + 1)
        source = f"the end of iteration {k + 1}, the run biased by this CV"
    elif spec["bias"]["warm_start"]:
        hook = bias_hook(c, k + 1)
        prime_bias(c, k + 1, hook, lambda _: None)
        source = f"primed from iterations <= {k} as iteration {k + 1} would start"
    else:
        return None
    bias = hook.bias
    assert isinstance(bias, Opes)
    kernels = bias.depositions * spec["engine"]["walkers"] + (primed_kernels(spec) if spec["bias"]["warm_start"] else 0)
    return bias, int(kernels), source


def export(c: Campaign, form: str, out: str | Path, k: int | None = None) -> list[Path]:
    """Write the CV of iteration k (default: the newest trained) in `form` into folder `out`."""
    from .results import Results
    from .models.export import cv_module, load_model

    if form not in FORMATS:
        raise SpecError(f"--format {form!r}: expected one of {', '.join(FORMATS)}")
    if form == "mlcolvar":
        _require_mlcolvar()
    else:
        plumed_input(c.spec, 1)  # refuses feature kinds without a PLUMED equivalent before writing anything
    r = Results(c)
    k = r.iteration_with(k, "model.npz")
    model = load_model(c.iter_dir(k) / "model.npz")
    ours = cv_module(model).eval()  # the campaign's CV in eager mode, as routes.fit.cv_of gives it
    feats = r.samples(k)["features"]
    feats = feats.reshape(-1, feats.shape[-1])[:: max(1, feats.shape[0] * feats.shape[1] // 5000)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "features.json", out / "export.json"]
    cio.write_json(out / "features.json", feature_description(c.spec))
    info: dict[str, Any] = {"format": form, "campaign": c.id, "iteration": k, "model": model.__class__.__name__,
                            "frames_compared": len(feats)}
    if form == "mlcolvar":
        cv = mlcolvar_cv(model)
        import lightning

        path = out / "cv.ckpt"
        torch.save({"state_dict": cv.state_dict(), "hyper_parameters": dict(cv.hparams),
                    "pytorch-lightning_version": lightning.__version__}, path)
        cv = type(cv).load_from_checkpoint(str(path)).eval()  # compare what mlcolvar reads back
        info.update(mlcolvar_class=type(cv).__name__, load=f"mlcolvar.cvs.{type(cv).__name__}.load_from_checkpoint('cv.ckpt')",
                    output="logit q (q = sigmoid)" if type(cv).__name__ == "RegressionCV" else "the normalised CV",
                    max_abs_difference=_max_difference(ours, cv, feats))
        written.insert(0, path)
    else:
        cv_dim = int(model.architecture.get("cv_dim", 1))
        shutil.copyfile(c.iter_dir(k) / "cv.pt", out / "model.ptc")
        continued = continued_bias(c, k)
        written[:0] = [out / "model.ptc", out / "plumed.dat"]
        if continued is None:
            info["bias"] = f"{c.spec['bias']['kind']} starts a new bias at the spec's parameters"
        else:
            bias, kernels, source = continued
            nodes = [f"cv.node-{i}" for i in range(cv_dim)]
            (out / STATE_FILE).write_text(opes_state(bias, nodes, kernels))
            written.insert(2, out / STATE_FILE)
            info["bias"] = f"OPES_METAD continues the campaign's bias from {STATE_FILE}: {source}"
        (out / "plumed.dat").write_text(plumed_input(c.spec, cv_dim, restart=continued is not None))
        exported = torch.jit.load(str(out / "model.ptc"))
        info.update(plumed="PLUMED >= 2.9 built with --enable-libtorch (PYTORCH module) and the OPES module",
                    max_abs_difference=_max_difference(ours, exported, feats))
    cio.write_json(out / "export.json", info)
    return written
