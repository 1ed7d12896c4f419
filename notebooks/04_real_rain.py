# %% [markdown]
# # 04 · Real rain
#
# **Finding.** Networks trained on fewer background images remove more of a benchmark's unseen rain than networks trained on many.
#
# The paper's practical claim is about rain that no synthetic training range covers: a network that learned
# what a clean image looks like (few backgrounds) should remove rain it never saw, a network that learned to
# recognise its training rain (many backgrounds) should leave it in place. Here notebook 01's ResNets (trained
# at the smallest and the largest N, every seed; read from the model cache) meet:
#
# * **paired sets** with ground truth (Rain100L, Rain100H and two real SPA-Data pairs in the development data;
#   any folder of `input/`-`target/` pairs works). Their rain is measured first, and only the sets whose rain
#   lies outside the training distribution carry the verdict (a rule declared below, computed, not picked);
# * **real rainy photographs** without ground truth: what each network removed, with proxies that need no
#   ground truth (exploratory);
# * **perspective rain** (synthetic): streaks sized by depth, one wind per image, a veiling haze, on held-out
#   training-source images. It is *not* real rain. Without any paired set out of the training distribution
#   (a fresh clone has none) the verdict comes from it, and says so: a different, synthetic test.

# %%
import time

T0 = time.perf_counter()

import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from derain_utils.book import layout, notebook, pictures, plotting, report, zoo
from derain_utils.lab import designs, experiments, sweeps
from derain_utils.measure import baselines, outcome, rainmeter, realscores
from derain_utils.nets import published, training
from derain_utils.stats import inference, power, questions, sensitivity
from derain_utils.synth import backgrounds, realsets

plotting.use_style()

# %% tags=["parameters"]
PROFILE: str = "quick"  # smoke (seconds, plumbing only), quick (minutes on a CPU) or paper (one GPU)
SEED: int = 0  # seed of the permutation tests, bootstrap intervals and power simulations
DATA_DIR: str = ""  # folder of real image sets (bg_natural/, rain100L_dev/, real_rain_*/); empty: $DERAIN_DATA
RUN_DIR: str = ""  # output folder; empty: a fresh one under runs/<profile>/04_real_rain/
INTERACTIVE: bool = False  # show a photo browser widget (needs a Jupyter front end)
PAIRED_DIRS: list = ["rain100L_dev", "rain100H_dev", "real_rain_paired_dev"]  # paired sets (input/, target/): paths or set names
PAIRED_MAX: int = 0  # pairs used per paired set, in name order; 0: the profile's (smoke 2, quick and paper all)
SCALE: str = "matched"  # primary scale of the paired verdict: matched (streak width, rainmeter.match_scale) or native
REAL_DIRS: list = ["real_rain_misc", "real_rain_nturain"]  # folders of real rainy photos without ground truth
REAL_PER_DIR: int = 0  # photos used per real folder, spread over its file names; 0: the profile's (2, 4, all)
REAL_LONG_SIDE: int = 0  # downscale real photos to this long side in px; 0: the profile's (96, 320, none)
ARCH: str = ""  # which of notebook 01's architectures to compare; empty: its primary one (the profile's first)
N_LIST: list = []  # as in notebook 01: training-set sizes, the smallest and largest are used; empty: the profile's
SEEDS: list = []  # as in notebook 01: training seeds; empty: the profile's
STEPS: int = 0  # as in notebook 01: optimiser steps per model; 0: the profile's
BACKGROUND: str = "auto"  # as in notebook 01: training backgrounds, auto (natural if found, else deadleaves)
WORKERS: int = 0  # models trained in parallel processes (when notebook 01 has not trained them); 0: the profile's
PUBLISHED_NETS: list = ["prenet:rain100L", "prenet:rain100H", "prenet:rain1400"]  # a name or module:callable@weights

# %%
FINDING = ("Networks trained on fewer background images remove more of a benchmark's unseen rain than networks "
           "trained on many.")
PROF = notebook.profile(PROFILE, n_list=N_LIST, seeds=SEEDS, steps=STEPS, workers=WORKERS)
DATA = DATA_DIR or None
BG = notebook.training_background(BACKGROUND, DATA)  # the rule of notebook 01, so that its cached models are found
TRAIN_RAIN, PRESETS, IN_DIST, OOD = notebook.rain_roles(PROF)
SIZES, TRAIN_SEEDS = list(PROF.n_list), list(PROF.seeds)
if len(SIZES) < 2:
    raise ValueError(f"N_LIST needs at least two training-set sizes, got {SIZES}")
if SCALE not in ("matched", "native"):
    raise ValueError(f"SCALE must be 'matched' or 'native', got {SCALE!r}")
N_LO, N_HI, OTHER_SCALE = SIZES[0], SIZES[-1], "native" if SCALE == "matched" else "matched"
CONFIGS = designs.real_rain(PROF, BG, arch=ARCH or None)
GROUP = {c.key(): "few" if c.n_train == N_LO else "many" for c in CONFIGS}
LABELS = {"few": f"N = {N_LO}", "many": f"N = {N_HI}"}
N_PAIRED = PAIRED_MAX or {"smoke": 2}.get(PROF.name) or None  # None: every pair
N_REAL, LONG_SIDE = (REAL_PER_DIR or {"smoke": 2, "quick": 4}.get(PROF.name) or None,
                     REAL_LONG_SIDE or {"smoke": 96, "quick": 320}.get(PROF.name) or None)
