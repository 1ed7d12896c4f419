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

from derain_utils.book import notebook, pictures, plotting, report
from derain_utils.lab import designs, experiments, sweeps
from derain_utils.measure import baselines, outcome, rainmeter, realscores
from derain_utils.nets import training
from derain_utils.stats import inference, power
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
            "SEEDS": SEEDS, "STEPS": STEPS, "BACKGROUND": BACKGROUND, "WORKERS": WORKERS},
    profile=PROF.to_dict(), background=BG, paired_sets={p.name: str(p.root) for p in PAIRED},
    real_sets=[str(r) for r in REAL], models={c.name(): c.key() for c in CONFIGS})
RUN = NB.dir
print(f"networks: {CONFIGS[0].arch} ({PROF.model_size}, {PROF.steps} steps) on {BG!r} backgrounds, N = {N_LO} and "
      f"N = {N_HI}, seeds {TRAIN_SEEDS}: {len(CONFIGS)} models of notebook 01")
print(f"paired sets: {[p.name for p in PAIRED] or 'none found'} ({N_PAIRED or 'all'} pairs each); real photo "
      f"folders: {[r.name for r in REAL] or 'none found'}; run folder: {RUN}")

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
# is closest to is not the training preset. The verdict pools those sets with equal weight; the others and the
# other scale are exploratory.

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
# Per training seed, the primary outcome of the N = smallest network minus that of the N = largest network
# (excess removal: rain removed beyond the fixed-filter frontier built on the same pairs, with the rain mask
# `luma(input - target) > 0.05` of `metrics.estimate_mask`), pooled over the verdict sets; a sign-flip test
# over seeds, one-sided in the paper's direction (positive), 95% interval from resampled seeds. Stalled
# networks (notebook 01's rule, on their synthetic test) are left out.

# %%
SYNTHETIC = not UNSEEN
ALL_SETS = [p.name for p in PAIRED] + ["perspective"]
DECL = inference.Declaration("04_real_rain", "paired", "positive", presets=UNSEEN or ["perspective"],
                             exploratory=[s for s in ALL_SETS if s not in (UNSEEN or ["perspective"])])
