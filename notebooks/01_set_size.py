# %% [markdown]
# # 01 · Training-set size
#
# **Finding.** Training a deraining network on more background images makes it remove less of the rain it has not seen.
#
# Gu et al. (NeurIPS 2023) train one network on 4, 16, ... up to thousands of background images, always with
# the same simple synthetic rain, and test it on rain of other shapes. Removal of the *unseen* rain falls as
# the training set grows. Their explanation: with many backgrounds, the cheapest way to lower the training
# loss is to recognise the training rain and subtract it ("slacking off"); with few backgrounds the network
# has to learn what a clean image looks like, and that knowledge helps against any rain.
#
# This notebook repeats the experiment at a small scale: training sets of N background images, one model per
# N and training seed, for more than one architecture (the ResNet carries the verdict; the UNet gets a verdict
# of its own, and so does a SwinIR when `ARCHS` names it), and an ablation in which the ResNet predicts the
# background instead of the rain layer (the UNet and the ablation run in the `long` and `paper` profiles). A
# budget ladder trains the two ends of the sweep again at other training budgets (steps, crop size), to show
# whether the answers depend on the scale of the networks. Every model is tested on held-out images under the
# training rain and three unseen rains. Two questions are asked of the same models: **the paper's claim as the
# paper measured it**, on raw removal of unseen rain; and whether the effect survives a control, on the **excess
# removal** of unseen rain: the rain a model removes beyond what fixed filters (blur, median) remove at the same
# background fidelity (`derain_utils.measure.outcome`).

# %%
import time

T0 = time.perf_counter()

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from derain_utils.book import layout, notebook, pictures, plotting, widgets
from derain_utils.lab import designs, experiments, ladder, profiles, sweeps
from derain_utils.measure import baselines, outcome
from derain_utils.stats import inference, questions, sensitivity
from derain_utils.synth import backgrounds, rain

plotting.use_style()

# %% tags=["parameters"]
PROFILE: str = "quick"  # smoke (seconds, plumbing only), quick (minutes on a CPU) or paper (one GPU)
SEED: int = 0  # seed of the permutation tests and bootstrap intervals (the training seeds are SEEDS)
DATA_DIR: str = ""  # folder of real image sets holding bg_natural/; empty: $DERAIN_DATA, else dead leaves
RUN_DIR: str = ""  # output folder; empty: a fresh one under runs/<profile>/01_set_size/
INTERACTIVE: bool = False  # show the model explorer widget (needs a Jupyter front end)
ARCHS: list = []  # architectures (resnet, unet, swinir), the first carries the verdict; empty: the profile's
N_LIST: list = []  # training-set sizes N, in background tiles, ascending; empty: the profile's
SEEDS: list = []  # training seeds, one model per seed, N and architecture; empty: the profile's
STEPS: int = 0  # optimiser steps per model; 0: the profile's
ABLATION: str = ""  # "yes"/"no": train the first architecture predicting the background too; empty: the profile's
LADDER: list = []  # budget ladder rungs "STEPSxPATCH" (e.g. "2000x64"), ["none"] for none; empty: the profile's
LADDER_EXTRA: str = "auto"  # outcomes CSV of a rung trained elsewhere (the gpu rung); auto: docs/ladder/gpu_rung.csv
BACKGROUND: str = "auto"  # training backgrounds: auto (natural photos if found, else deadleaves) or a source name
GRAY: bool = False  # train and test on luma (1 channel) instead of RGB
WORKERS: int = 0  # models trained in parallel processes; 0: the profile's

# %%
FINDING = ("Training a deraining network on more background images makes it remove less of the rain "
           "it has not seen.")
PROF = notebook.profile(PROFILE, archs=ARCHS, n_list=N_LIST, seeds=SEEDS, steps=STEPS, workers=WORKERS, gray=GRAY,
                        ablation=ABLATION, ladder=LADDER)
DATA = DATA_DIR or None
BG = notebook.training_background(BACKGROUND, DATA)
TRAIN_RAIN, PRESETS, IN_DIST, OOD = notebook.rain_roles(PROF)
SIZES, TRAIN_SEEDS, ARCH_LIST = list(PROF.n_list), list(PROF.seeds), list(PROF.archs)
if len(SIZES) < 2:
    raise ValueError(f"N_LIST needs at least two training-set sizes, got {SIZES}")