PERSPECTIVE_SIZE = 128  # px, side of the held-out images that get perspective rain
PAIRED = realsets.paired_sets(PAIRED_DIRS, DATA, missing="skip")  # a set name absent from the data folder: skipped
REAL = []
for name in REAL_DIRS:
    try:
        REAL.append(realsets.resolve_folder(name, DATA))
    except FileNotFoundError as err:
        print(f"real photo folder {name!r} skipped: {err}")
NB = notebook.start(
    "04_real_rain", FINDING, PROFILE, RUN_DIR, t0=T0,
    params={"PROFILE": PROFILE, "SEED": SEED, "DATA_DIR": DATA_DIR, "RUN_DIR": RUN_DIR, "INTERACTIVE": INTERACTIVE,
            "PAIRED_DIRS": PAIRED_DIRS, "PAIRED_MAX": PAIRED_MAX, "SCALE": SCALE, "REAL_DIRS": REAL_DIRS,
            "REAL_PER_DIR": REAL_PER_DIR, "REAL_LONG_SIDE": REAL_LONG_SIDE, "ARCH": ARCH, "N_LIST": N_LIST,
            "SEEDS": SEEDS, "STEPS": STEPS, "BACKGROUND": BACKGROUND, "WORKERS": WORKERS,
            "PUBLISHED_NETS": PUBLISHED_NETS},
    profile=PROF.to_dict(), background=BG, paired_sets={p.name: str(p.root) for p in PAIRED},
    real_sets=[str(r) for r in REAL], models={c.name(): c.key() for c in CONFIGS})
RUN = NB.dir
print(f"networks: {CONFIGS[0].arch} ({PROF.model_size}, {PROF.steps} steps) on {BG!r} backgrounds, N = {N_LO} and "
      f"N = {N_HI}, seeds {TRAIN_SEEDS}: {len(CONFIGS)} models of notebook 01")
print(f"paired sets: {[p.name for p in PAIRED] or 'none found'} ({N_PAIRED or 'all'} pairs each); real photo "
      f"folders: {[r.name for r in REAL] or 'none found'}; run folder: {NB.shown_dir}")

# %% [markdown]
# ## The rain of the paired sets, against the training and test presets
#
# A paired set can show the finding only if its rain differs from the training rain. `rainmeter.measure_rain`
# measures it from `|input - target|` (streak length, width, angle from vertical, peak, streaks per pixel,
# coverage; `merged` near 1 means the rain is one connected sheet), and the presets are measured the same way
# on synthetic pairs. A field is *outside* when fewer than half of a set's values fall in the central 90% of
# the training rain's. The networks meet rain in pixels, so the sets are also resampled by the factor that
# brings their median streak width to the training rain's (`rainmeter.match_scale`, never upsampling).
#
# **Rule, declared before any network is run** (`rainmeter.unseen_sets`): a paired set carries the verdict when,
# at the primary scale (`SCALE`), at least one field is outside the training rain **and** the preset its rain
# is closest to is not the training preset. The verdict pools the pairs of those sets, each pair with equal
# weight (a set of 2 pairs weighs a quarter of a set of 8); the others and the other scale are exploratory.

# %%
PAIRS = {"native": realsets.load_pairs(PAIRED, max_pairs=N_PAIRED) if PAIRED else []}
SCALES = rainmeter.match_scale(PAIRED, TRAIN_RAIN, max_pairs=N_PAIRED) if PAIRED else pd.DataFrame(columns=["set"])
FACTOR = dict(zip(SCALES["set"], SCALES.get("factor", [])))
PAIRS["matched"] = [p if FACTOR[p.set] == 1 else realsets.Pair(p.set, p.name, *realsets.rescale_pair(
    p.rainy, p.target, FACTOR[p.set])) for p in PAIRS["native"]]
PLACED = {sc: rainmeter.rain_placement(*rainmeter.measure_rain(prs), TRAIN_RAIN) for sc, prs in PAIRS.items() if prs}
UNSEEN = rainmeter.unseen_sets(PLACED[SCALE], TRAIN_RAIN) if PAIRED else []
if PAIRED:
    RAIN_TABLE = PLACED[SCALE].assign(
        factor=lambda d: d["set"].map(FACTOR), in_verdict=lambda d: d["set"].isin(UNSEEN),
        **{f"ood_fields_{OTHER_SCALE}": lambda d: d["set"].map(PLACED[OTHER_SCALE].set_index("set")["ood_fields"])})
    display(RAIN_TABLE.set_index(["kind", "set"]).round(3))
    display(Markdown(f"Out of the training distribution at the {SCALE} scale: **{', '.join(UNSEEN) or 'none'}**."))
else:
    RAIN_TABLE = pd.DataFrame()
    display(Markdown("**No paired set was found** (set `DATA_DIR` or `DERAIN_DATA`, or pass `PAIRED_DIRS`)."))