display(Markdown(
    f"Declared: **{DECL.outcome}** on **{DECL.preset_label}** at the **{SCALE}** scale, N = {N_LO} minus N = {N_HI}, "
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
OUT_SYN = outcome.outcome_table(DF, baselines.frontier_of(HELD.eval_set), presets=OOD, train_presets=IN_DIST,
                                model_cols=("key", "n_train", "seed")).assign(group=lambda d: d["key"].map(GROUP))
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
fig.savefig(RUN / "fig_perspective.png", dpi=120, bbox_inches="tight")

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
# ## The paired test, the exploratory ones, and the power
#
# The declared test, then the same test on every set alone, on the other scale, and on the perspective rain
# (exploratory, Holm-corrected together). The power: if the paired sets showed notebook 01's effect (measured
# above on these networks), how many pairs would the declared test need to say "reproduced" 80% of the time?
# From the variance components of the verdict sets (`power.variance_components`: model-to-model and
# model-by-pair spread of the per-pair excess removal), simulated by `power.pairs_for_power`.

# %%
def test(sets, scale):
    y = outcome.primary_outcome(ROWS, FRONT, sets, model_cols=("key", "group", "seed")).reset_index()
    y = y[(y["scale"] == scale) & ~y["key"].isin(STALLED)]
    return inference.paired(y, DECL.outcome, "group", "few", "many", seed=SEED) if set(y["group"]) == {
        "few", "many"} else None


RES = test(list(DECL.presets), "native" if SYNTHETIC else SCALE)
EXPLORE = {**({f"{DECL.preset_label} at the {OTHER_SCALE} scale": test(list(DECL.presets), OTHER_SCALE)}
              if not SYNTHETIC else {}),
           **{s if s == "perspective" else f"{s} ({SCALE})": test([s], SCALE) for s in ALL_SETS
              if s not in DECL.presets or len(DECL.presets) > 1}}
HOLM = inference.holm({k: r.p_greater if r is not None else np.nan for k, r in EXPLORE.items()})
display(pd.DataFrame([{"exploratory test": k, "difference": r.effect, "ci95": f"[{r.ci95[0]:+.3f}, {r.ci95[1]:+.3f}]",
                       "p": r.p_greater, "p Holm": HOLM[k]} for k, r in EXPLORE.items() if r is not None],
                     columns=["exploratory test", "difference", "ci95", "p", "p Holm"]).set_index(
    "exploratory test").round(3))
per_pair = ROWS[(ROWS["scale"] == ("native" if SYNTHETIC else SCALE)) & ROWS["set"].isin(DECL.presets)
                & ~ROWS["key"].isin(STALLED)].merge(MT[["key", "scale", "preset", "frontier_removal"]],
                                                    on=["key", "scale", "preset"])
per_pair = per_pair.assign(excess=per_pair["removal"] - per_pair["frontier_removal"],
                           pair=per_pair["set"] + "/" + per_pair["image"])
VC, POWER = None, {"pairs_needed": None, "reason": "no network left in a group after the stall rule"}
if per_pair["group"].nunique() == 2:
    try:
        VC = power.variance_components(per_pair, "excess", model="key", image="pair", group="group")
    except ValueError as err:  # e.g. a single network per group
        POWER["reason"] = f"variance components not estimable: {err}"
E01 = EFFECT_01.effect if EFFECT_01 is not None else np.nan
if VC is not None and np.isfinite(E01) and E01 != 0:  # an effect against the paper is sized by its magnitude
    POWER = power.pairs_for_power(abs(E01), VC["sd_model"], VC["sd_resid"], len(TRAIN_SEEDS), n_sims=400,
                                  n_boot=400, max_pairs=2000, seed=SEED)
    POWER["effect_01"] = E01
elif VC is not None:
    POWER["reason"] = "notebook 01's effect could not be computed on these networks"
N_PAIRS = per_pair["pair"].nunique()
POWER_LINE = (f"**Power.** The verdict used {N_PAIRS} pairs. "
              + (f"Notebook 01's effect on these networks is {E01:+.3f} excess removal"
                 + (" (against the paper's direction; sized here by its magnitude)" if E01 < 0 else "") + ": "
                 if np.isfinite(E01) else "")
              + (f"for 80% power at that size the paired test needs **{POWER['pairs_needed']} pairs**"
                 if POWER.get("pairs_needed") else f"no number of pairs can be given ({POWER['reason']})")
              + (f" (model sd {VC['sd_model']:.3f}, pair residual sd {VC['sd_resid']:.3f}, {len(TRAIN_SEEDS)} seeds)."
                 if VC else "."))
display(Markdown(POWER_LINE))

# %% [markdown]
# ## Removal against background fidelity, and one example
#
# Every network on each set at the primary scale, against that set's fixed-filter frontier; then one pair of
# the first verdict set, the one with the median difference in removal between the two kinds of network, with
# what each network removed, `luma(O − D)`, next to the true rain `O − B` (one contrast stretch).

# %%
sc = "native" if SYNTHETIC else SCALE
fig = plotting.frontier_panels(MT[MT["scale"] == sc], baselines.frontier(BROWS[BROWS["scale"] == sc]), ALL_SETS,
                               hue="n_train", hue_label="N", suptitle=f"Removal against background PSNR ({sc} scale)")
fig.savefig(RUN / "fig_frontier.png", dpi=120, bbox_inches="tight")
EX_SET = DECL.presets[0]
per_img = ROWS[(ROWS["scale"] == sc) & (ROWS["set"] == EX_SET)].groupby(["group", "image"])["removal"].mean().unstack(0)
EX_IMG = (per_img["few"] - per_img["many"]).sort_values().index[len(per_img) // 2]
ex = next(p for p in (PERSP if EX_SET == "perspective" else PAIRS[sc]) if p.set == EX_SET and p.name == EX_IMG)
outs = {LABELS[GROUP[c.key()]]: derain(c.key(), [ex.rainy])[0] for c in CONFIGS if c.seed == TRAIN_SEEDS[0]}
fig = pictures.removed_layer_grid([{"name": f"{EX_SET} / {EX_IMG}", "rainy": ex.rainy, "target": ex.target,
                                    "outputs": outs}], list(outs), size=2.6)
fig.savefig(RUN / "fig_paired_example.png", dpi=110, bbox_inches="tight")

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
    fig.savefig(RUN / f"fig_real_{name}.png", dpi=110, bbox_inches="tight")
REAL_ROWS = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
REAL_SUMMARY = (report.group_summary(REAL_ROWS, PROXIES, by=("set", "group"), seed=SEED) if len(REAL_ROWS)
                else pd.DataFrame())
if len(REAL_SUMMARY):
    display(REAL_SUMMARY.assign(network=REAL_SUMMARY["group"].map(LABELS)).set_index(["set", "network"])[
        [c for m in PROXIES for c in (m, f"{m}_lo", f"{m}_hi")]].round(4))
else:
    display(Markdown("**No folder of real photos was found** (set `DATA_DIR` or `DERAIN_DATA`)."))

# %%
kept = MT[(MT["scale"] == sc) & ~MT["key"].isin(STALLED)]
kept = kept if len(kept) else MT[MT["scale"] == sc]  # (a smoke run's networks may all stall: describe them anyway)
means = kept.groupby(["preset", "group"])[["removal", "bg_psnr", "excess_removal"]].mean()
VSETS = list(DECL.presets)
vm = means.loc[VSETS].groupby(level="group").mean()
SUMMARY = (f"On {DECL.preset_label}{' (synthetic perspective rain: no paired set out of the training distribution)' if SYNTHETIC else ''} "
           f"at the {sc} scale, the N = {N_LO} networks removed {vm.loc['few', 'removal']:.2f} of the rain at "
           f"{vm.loc['few', 'bg_psnr']:.1f} dB background PSNR (excess over the filters {vm.loc['few', 'excess_removal']:+.3f}), "
           f"the N = {N_HI} networks {vm.loc['many', 'removal']:.2f} at {vm.loc['many', 'bg_psnr']:.1f} dB "
           f"({vm.loc['many', 'excess_removal']:+.3f})"
           + (f"; per seed the difference is {RES.effect:+.3f} [{RES.ci95[0]:+.3f}, {RES.ci95[1]:+.3f}], "
              f"{'a weak effect, ' if abs(RES.effect) < 0.05 else ''}one-sided p = {RES.p_greater:.2g}."
              if RES is not None else "."))
RESULTS = pd.concat([ROWS.assign(kind=np.where(ROWS["set"] == "perspective", "synthetic", "paired")),
                     BROWS[BROWS["baseline"].isin([b.name for b in baselines.TABLE_BASELINES])].assign(
                         kind="fixed filter"), REAL_ROWS], ignore_index=True)
FACTS = dict(
    effect_of=f"mean over seeds of the excess removal of the N = {N_LO} minus the N = {N_HI} network on "
              f"{DECL.preset_label} ({sc} scale); sign-flip test over seeds",
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
    arch=CONFIGS[0].arch, background=BG)

# %% [markdown]
# ## Verdict
#
# The declared test decides (reproduced / contradicted / inconclusive); the power says how many pairs it needs.

# %%
RECORD = inference.decide(RES, DECL, profile=PROFILE)
display(Markdown(f"**{RECORD.headline}**\n\n{SUMMARY}\n\n{POWER_LINE}"))
_ = notebook.finish(NB, RESULTS, ["set", "kind", "scale", "group", "seed", "key", "image", "removal", "bg_psnr",
                                  "psnr_y", "baseline"], record=RECORD, summary=SUMMARY,
                    tables={"outcomes.csv": MT, "rain.csv": RAIN_TABLE}, **FACTS)