N_LO, N_HI, PRIMARY = SIZES[0], SIZES[-1], ARCH_LIST[0]
CONFIGS = designs.set_size(PROF, BG)
ARM = {c.key(): designs.set_size_arm(c) for c in CONFIGS}
ABL = designs.set_size_arm(next((c for c in CONFIGS if c.predict != "rain"), CONFIGS[0])) if PROF.ablation else None
RUNGS = {r.name: r for r in (profiles.rung(PROF, spec) for spec in PROF.ladder)}
LADDER_CONFIGS = designs.budget_ladder(PROF, BG)
NB = notebook.start(
    "01_set_size", FINDING, PROFILE, RUN_DIR, t0=T0,
    params={"PROFILE": PROFILE, "SEED": SEED, "DATA_DIR": DATA_DIR, "RUN_DIR": RUN_DIR, "INTERACTIVE": INTERACTIVE,
            "ARCHS": ARCHS, "N_LIST": N_LIST, "SEEDS": SEEDS, "STEPS": STEPS, "ABLATION": ABLATION,
            "LADDER": LADDER, "LADDER_EXTRA": LADDER_EXTRA, "BACKGROUND": BACKGROUND, "GRAY": GRAY,
            "WORKERS": WORKERS},
    profile=PROF.to_dict(), background=BG, models={c.name(): c.key() for c in CONFIGS},
    ladder_models={r: [c.key() for c in LADDER_CONFIGS if designs.ladder_rung(c, PROF) == r] for r in RUNGS})
RUN = NB.dir
print(f"profile {PROFILE}: {', '.join(ARCH_LIST)} ({PROF.model_size}), {PROF.steps} steps x {PROF.batch_size} crops "
      f"of {PROF.patch} px; N in {SIZES}; training seeds {TRAIN_SEEDS}")
print(f"backgrounds: {BG!r}" + ("" if BACKGROUND != "auto" else " (natural photos from the data folder)" if
                                 BG == "natural" else " (no bg_natural found: dead leaves, unlimited distinct "
                                                      "images with natural-image statistics)"))
print(f"{len(CONFIGS)} models: " + "; ".join(f"{a}: {n}" for a, n in pd.Series(ARM).value_counts(sort=False).items())
      + f"; budget ladder: {len(RUNGS)} rungs ({', '.join(RUNGS) or 'none'}), "
      f"{len({c.key() for c in LADDER_CONFIGS} - set(ARM))} more models; run folder: {NB.shown_dir}")

# %% [markdown]
# ## What is tested, declared before training
#
# Two questions, each with its own verdict by the same rule (`questions.declare_questions`):
#
# * **(a) The paper's claim, as the paper measured it** (the notebook's `verdict`): does the ResNet's *raw*
#   removal of unseen rain fall as N grows?
# * **(b) Beyond fidelity** (`verdict_beyond_fidelity`, this project's control): does its *excess* removal
#   (beyond the best fixed filter at least as faithful to the background) fall as N grows?
#
# Both test the trend over N on the three unseen presets pooled with **equal weights** (1/3 each), at the
# level of trained models: the mean over seeds of the within-seed Spearman correlation, with N shuffled
# within each seed (exact permutation test), one-sided in the paper's direction (negative), a 95% interval
# from resampled seeds; `inference.decide` gives reproduced / contradicted / inconclusive. Only (a) can make
# the headline say "contradicted".
# * **The other architectures**: the same two tests, one verdict each (Holm-corrected when claimed together).
# * **Ablation** (the ResNet predicting the background): per seed, the smallest minus the largest N, sign-flip
#   test over seeds (one-sided, positive), on both outcomes.
# * **Stall rule**, declared here: a model that removes less than 0.25 of its training rain from its *own
#   training tiles* did not learn its training data (`outcome.is_stalled`, `sweeps.training_fit`) and is left
#   out; it never looks at test images or unseen rain. The excluded models are listed per condition.
# * **Sensitivity** (exploratory, `sensitivity.sensitivity`): each preset alone, each left out, and the
#   frontier of Gaussian or median filters only.
# * **Budget ladder** (declared secondary analysis, `questions.ladder_tests`): the ResNet at the smallest and
#   largest N, every seed, trained again at each rung of the profile's ladder (steps x crop size; each rung has
#   its own learning-rate schedule). At each rung, both questions as the paired sign-flip test above (smallest
#   minus largest N, one-sided, positive), on each test set: the unseen presets pooled (synthetic), and the
#   paired development sets Rain100H and SPA-Data at notebook 04's matched scale, where the data folder holds
#   them. Holm over the rungs of one test set gives `p_holm`; the stall rule applies at every rung.