# %% [markdown]
# ## What is tested
#
# Per training seed, the outcome of the N = smallest network minus that of the N = largest network, pooled
# over the pairs of the verdict sets (each pair with equal weight); a sign-flip test over seeds, one-sided in
# the paper's direction (positive), 95% interval from resampled seeds. Two questions, each with a verdict:
#
# * **(a) The paper's claim, as the paper measured it** (`verdict`): **raw removal** of the rain (with the rain
#   mask `luma(input - target) > 0.05` of `metrics.estimate_mask`). Whole-image **PSNR-Y**, the number of the
#   deraining tables, is tested beside it by the same rule.
# * **(b) Beyond fidelity** (`verdict_beyond_fidelity`): **excess removal**, beyond the fixed-filter frontier
#   built on the same pairs.
#
# Each verdict set also gets its own test of both (Holm across the sets). **Stall rule** (notebook 01's): a
# network that removes less than 0.25 of its training rain from its own training tiles is left out.

# %%
SYNTHETIC = not UNSEEN
ALL_SETS = [p.name for p in PAIRED] + ["perspective"]
DECLS = questions.declare_questions("04_real_rain", "paired", "positive", UNSEEN or ["perspective"],
                                    exploratory=[s for s in ALL_SETS if s not in (UNSEEN or ["perspective"])])
DECL = DECLS["beyond_fidelity"]
display(Markdown(
    f"Declared: **removal** (the paper's question) and **{DECL.outcome}** (beyond fidelity) on the pairs of "
    f"**{DECL.preset_label}** at the **{SCALE}** scale, N = {N_LO} minus N = {N_HI}, "
    f"`{DECL.design}` test, direction {DECL.direction}. "
    + ("This is a **synthetic** test (perspective rain on held-out images), not a test on real or benchmark "
       "rain: no paired set out of the training distribution was found." if SYNTHETIC else
       f"Exploratory: {', '.join(DECL.exploratory)}, and the {OTHER_SCALE} scale.")))

# %% [markdown]
# ## The networks, and notebook 01's effect on them
#
# Read from the model cache (trained here only when notebook 01 has not run with this profile). Their own
# synthetic test gives the stall rule and notebook 01's effect size on these very networks (excess removal of
# the unseen presets, smallest minus largest N), which sizes the power analysis below.

# %%
t = time.perf_counter()
DF = sweeps.sweep(CONFIGS, data_dir=DATA, workers=PROF.workers)
HELD = experiments.held_out(CONFIGS[0], data_dir=DATA)
TRAIN_FIT = sweeps.training_fit(CONFIGS, data_dir=DATA)  # the stall rule reads only this
OUT_SYN = outcome.outcome_table(DF, baselines.frontier_of(HELD.eval_set), presets=OOD, train_presets=IN_DIST,
                                model_cols=("key", "n_train", "seed"), fit=TRAIN_FIT).assign(
    group=lambda d: d["key"].map(GROUP))
STALLS = outcome.stall_report(OUT_SYN, "group", name_col="key")
STALLED = set(OUT_SYN.loc[OUT_SYN["stalled"], "key"])
FIT_SYN = OUT_SYN[~OUT_SYN["stalled"]]
EFFECT_01 = (inference.paired(FIT_SYN, "excess_removal", "group", "few", "many", seed=SEED)
             if set(FIT_SYN["group"]) == {"few", "many"} else None)
MODELS = {c.key(): experiments.load(c).load_model() for c in CONFIGS}
print(f"{len(MODELS)} networks ready in {time.perf_counter() - t:.0f} s; stall rate: "
      + ", ".join(f"{LABELS[g]} {r:.2f}" for g, r in zip(STALLS["group"], STALLS["stall_rate"])))
if EFFECT_01 is not None:
    print(f"notebook 01's effect on these networks (synthetic unseen rain): {EFFECT_01.effect:+.3f} "
          f"[{EFFECT_01.ci95[0]:+.3f}, {EFFECT_01.ci95[1]:+.3f}] excess removal, N = {N_LO} minus N = {N_HI}")


def derain(key, images):
    """Network ``key`` on whole images of any sizes (training.predict: eval mode, output clamped to [0, 1])."""
    return [training.predict(MODELS[key], torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)[None])))[0]
            .permute(1, 2, 0).numpy() for im in images]


def score_all(pairs, masks=None):
    """Every network on ``pairs``: one row per (network, pair), scored by realscores.score_pairs."""
    return pd.concat([realscores.score_pairs(pairs, derain(c.key(), [p.rainy for p in pairs]),
                                             masks=masks).assign(key=c.key(), model=c.name(), group=GROUP[c.key()],
                                                               n_train=c.n_train, seed=c.seed)
                      for c in CONFIGS], ignore_index=True)


# %% [markdown]
# ## Perspective rain: synthetic, and unlike the training rain
#
# Held-out images of the training source (never used for training) get rain from
# `perspective.synthesize_perspective`; the true rain mask is known. This is *not* real rain.

# %%
split = backgrounds.draw_split(BG, 0, PROF.n_test, test_size=PERSPECTIVE_SIZE, data_dir=DATA)
SYN = report.synthetic_sets(split.test, names=split.test_ids, presets=[], train_rain=TRAIN_RAIN,
                            seed=PROF.eval_seed)["perspective"]