# %%
DECLS = questions.declare_questions("01_set_size", "within_seed_trend", "negative", OOD)
DECLS_PAIRED = questions.declare_questions("01_set_size", "paired", "positive", OOD)
DECL = DECLS["beyond_fidelity"]
display(pd.DataFrame([{"test": f"{a}: trend over N", "question": q, **d.to_dict()} for a in ARCH_LIST
                      for q, d in DECLS.items()]
                     + ([{"test": f"{ABL}: N = {N_LO} minus N = {N_HI}", "question": q, **d.to_dict()}
                         for q, d in DECLS_PAIRED.items()] if ABL else []))
        .set_index(["test", "question"])[["design", "direction", "outcome", "preset_label", "alpha"]])

# %% [markdown]
# ## The data
#
# **Backgrounds.** A training set of size N is the first N tiles of one seeded order, so the sets are nested
# (the N = 4 set is part of the N = 16 set). Test images are other images: for photos, whether an image is a
# test image depends only on a fixed hash of its name; dead leaves draw their test images from a separate
# stream. The next cell checks this from the ids.

# %%
split_of = lambda n, s: backgrounds.draw_split(BG, n, PROF.n_test, tile=PROF.tile, test_size=PROF.test_size, seed=s,
                                               gray=PROF.gray, data_dir=DATA)  # noqa: E731
first, other = split_of(N_HI, TRAIN_SEEDS[0]), split_of(N_LO, TRAIN_SEEDS[-1])
assert split_of(N_LO, TRAIN_SEEDS[0]).train_ids == first.train_ids[:N_LO], "training sets must be nested"
assert other.test_ids == first.test_ids, "the test images must not depend on the seed"
assert not set(first.train_images) & set(first.test_images), "a test image is also used in training"
print(f"test: {len(first.test_ids)} images of {PROF.test_size} px; training: up to {N_HI} tiles of {PROF.tile} px "
      f"from {len(first.train_images)} other images (seed {TRAIN_SEEDS[0]}); shared by training and test: none")
k = min(16, N_HI)
fig = pictures.image_grid(first.train[:k], ncols=8, titles=[f"#{i + 1}" for i in range(k)],
                          suptitle=f"The first {k} training tiles of seed {TRAIN_SEEDS[0]}: the N = {N_LO} set is "
                                   f"#1-#{N_LO}")
layout.save(fig, RUN / "fig_backgrounds.png")

# %% [markdown]
# **Rain.** Every model is trained on one rain preset and tested on it (in-distribution) and on presets whose
# ranges miss the training ranges on at least one field (out-of-distribution, OOD). Lengths and widths in px,
# angles in degrees from vertical; the figure shows one test image under each rain, as the models receive it.

# %%
EXPLORER = widgets.DerainExplorer.from_configs([c for c in CONFIGS if ARM[c.key()] == PRIMARY], data_dir=DATA)
cols = ["density", "length", "width", "angle", "intensity", "in_distribution", "ood_fields"]
display(rain.presets_table(TRAIN_RAIN).set_index("name").loc[PRESETS, cols])
fig = pictures.rain_examples(EXPLORER.eval_set, index=0, train_preset=TRAIN_RAIN)
layout.save(fig, RUN / "fig_rain.png")

# %% [markdown]
# ## Training, and the fixed filters on the same test images
#
# Each model sees a stream of random crops of its N tiles, each with a fresh layer of training rain. Finished
# models are cached by a hash of their configuration (`$DERAIN_RUNS/cache`), so a rerun, or notebook 04, reuses
# them. The fixed filters (identity, Gaussian blurs, medians, and their blends with the input) are scored on
# the very test inputs of the models; their upper envelope is the frontier that excess removal is measured from.

# %%
t = time.perf_counter()
DF = sweeps.sweep(CONFIGS, data_dir=DATA, workers=PROF.workers).assign(arm=lambda d: d["key"].map(ARM))
HELD = experiments.held_out(CONFIGS[0], data_dir=DATA)
FRONT = baselines.frontier_of(HELD.eval_set)
BASE = baselines.baseline_rows(HELD.eval_set, baselines.TABLE_BASELINES, names=HELD.names, train_spec=TRAIN_RAIN)
TRAIN_FIT = sweeps.training_fit(CONFIGS, data_dir=DATA)  # the stall rule reads only this
OUT = outcome.outcome_table(DF, FRONT, presets=DECL.presets, train_presets=IN_DIST,
                            model_cols=("key", "arm", "n_train", "seed"), fit=TRAIN_FIT)
STALLS = outcome.stall_report(OUT, ["arm", "n_train"], name_col="key")
FIT = OUT[~OUT["stalled"]]
print(f"{len(CONFIGS)} models ready and scored, with {len(baselines.DEFAULT_BASELINES)} fixed filters, in "
      f"{time.perf_counter() - t:.0f} s; removal of their own training rain on their own training tiles: "
      f"median {OUT['removal_fit'].median():.2f} (range {OUT['removal_fit'].min():.2f}-{OUT['removal_fit'].max():.2f})")
display(STALLS.pivot(index="arm", columns="n_train", values="stall_rate").rename_axis(columns="stall rate at N"))
display(Markdown("Stalled (left out of every test): " + ("; ".join(
    f"{a}, N = {n}: {', '.join(m)}" for a, n, m in STALLS[["arm", "n_train", "stalled_models"]].itertuples(index=False)
    if m) or "none") + "."))

# %% [markdown]
# ## Results
#
# Left: the excess removal of unseen rain (0 = no better than the best fixed filter that is as faithful to the
# background); middle: raw removal of unseen rain (what blur also earns); right: background PSNR. Lines are
# means over seeds with 95% t-intervals; stalled models are left out. Below: every ResNet on each unseen rain,
# against the fixed-filter frontier (dashed).

# %%
SHOWN = FIT if len(FIT) else OUT  # (a smoke run's models may all stall: show them rather than nothing)
fig = plotting.outcome_vs_n(SHOWN, suptitle="Unseen rain, pooled: model-level outcomes against N")
layout.save(fig, RUN / "fig_outcome_vs_n.png")
MT = outcome.model_table(DF[DF["arm"] == PRIMARY], FRONT, model_cols=("key", "n_train", "seed"))
fig = plotting.frontier_panels(MT, FRONT, OOD, hue="n_train", hue_label="N",
                               suptitle=f"{PRIMARY}: removal against background PSNR, per unseen rain")
layout.save(fig, RUN / "fig_frontier.png")
BY_N = SHOWN.groupby(["arm", "n_train"])[["excess_removal", "removal", "bg_psnr", "removal_train"]].mean()
display(BY_N.unstack("n_train").round(3))

# %% [markdown]
# ## The tests
#
# One trend test per architecture and question (the declared design), and per arm the paired difference
# between the smallest and the largest N, in units of the outcome (how much removal the extra backgrounds cost).

# %%
QUESTIONS = list(DECLS)
ALL_ARMS = [*ARCH_LIST, *([ABL] if ABL else [])]
TESTS = {(a, q): inference.within_seed_trend(FIT[FIT["arm"] == a], "n_train", d.outcome, seed=SEED)
         for a in ARCH_LIST for q, d in DECLS.items()}
RECORDS = {k: inference.decide(r, DECLS[k[1]], profile=PROFILE) for k, r in TESTS.items()}
ENDS = FIT[FIT["n_train"].isin([N_LO, N_HI])].assign(end=lambda d: np.where(d["n_train"] == N_LO, "lo", "hi"))
PAIRED = {(a, q): inference.paired(ENDS[ENDS["arm"] == a], d.outcome, "end", "lo", "hi", seed=SEED)
          for a in ALL_ARMS for q, d in DECLS.items() if set(ENDS.loc[ENDS["arm"] == a, "end"]) == {"lo", "hi"}}
if ABL:
    RECORDS |= {(ABL, q): inference.decide(PAIRED.get((ABL, q)), DECLS_PAIRED[q], profile=PROFILE) for q in QUESTIONS}
HOLM = {q: inference.holm({a: RECORDS[(a, q)].p_value for a in ALL_ARMS[1:]}) if ALL_ARMS[1:] else {}
        for q in QUESTIONS}