PERSP = [realsets.Pair("perspective", n, o, b) for n, o, b in zip(SYN.names, SYN.rainy, SYN.background)]
k = min(4, len(PERSP))
fig = pictures.image_grid([list(SYN.background[:k]), list(SYN.rainy[:k]), list(SYN.rain[:k])],
                          row_labels=["background", "perspective rain", "rain layer R"],
                          suptitle=f"Held-out {BG} images ({PERSPECTIVE_SIZE} px) with perspective rain (NOT real rain)")
layout.save(fig, RUN / "fig_perspective.png")

# %% [markdown]
# ## Every network and every fixed filter on the same pairs
#
# Networks are fully convolutional: whole images, no cropping. The fixed filters (identity, Gaussian, median and
# their blends with the input) are scored on the same pairs with the same mask, per set and scale; their upper
# envelope is each set's frontier.

# %%
t = time.perf_counter()
ROWS, BROWS = [], []
for name in ALL_SETS:
    masks = list(SYN.mask) if name == "perspective" else None  # perspective: the true mask; pairs: estimated
    for scale in ("native", "matched"):
        if scale == "matched" and FACTOR.get(name, 1) == 1:  # the same pairs at both scales: reuse the scores
            ROWS.append(ROWS[-1].assign(scale=scale))
            BROWS.append(BROWS[-1].assign(scale=scale))
            continue
        prs = PERSP if name == "perspective" else [p for p in PAIRS[scale] if p.set == name]
        ROWS.append(score_all(prs, masks).assign(scale=scale))
        BROWS.append(baselines.baseline_pair_rows(prs, masks=masks).assign(scale=scale))
ROWS = pd.concat(ROWS, ignore_index=True).assign(preset=lambda d: d["set"])
BROWS = pd.concat(BROWS, ignore_index=True)
FRONT = baselines.frontier(BROWS, by=("scale", "preset"))
MT = outcome.model_table(ROWS, FRONT, model_cols=("key", "group", "n_train", "seed"))
print(f"{len(CONFIGS)} networks and {len(baselines.DEFAULT_BASELINES)} fixed filters on "
      f"{ROWS.groupby('scale')['image'].size().iloc[0] // len(CONFIGS)} images per scale in {time.perf_counter() - t:.0f} s")

# %% [markdown]
# ## The paired tests, per set, the exploratory ones, and the power
#
# The declared tests (both questions, and PSNR-Y beside the paper's), then each verdict set on its own (Holm
# across the sets), then every other set, the other scale and the perspective rain (exploratory, Holm-corrected
# together). The power: if the paired sets showed notebook 01's effect (measured above on these networks), how
# likely is the declared test to say "reproduced", at the seed-to-seed spread measured here
# (`power.paired_power`), and how many pairs would reach 80% (`power.pairs_for_power`, from the variance
# components of the per-pair excess removal; a component clipped at 0 is said to be clipped).

# %%
PRIMARY_SCALE = "native" if SYNTHETIC else SCALE


def pooled(sets, scale, frontier=None):
    """One row per network: removal, background PSNR and excess removal over the pairs of ``sets`` (pair weights)."""
    y = outcome.pooled(ROWS, frontier or FRONT, sets, model_cols=("key", "group", "seed"), weights="images").reset_index()
    return y[y["scale"] == scale].assign(stalled=lambda d: d["key"].isin(STALLED))


def paired_test(table, y):
    t = table[~table["stalled"]]
    return inference.paired(t, y, "group", "few", "many", seed=SEED) if set(t["group"]) == {"few", "many"} else None


def test(sets, scale, y=DECL.outcome):
    return paired_test(pooled(sets, scale), y)


PSNR_Y = (ROWS[(ROWS["scale"] == PRIMARY_SCALE) & ROWS["set"].isin(DECL.presets)]
          .groupby(["key", "group", "seed"])["psnr_y"].mean().reset_index().assign(stalled=lambda d: d["key"].isin(STALLED)))
VERDICT_POOL = pooled(list(DECL.presets), PRIMARY_SCALE)  # one row per network: the declared pool
RES = {q: paired_test(VERDICT_POOL, d.outcome) for q, d in DECLS.items()}
RES_PSNR = paired_test(PSNR_Y, "psnr_y")
PER_SET = pd.DataFrame([{"set": s, "question": q, "outcome": d.outcome, "pairs": int(
    ROWS.loc[(ROWS["set"] == s) & (ROWS["scale"] == PRIMARY_SCALE), "image"].nunique()),
    "difference": r.effect if r else np.nan, "ci_low": r.ci95[0] if r else np.nan,
    "ci_high": r.ci95[1] if r else np.nan, "p": r.p_greater if r else np.nan}
    for s in DECL.presets for q, d in DECLS.items() for r in [test([s], PRIMARY_SCALE, d.outcome)]])
PER_SET["p_holm"] = PER_SET.groupby("question")["p"].transform(lambda p: inference.holm(list(p)))
display(PER_SET.set_index(["set", "question"]).round(3))
EXPLORE = {**({f"{DECL.preset_label} at the {OTHER_SCALE} scale": test(list(DECL.presets), OTHER_SCALE)}
              if not SYNTHETIC else {}),
           **{s if s == "perspective" else f"{s} ({SCALE})": test([s], SCALE) for s in ALL_SETS
              if s not in DECL.presets}}