TABLE = pd.DataFrame([{"arm": a, "question": q, "outcome": DECLS[q].outcome, "verdict": RECORDS[(a, q)].verdict,
                       "trend rho": TESTS[(a, q)].effect if (a, q) in TESTS else np.nan,
                       "rho 95% CI": (f"[{TESTS[(a, q)].ci95[0]:+.2f}, {TESTS[(a, q)].ci95[1]:+.2f}]"
                                      if (a, q) in TESTS else ""),
                       "p (trend)": TESTS[(a, q)].p_less if (a, q) in TESTS else np.nan,
                       f"N={N_LO} minus N={N_HI}": PAIRED[(a, q)].effect if (a, q) in PAIRED else np.nan,
                       "difference 95% CI": (f"[{PAIRED[(a, q)].ci95[0]:+.3f}, {PAIRED[(a, q)].ci95[1]:+.3f}]"
                                             if (a, q) in PAIRED else ""),
                       "p (paired)": PAIRED[(a, q)].p_greater if (a, q) in PAIRED else np.nan,
                       "p Holm (secondary)": HOLM[q].get(a, np.nan)} for a in ALL_ARMS for q in QUESTIONS])
display(TABLE.set_index(["arm", "question"]).round(3))

# %% [markdown]
# ## How the answer moves with the choices
#
# The ResNet's two tests again, on each unseen preset alone, with each preset left out of the pool, and (for
# the control question) against the frontier of Gaussian or median filters only. Exploratory: the declared
# row decides; the per-preset p-values are Holm-adjusted (`p_holm`).

# %%
SENS = sensitivity.sensitivity(
    DF, FRONT, DECLS, lambda m, y: inference.within_seed_trend(m, "n_train", y, seed=SEED), train_presets=IN_DIST,
    model_cols=("key", "arm", "n_train", "seed"), fit=TRAIN_FIT, select=lambda t: t[t["arm"] == PRIMARY],
    profile=PROFILE)
display(SENS.set_index(["question", "variant"]).drop(columns=["outcome"]).round(3))

# %% [markdown]
# ## Does the answer depend on the training budget? The budget ladder
#
# The ends of the sweep (N = smallest and largest) at each rung: a rung without a `b` sees the same pixels per
# step as the profile (16 crops of 32 px = 4 of 64 px), so the crop side changes the context a network sees,
# not how much image it sees. Each point is the per-seed difference smallest minus largest N with its 95%
# interval; `*` marks a rung where the declared rule says reproduced, `x` contradicted. A rung trained
# elsewhere (the GPU rung, `python -m derain_utils.lab.ladder gpu`) joins from its outcomes file when it matches
# this run's design.

# %%
t = time.perf_counter()
LADDER_OUT = pd.DataFrame(columns=ladder.OUTCOME_COLUMNS)
if RUNGS:
    LDF = sweeps.sweep(LADDER_CONFIGS, data_dir=DATA, workers=PROF.workers)
    LADDER_OUT = ladder.outcomes(LADDER_CONFIGS, PROF, rows=LDF, frontier=FRONT, ood=OOD,
                                 fit=sweeps.training_fit(LADDER_CONFIGS, data_dir=DATA),
                                 pairs=ladder.matched_pairs(data_dir=DATA, train_rain=TRAIN_RAIN))
EXTRA = ladder.extra_rungs(LADDER_EXTRA, PROF, background=BG)
if len(EXTRA):
    LADDER_OUT = pd.concat([LADDER_OUT, EXTRA[list(ladder.OUTCOME_COLUMNS)]], ignore_index=True)
print(EXTRA.attrs.get("note", ""))
if len(LADDER_OUT):
    LADDER_TESTS = questions.ladder_tests(LADDER_OUT, ood=OOD, n_lo=N_LO, n_hi=N_HI, profile=PROFILE, seed=SEED)
    LADDER_READING = questions.ladder_reading(LADDER_TESTS)
    RUNG_INFO = LADDER_OUT.drop_duplicates("rung").set_index("rung")
    fig = plotting.ladder(LADDER_TESTS, steps=RUNG_INFO["steps"].to_dict(),
                          groups={r: ladder.rung_group(i, PROF.model_size) for r, i in RUNG_INFO.iterrows()},
                          questions={"paper": "raw removal, N small minus large", "beyond_fidelity":
                                     "excess removal, N small minus large"},
                          suptitle=f"{PRIMARY}: the effect of N (N = {N_LO} minus {N_HI}) at each training budget")
    layout.save(fig, RUN / "fig_ladder.png")
    display(LADDER_TESTS.pivot_table(index=["test_set", "rung"], columns="question", values=["difference", "p"],
                                     sort=False).round(3))
    display(LADDER_READING.set_index(["question", "test_set"]))
    print(f"ladder: {LADDER_OUT['key'].nunique()} models on {LADDER_OUT['test_set'].nunique()} test sets in "
          f"{time.perf_counter() - t:.0f} s; stalled: {int(LADDER_OUT.drop_duplicates('key')['stalled'].sum())}")
else:
    LADDER_TESTS, LADDER_READING = pd.DataFrame(), pd.DataFrame()
    print("no budget ladder in this run (LADDER = ['none'] or a profile without one)")

# %% [markdown]
# ## What the numbers say
#
# The strength of a trend is read from the mean within-seed correlation (|rho| < 0.3 weak, < 0.5 moderate,
# else strong), its size from the paired difference in excess removal against the spread between seeds.

# %%
def strength(rho):
    return "no" if not np.isfinite(rho) else "a weak" if abs(rho) < 0.3 else "a moderate" if abs(rho) < 0.5 else "a strong"


def describe(arm, q):
    r, d, y = TESTS.get((arm, q)), PAIRED.get((arm, q)), DECLS[q].outcome
    what = "raw removal" if y == "removal" else "excess removal"
    lo, hi = (BY_N[y].get((arm, n), np.nan) for n in (N_LO, N_HI))
    text = f"**{arm}**, {what} of unseen rain: {lo:+.3f} at N = {N_LO} and {hi:+.3f} at N = {N_HI}"
    if d is not None:
        sd = ENDS[ENDS["arm"] == arm].groupby("end")[y].std().mean()
        ratio = f", {abs(d.effect) / sd:.1f} times the seed-to-seed sd ({sd:.3f})" if sd > 0 else ""
        text += (f"; per seed the smallest minus the largest N is {d.effect:+.3f} [{d.ci95[0]:+.3f}, {d.ci95[1]:+.3f}]"
                 f" (one-sided p = {d.p_greater:.2g}){ratio}")
    if r is not None and np.isfinite(r.effect):
        direction = "falls" if r.effect < 0 else "rises"
        text += (f". {strength(r.effect).capitalize()} trend: {what} {direction} with N "
                 f"(mean within-seed rho {r.effect:+.2f} [{r.ci95[0]:+.2f}, {r.ci95[1]:+.2f}])")
    elif r is not None:
        text += f". No trend could be computed ({r.n_models} models left after the stall rule)"
    return text + "."


# whole-image PSNR, raw removal and background PSNR of the primary arm: does whole-image PSNR show the trend?
PSNR_T = (DF[(DF["arm"] == PRIMARY) & DF["preset"].isin(OOD) & DF["key"].isin(FIT["key"])]
          .groupby(["key", "n_train", "seed"])[["removal", "bg_psnr", "psnr"]].mean().reset_index())
TRENDS = {m: inference.within_seed_trend(PSNR_T, "n_train", m, seed=SEED) for m in ("removal", "bg_psnr", "psnr")}
clear = {m: r.ci95[0] > 0 or r.ci95[1] < 0 for m, r in TRENDS.items()}
fmt_t = lambda m: f"rho {TRENDS[m].effect:+.2f} [{TRENDS[m].ci95[0]:+.2f}, {TRENDS[m].ci95[1]:+.2f}]"  # noqa: E731
HIDES = bool((clear["removal"] or clear["bg_psnr"]) and not clear["psnr"])
PSNR_NOTE = (f"On the unseen rains, raw removal ({fmt_t('removal')}), background PSNR ({fmt_t('bg_psnr')}) and "
             f"whole-image PSNR ({fmt_t('psnr')}) against N: "
             + ("whole-image PSNR hides what the decoupled metrics show." if HIDES else
                "whole-image PSNR moves clearly too." if clear["psnr"] else
                "no metric moves clearly, so there is nothing for whole-image PSNR to hide."))
display(Markdown("\n\n".join([describe(a, q) for a in ALL_ARMS for q in QUESTIONS] + [PSNR_NOTE])))

# %% [markdown]
# ## What the models do with unseen rain
#
# One test image under the unseen rain that differs from the training rain on the most fields, derained by the
# smallest-N and the largest-N ResNet of the first seed: the image with the *median* drop in removal between
# the two (a typical case). Compare the removed layer O − D with the true rain R.

# %%
P_EX = max(OOD, key=lambda p: len(rain.ood_fields(TRAIN_RAIN, p)))
IMG = widgets.representative_image(DF[DF["arm"] == PRIMARY], P_EX, N_LO, N_HI)
EXAMPLES = [EXPLORER.example(n, TRAIN_SEEDS[0], P_EX, IMG) for n in (N_LO, N_HI)]
fig = pictures.derain_grid(EXAMPLES, [EXPLORER.label(ex) for ex in EXAMPLES],
                           suptitle=f"{IMG} under {P_EX} rain (unseen)")