HOLM = inference.holm({k: r.p_greater if r is not None else np.nan for k, r in EXPLORE.items()}) if EXPLORE else {}
display(pd.DataFrame([{"exploratory test (excess removal)": k, "difference": r.effect,
                       "ci95": f"[{r.ci95[0]:+.3f}, {r.ci95[1]:+.3f}]", "p": r.p_greater, "p Holm": HOLM[k]}
                      for k, r in EXPLORE.items() if r is not None],
                     columns=["exploratory test (excess removal)", "difference", "ci95", "p", "p Holm"]).set_index(
    "exploratory test (excess removal)").round(3))
per_pair = ROWS[(ROWS["scale"] == ("native" if SYNTHETIC else SCALE)) & ROWS["set"].isin(DECL.presets)
                & ~ROWS["key"].isin(STALLED)].merge(MT[["key", "scale", "preset", "frontier_removal"]],
                                                    on=["key", "scale", "preset"])
per_pair = per_pair.assign(excess=per_pair["removal"] - per_pair["frontier_removal"],
                           pair=per_pair["set"] + "/" + per_pair["image"])
VC, POWER = None, {"pairs_needed": None, "reason": "no network left in a group after the stall rule"}
R_B = RES["beyond_fidelity"]
SEED_DIFFS = VERDICT_POOL.query("~stalled").pivot(index="seed", columns="group", values=DECL.outcome).dropna()
SD_DIFF = float((SEED_DIFFS["few"] - SEED_DIFFS["many"]).std(ddof=1)) if {"few", "many"} <= set(SEED_DIFFS) and len(
    SEED_DIFFS) > 1 else np.nan
if per_pair["group"].nunique() == 2:
    try:
        VC = power.variance_components(per_pair, "excess", model="key", image="pair", group="group")
    except ValueError as err:  # e.g. a single network per group
        POWER["reason"] = f"variance components not estimable: {err}"
E01 = EFFECT_01.effect if EFFECT_01 is not None else np.nan
N_SEEDS_USED = int(len(SEED_DIFFS))
POWER_NOW = (power.paired_power(abs(E01), SD_DIFF, N_SEEDS_USED, n_sims=400, n_boot=400, seed=SEED)
             if np.isfinite(E01) and np.isfinite(SD_DIFF) and N_SEEDS_USED > 0 else np.nan)
if VC is not None and np.isfinite(E01) and E01 != 0:  # an effect against the paper is sized by its magnitude
    POWER = power.pairs_for_power(abs(E01), VC["sd_model"], VC["sd_resid"], len(TRAIN_SEEDS), n_sims=400,
                                  n_boot=400, max_pairs=2000, seed=SEED)
    POWER["effect_01"] = E01
elif VC is not None:
    POWER["reason"] = "notebook 01's effect could not be computed on these networks"
POWER |= {"seed_to_seed_sd": SD_DIFF, "n_seeds_used": N_SEEDS_USED, "power_at_measured_sd": POWER_NOW}
N_PAIRS = per_pair["pair"].nunique()
CLIPPED = bool(VC and VC["sd_model_clipped"])
CLIP_NOTE = (", clipped at 0: its mean square is below the residual's, so the model-to-model spread is not measured "
             "and the pair count assumes none" if CLIPPED else "")
POWER_LINE = (f"**Power.** The verdict used {N_PAIRS} pairs and {N_SEEDS_USED} seeds; the per-seed differences in "
              f"excess removal have a seed-to-seed sd of {SD_DIFF:.3f}. "
              + (f"Notebook 01's effect on these networks is {E01:+.3f} excess removal"
                 + (" (against the paper's direction; sized here by its magnitude)" if E01 < 0 else "")
                 + f": at the measured sd the declared test detects it with power {POWER_NOW:.0%}. "
                 if np.isfinite(E01) and np.isfinite(POWER_NOW) else "")
              + (f"For 80% power the paired test needs **{POWER['pairs_needed']} pairs**"
                 if POWER.get("pairs_needed") else f"No number of pairs can be given ({POWER['reason']})")
              + (f" (model sd {VC['sd_model']:.3f}{CLIP_NOTE}, pair residual sd {VC['sd_resid']:.3f})." if VC else "."))
display(Markdown(POWER_LINE))

# %% [markdown]
# ## How the answer moves with the choices
#
# Both declared tests again with each verdict set alone and each left out, and (control question) against the
# Gaussian-only or median-only frontier. Exploratory; the declared rows decide.

# %%
SENS = sensitivity.sensitivity(
    ROWS, FRONT, DECLS, paired_test, profile=PROFILE,
    outcomes=lambda front, sets: pooled(sets, PRIMARY_SCALE, front))
display(SENS.set_index(["question", "variant"]).drop(columns=["outcome"]).round(3))

# %% [markdown]
# ## Removal against background fidelity, and one example
#
# Every network on each set at the primary scale, against that set's fixed-filter frontier; then one pair of
# the first verdict set, the one with the median difference in removal between the two kinds of network, with
# what each network removed, `luma(O − D)`, next to the true rain `O − B` (one contrast stretch).