layout.save(fig, RUN / "fig_examples.png")
if INTERACTIVE:
    display(EXPLORER.widget())

# %%
RESULTS = pd.concat([DF, BASE.assign(arm="fixed filter")], ignore_index=True).assign(
    rain_kind=lambda d: np.select([d["preset"] == "clean", d["preset"].isin(OOD)], ["none", "ood"], "in_distribution"))
FACTS = dict(
    effect_of=f"mean within-seed Spearman rho between N and the raw removal of unseen rain ({DECL.preset_label}, "
              f"equal weights), {PRIMARY}; N shuffled within seed (beyond_fidelity: the same on excess removal)",
    per_arch={a: {q: {**RECORDS[(a, q)].to_dict(), "p_holm": HOLM[q].get(a)} for q in QUESTIONS} for a in ARCH_LIST},
    ablation=None if ABL is None else {q: {"arm": ABL, **RECORDS[(ABL, q)].to_dict(), "p_holm": HOLM[q].get(ABL)}
                                       for q in QUESTIONS},
    paired_ends={f"{a} / {q}": {"effect": r.effect, "ci95": r.ci95, "p_value": r.p_greater}
                 for (a, q), r in PAIRED.items()},
    stall_rule=f"removal of the training rain from the model's own training tiles < {outcome.STALL_MIN_FIT:g}",
    stall_rates=STALLS.drop(columns="stalled_models").to_dict("records"), n_stalled=int(OUT["stalled"].sum()),
    stalled_models=list(OUT.loc[OUT["stalled"], "key"]),
    sensitivity=SENS.to_dict("records"),
    excess_removal_by_n={a: {int(n): v for n, v in BY_N.loc[a, "excess_removal"].items()} for a in BY_N.index.levels[0]},
    removal_by_n={a: {int(n): v for n, v in BY_N.loc[a, "removal"].items()} for a in BY_N.index.levels[0]},
    psnr_trends={m: {"rho": r.effect, "ci95": r.ci95, "p_less": r.p_less, "p_greater": r.p_greater}
                 for m, r in TRENDS.items()},
    ladder=LADDER_TESTS.to_dict("records"), ladder_reading=LADDER_READING.to_dict("records"),
    ladder_rungs={r: v.label for r, v in RUNGS.items()}, whole_image_psnr_hides=HIDES, n_list=SIZES,
    seeds=TRAIN_SEEDS, archs=ARCH_LIST, steps=PROF.steps, background=BG,
    n_test=PROF.n_test, in_distribution_presets=IN_DIST, ood_presets=OOD)

# %% [markdown]
# ## Verdict
#
# The ResNet's two declared tests decide: (a) the paper's measure gives `verdict`, (b) the control gives
# `verdict_beyond_fidelity`; the other architectures and the ablation are reported beside them.

# %%
RECORD, BEYOND = RECORDS[(PRIMARY, "paper")], RECORDS[(PRIMARY, "beyond_fidelity")]
HEADLINE = questions.two_questions_headline(RECORD, BEYOND)
SUMMARY = " ".join(describe(PRIMARY, q).replace("**", "") for q in QUESTIONS)
OTHERS = "; ".join(f"{a}: {RECORDS[(a, 'paper')].verdict} as the paper measured it, "
                   f"{RECORDS[(a, 'beyond_fidelity')].verdict} beyond fidelity" for a in ALL_ARMS[1:])
display(Markdown(f"**{HEADLINE}**\n\n{SUMMARY}" + (f"\n\nThe other arms: {OTHERS}." if OTHERS else "")))
_ = notebook.finish(NB, RESULTS, ["arm", "seed", "n_train", "image", "preset", "in_distribution", "rain_kind",
                                  "removal", "bg_psnr", "psnr", "baseline"], record=RECORD, beyond=BEYOND,
                    summary=SUMMARY, tables={"outcomes.csv": OUT, "stalls.csv": STALLS, "sensitivity.csv": SENS,
                                             "training_fit.csv": TRAIN_FIT,
                                             "ladder_outcomes.csv": LADDER_OUT, "ladder_tests.csv": LADDER_TESTS},
                    **FACTS)