# %%
sc = PRIMARY_SCALE
fig = plotting.frontier_panels(MT[MT["scale"] == sc], baselines.frontier(BROWS[BROWS["scale"] == sc]), ALL_SETS,
                               hue="n_train", hue_label="N", suptitle=f"Removal against background PSNR ({sc} scale)")
layout.save(fig, RUN / "fig_frontier.png")

# %%
EX_SET = DECL.presets[0]
per_img = ROWS[(ROWS["scale"] == sc) & (ROWS["set"] == EX_SET)].groupby(["group", "image"])["removal"].mean().unstack(0)
EX_IMG = (per_img["few"] - per_img["many"]).sort_values().index[len(per_img) // 2]
ex = next(p for p in (PERSP if EX_SET == "perspective" else PAIRS[sc]) if p.set == EX_SET and p.name == EX_IMG)
outs = {LABELS[GROUP[c.key()]]: derain(c.key(), [ex.rainy])[0] for c in CONFIGS if c.seed == TRAIN_SEEDS[0]}
fig = pictures.removed_layer_grid([{"name": f"{EX_SET} / {EX_IMG}", "rainy": ex.rainy, "target": ex.target,
                                    "outputs": outs}], list(outs), size=2.6)
layout.save(fig, RUN / "fig_paired_example.png", dpi=110)

# %% [markdown]
# ## Real photographs: no ground truth (exploratory)
#
# Each folder's photos (downscaled to `LONG_SIDE` px), the first seed's outputs and what each removed; under the
# photo, in white, the pixels `realscores.rain_free_mask` judges free of rain. Proxies per photo and network
# (`realscores.no_gt_proxies`; means over seeds per photo, 95% intervals over photos): *removed RMS* (how much
# changed), *global coherence* (is the removed layer strokes of one orientation, as rain in one photo is) and
# *change in rain-free pixels*. None is a quality score: doing nothing scores a perfect 0 change; erasing a
# railing looks coherent. They compare networks on the same photos, with the pictures.

# %%
PHOTOS = {r.name: report.load_real(r, limit=N_REAL, long_side=LONG_SIDE) for r in REAL}
PROXIES = ["removed_rms", "global_coherence", "rainfree_change"]
frames = []
for name, photos in PHOTOS.items():
    free = [realscores.rain_free_mask(p[1]) for p in photos]
    outs = {c.key(): derain(c.key(), [p[1] for p in photos]) for c in CONFIGS}
    frames += [report.real_rows(photos, outs[c.key()], rainfree=free).assign(
        set=name, kind="real", key=c.key(), model=c.name(), group=GROUP[c.key()], seed=c.seed) for c in CONFIGS]
    shown = sorted({0, len(photos) // 2})
    first = [c for c in CONFIGS if c.seed == TRAIN_SEEDS[0]]
    fig = pictures.removed_layer_grid(
        [{"name": photos[j][0], "rainy": photos[j][1], "rainfree": free[j],
          "outputs": {LABELS[GROUP[c.key()]]: outs[c.key()][j] for c in first}} for j in shown],
        [LABELS[GROUP[c.key()]] for c in first], size=2.3, suptitle=f"Real rainy photos ({name})")
    layout.save(fig, RUN / f"fig_real_{name}.png", dpi=110)
REAL_ROWS = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
REAL_SUMMARY = (report.group_summary(REAL_ROWS, PROXIES, by=("set", "group"), seed=SEED) if len(REAL_ROWS)
                else pd.DataFrame())
if len(REAL_SUMMARY):
    display(REAL_SUMMARY.assign(network=REAL_SUMMARY["group"].map(LABELS)).set_index(["set", "network"])[
        [c for m in PROXIES for c in (m, f"{m}_lo", f"{m}_hi")]].round(4))
else:
    display(Markdown("**No folder of real photos was found** (set `DATA_DIR` or `DERAIN_DATA`)."))

# %% [markdown]
# ## Published networks under the same lens (exploratory)
#
# Every network above was trained here. PReNet (Ren et al., CVPR 2019) was trained by its authors on three sets
# of very different size: Rain100L (200 pairs), Rain100H (1,800) and Rain1400 (12,600 pairs on 900
# backgrounds). Its published weights (`docs/published.md`: they reproduce the published table) meet the same test
# inputs as the networks above: the held-out synthetic presets (none is a published network's training rain),
# the paired sets and the perspective rain at the native scale, each against the same fixed-filter frontier, and
# the real photos. **Declared exploratory:** one network per training set and no seeds, and the training sets
# differ in their rain as well as in their size, so no difference below can be put down to the number of
# backgrounds. A network is one line of `PUBLISHED_NETS` (a name, or `module:callable@weights`).

# %%
t = time.perf_counter()
NETS, NET_RECORDS = {}, {}
for spec in PUBLISHED_NETS[:{"smoke": 1}.get(PROF.name)]:  # smoke: the first network only (plumbing)
    try:
        NETS[spec], NET_RECORDS[spec] = zoo.load_network(spec, DATA)
    except FileNotFoundError as err:
        print(f"published network {spec!r} skipped: {err}")
NATIVE_PAIRS = PAIRS["native"]
LENS, LENS_TABLE, TRAINING_RAIN = pd.DataFrame(), pd.DataFrame(columns=zoo.LENS_COLUMNS), pd.DataFrame()
if NETS:
    LENS = pd.concat([zoo.lens_rows(m, spec, eval_set=HELD.eval_set, names=HELD.names, pairs=NATIVE_PAIRS,
                                    perspective=PERSP, perspective_masks=list(SYN.mask)) for spec, m in NETS.items()],
                     ignore_index=True)
    LENS_FRONT = zoo.lens_frontier(HELD.eval_set, BROWS[BROWS["scale"] == "native"])
    LENS_TABLE = zoo.lens_table(LENS, LENS_FRONT)
    TRAINING_RAIN = zoo.training_rain(list(NETS), PLACED.get("native"))
    display(TRAINING_RAIN.set_index("network").round(3))
    display(Markdown(zoo.lens_markdown(LENS_TABLE)))  # removal (excess over the set's fixed-filter frontier)
    LENS_SETS = [*OOD, *[p.name for p in PAIRED], "perspective"]
    fig = plotting.frontier_panels(LENS_TABLE, LENS_FRONT, [g for g in LENS_SETS if g in set(LENS_TABLE["preset"])],
                                   hue="network", order=list(NETS), ncols=4, suptitle="Published networks: removal "
                                   "against background PSNR, over each set's fixed-filter frontier")
    layout.save(fig, RUN / "fig_published.png")
    PHOTO_OUT = {(spec, name): zoo.derain(m, [p[1] for p in photos]) for spec, m in NETS.items()
                 for name, photos in PHOTOS.items()}
    PUB_REAL = pd.concat([report.real_rows(PHOTOS[name], out, rainfree=[realscores.rain_free_mask(p[1]) for p in
                                                                         PHOTOS[name]]).assign(network=spec, set=name)
                          for (spec, name), out in PHOTO_OUT.items()], ignore_index=True) if PHOTO_OUT else None
    if PUB_REAL is not None:
        display(PUB_REAL.groupby(["set", "network"], sort=False)[PROXIES].mean().round(4))
    print(f"{len(NETS)} published networks scored in {time.perf_counter() - t:.0f} s")
else:
    PUB_REAL = None
    display(Markdown("**No published weights were found** (set `DATA_DIR` or `DERAIN_DATA` to a folder with "
                     "`checkpoints_prenet/`, or fetch them: `python -m derain_utils.synth.data fetch "
                     "checkpoints_prenet`)."))

# %%
def lens_text():
    if LENS_TABLE.empty:
        return "No published network was scored."
    syn = LENS_TABLE[LENS_TABLE["kind"] == "synthetic"].groupby("network", sort=False)[["removal",
                                                                                          "excess_removal"]].mean()
    pair = LENS_TABLE[LENS_TABLE["kind"] != "synthetic"].set_index(["network", "preset"])
    ours = MT[(MT["scale"] == "native") & ~MT["key"].isin(STALLED)].groupby(["preset", "group"])["removal"].mean()
    parts = []
    for spec in NETS:
        net = published.PUBLISHED.get(spec)
        size = f" ({net.train_pairs:,} pairs on {net.train_backgrounds:,} backgrounds)" if net else ""
        got = [(s, pair.loc[(spec, s)]) for s in [p.name for p in PAIRED] + ["perspective"] if (spec, s) in pair.index]
        sets = "; ".join(f"{s} {r['removal']:.2f} (excess {r['excess_removal']:+.2f})" for s, r in got)
        parts.append(f"`{spec}`{size} removes {syn.loc[spec, 'removal']:.2f} of the synthetic presets' rain (none "
                     f"is its training rain) on average (excess over the filters "
                     f"{syn.loc[spec, 'excess_removal']:+.2f}); of the paired sets' rain: {sets}")
    ours_txt = "; ".join(f"{s}: N = {N_LO} {ours.get((s, 'few'), np.nan):.2f}, N = {N_HI} "
                         f"{ours.get((s, 'many'), np.nan):.2f}" for s in [p.name for p in PAIRED] + ["perspective"]
                         if (s, "few") in ours.index)
    return ("**Published networks (exploratory, one network each, no seeds).** " + ". ".join(parts) + ". "
            + (f"For comparison, this notebook's networks at the native scale remove: {ours_txt}. " if ours_txt else "")
            + "The training sets differ in rain as well as in size, so these numbers describe these networks; they "
              "do not isolate the effect of the number of backgrounds.")


LENS_SUMMARY = lens_text()
display(Markdown(LENS_SUMMARY))

# %%
kept = MT[(MT["scale"] == sc) & ~MT["key"].isin(STALLED)]
means = kept.groupby(["preset", "group"])[["removal", "bg_psnr", "excess_removal"]].mean()
VSETS = list(DECL.presets)
POOL = VERDICT_POOL.query("~stalled")
vm = POOL.groupby("group")[["removal", "bg_psnr", "excess_removal"]].mean().reindex(["few", "many"])


def group_text(g, n):
    if not np.isfinite(vm.loc[g, "removal"]):
        return f"no N = {n} network is left after the stall rule"
    return (f"the N = {n} networks removed {vm.loc[g, 'removal']:.2f} of the rain at {vm.loc[g, 'bg_psnr']:.1f} dB "
            f"background PSNR (excess over the filters {vm.loc[g, 'excess_removal']:+.3f})")


def diff_text(r, what):
    if r is None:
        return f"{what}: no paired difference (a group has no network left)"
    return (f"{what} {r.effect:+.3f} [{r.ci95[0]:+.3f}, {r.ci95[1]:+.3f}] ({'a weak effect, ' if abs(r.effect) < 0.05 else ''}"
            f"one-sided p = {r.p_greater:.2g})")


SUMMARY = (f"On the {N_PAIRS} pairs of {DECL.preset_label}"
           f"{' (synthetic perspective rain: no paired set out of the training distribution)' if SYNTHETIC else ''} "
           f"at the {sc} scale, {group_text('few', N_LO)}; {group_text('many', N_HI)}. Per seed, N = {N_LO} minus "
           f"N = {N_HI}: " + "; ".join([diff_text(RES['paper'], 'raw removal'), diff_text(R_B, 'excess removal'),
                                         diff_text(RES_PSNR, 'PSNR-Y [dB]')]) + ".")
RESULTS = pd.concat([ROWS.assign(kind=np.where(ROWS["set"] == "perspective", "synthetic", "paired")),
                     BROWS[BROWS["baseline"].isin([b.name for b in baselines.TABLE_BASELINES])].assign(
                         kind="fixed filter"), REAL_ROWS], ignore_index=True)
FACTS = dict(
    effect_of=f"mean over seeds of the raw removal of the N = {N_LO} minus the N = {N_HI} network on the pairs of "
              f"{DECL.preset_label} ({sc} scale, pair weights); sign-flip test over seeds (beyond_fidelity: the same "
              "on excess removal)",
    per_set=PER_SET.to_dict("records"), psnr_y=None if RES_PSNR is None else RES_PSNR.to_dict(),
    psnr_y_verdict=inference.decide(RES_PSNR, inference.Declaration("04_real_rain", "paired", "positive", DECL.presets,
                                                                    outcome="psnr_y"), profile=PROFILE).verdict,
    sensitivity=SENS.to_dict("records"), stalled_models=sorted(STALLED),
    stall_rule=f"removal of the training rain from the model's own training tiles < {outcome.STALL_MIN_FIT:g}",
    pooling="pairs of the verdict sets, equal weight per pair",
    synthetic_verdict=SYNTHETIC, verdict_sets=VSETS, primary_scale=sc,
    unseen_rule=("rainmeter.unseen_sets: at the primary scale, at least one measured rain field outside the training "
                 "rain's range and a closest preset other than the training preset"),
    rain_table=RAIN_TABLE, scale_factors=FACTOR,
    exploratory={k: {"effect": r.effect, "ci95": r.ci95, "p_value": r.p_greater, "p_holm": HOLM[k]}
                 for k, r in EXPLORE.items() if r is not None},
    effect_01=None if EFFECT_01 is None else {"effect": EFFECT_01.effect, "ci95": EFFECT_01.ci95},
    variance_components=VC, power=POWER, pairs_used=int(N_PAIRS), pairs_for_80_power=POWER.get("pairs_needed"),
    stall_rates=STALLS.to_dict("records"), n_stalled=len(STALLED), groups=LABELS,
    means_by_set={f"{p}/{g}": v for (p, g), v in means.to_dict("index").items()},
    paired_sets=[p.name for p in PAIRED], pairs_per_set={p.name: sum(q.set == p.name for q in PAIRS["native"])
                                                        for p in PAIRED},
    real_sets=list(PHOTOS), real_proxies=REAL_SUMMARY, n_list=SIZES, seeds=TRAIN_SEEDS, steps=PROF.steps,
    arch=CONFIGS[0].arch, background=BG, published_networks=NET_RECORDS, published_summary=LENS_SUMMARY,
    published_training_rain=TRAINING_RAIN)

# %% [markdown]
# ## Verdict
#
# The two declared tests decide (reproduced / contradicted / inconclusive); the power says how likely they were
# to detect notebook 01's effect, and how many pairs they need.

# %%
RECORD = inference.decide(RES["paper"], DECLS["paper"], profile=PROFILE)
BEYOND = inference.decide(RES["beyond_fidelity"], DECLS["beyond_fidelity"], profile=PROFILE)
display(Markdown(f"**{questions.two_questions_headline(RECORD, BEYOND)}**\n\n{SUMMARY}\n\n{POWER_LINE}"))
_ = notebook.finish(NB, RESULTS, ["set", "kind", "scale", "group", "seed", "key", "image", "removal", "bg_psnr",
                                  "psnr_y", "baseline"], record=RECORD, beyond=BEYOND, summary=SUMMARY,
                    tables={"outcomes.csv": MT, "rain.csv": RAIN_TABLE, "per_set.csv": PER_SET,
                            "sensitivity.csv": SENS, "training_fit.csv": TRAIN_FIT, "published.csv": LENS_TABLE,
                            "published_rows.csv": LENS,
                            **({"published_real.csv": PUB_REAL} if PUB_REAL is not None else {})}, **FACTS)
