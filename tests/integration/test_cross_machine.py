"""Cross-machine reproducibility: every extractor gives bit-identical features under the pinned numerics
(fkstudy.numerics.PINNED_ENV) on this machine and on simulated other machines.

Each run is a fresh subprocess that imports stages/_bootstrap.py (the stage environment), with the
environment a stage gets: the inherited one, what the simulated machine changes, then
`fkstudy.numerics.pin()` applied on top — as stages/_bootstrap.py does before any library loads. One
process per framework and machine (TensorFlow and torch never share a process): `cpu` (tfidf, use,
classical, sift_bovw), `torch` (bert, clip, efficientnet_lite0), `tf` (vgg16, efficientnetb0,
mobilenetv3small), on 8 real photos and 16 real product texts.

Simulated machines, each compared with "here":
  threads1   n_jobs 1 instead of 2 (a machine whose stage ran with another thread count)
  avx512vnni a CPU without AMX / AVX512-BF16 / AVX512-FP16, through the libraries' own caps
             (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, NPY_DISABLE_CPU_FEATURES)
  opencv_sse a CPU whose OpenCV dispatches below SSE4.1 (OPENCV_CPU_DISABLE; the classical extractors only):
             image_features@ runs OpenCV at its baseline SIMD (stages/image_features.py opencv_setup), so
             the SSE4.1 / AVX2 / AVX-512 loops OpenCV picks elsewhere must not show in the features
  skx, hsw   a Skylake-SP (AVX-512, no VNNI) and a Haswell (AVX2 only; only under the "avx2" tier, the
             default "avx512" tier promises AVX-512 machines) through CPUID faulting: a small
             LD_PRELOAD library (compiled here with cc) makes every CPUID the process executes answer
             as that CPU (feature bits, model, cache sizes), so each library dispatches as it would
             there — including TensorFlow's own choice to switch oneDNN off without AVX512_VNNI, which
             no library variable simulates. Skipped when there is no C compiler or the kernel / CPU has
             no CPUID faulting (`cpuid_fault` in /proc/cpuinfo).

Measured without the pins (bench: /tmp/det harness, 24 photos / 40 texts): MiniLM, CLIP, the classical
descriptor, USE differ on an AVX2 CPU; VGG16, EfficientNetB0, MobileNetV3Small on any CPU without
AVX512_VNNI (TensorFlow then runs Eigen contractions instead of oneDNN); EfficientNet-Lite0, tfidf and
sift_bovw are identical everywhere. With the pins every extractor is identical on every simulated
CPU here (BOUNDED lists the thread-count exceptions).

Runtime ~3-4 min on the 2-core machine (15 processes, 2 at a time).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from .conftest import CSV, ROOT, real_data_dir

pytestmark = pytest.mark.integration

sys.path.insert(0, str(ROOT / "src"))
from fkstudy import numerics  # noqa: E402

GROUPS = {"cpu": ["tfidf", "use", "classical", "sift_bovw"],
          "torch": ["bert", "clip", "efficientnet_lite0"],
          "tf": ["vgg16", "efficientnetb0", "mobilenetv3small"]}
EXTRACTORS = [name for names in GROUPS.values() for name in names]
N_IMAGES, N_TEXTS = 8, 16

# (extractor, machine) pairs a library keeps from being bit-identical under the pins, and the bound checked
# instead: {(extractor, machine): (why, max absolute difference)}. Each is a thread-count difference only: the
# thread count is `n_jobs` in params.yaml, so the same params never meet it. Measured: under the "avx512" tier
# EfficientNet-Lite0 (torch's AVX-512 convolutions split their reductions per thread); under the default "avx2"
# tier the USE port (numpy on OpenBLAS's Haswell kernels: 1.6e-7 apart on 16 texts between 1 and 2 threads, CI run of
# 2026-12-06 on an AMD EPYC). Every CPU-type difference stays exact.
BOUNDED: dict[tuple[str, str], tuple[str, float]] = {
    ("efficientnet_lite0", "threads1"): ("torch AVX-512 conv reductions split per thread; n_jobs is a param", 1e-5),
    ("use", "threads1"): ("OpenBLAS Haswell kernels differ between 1 and 2 threads; n_jobs is a param", 1e-6)}

# What the inherited environment must not decide (the machine simulation and the pins do). OpenBLAS'
# OPENBLAS_CORETYPE is kept: some machines preset it for correctness (numerics.PRESET_WINS).
CONTROLLED = ("ONEDNN_", "DNNL_", "MKL_", "OPENCV_", "NPY_", "ATEN_", "TF_ENABLE_ONEDNN", "LD_PRELOAD",
              "FAKECPUID", numerics.MODE_VAR)

MACHINES: dict[str, dict] = {
    "here": {},
    "threads1": {},
    "avx512vnni": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI", "MKL_ENABLE_INSTRUCTIONS": "AVX512_E1",
                   "NPY_DISABLE_CPU_FEATURES": "AVX512_ICL AVX512_SPR"},
    "opencv_sse": {"OPENCV_CPU_DISABLE": "SSE4.1,SSE4.2,POPCNT,AVX,FP16,FMA3,AVX2"},
    "skx": {"FAKECPUID": "skx"},
    "hsw": {"FAKECPUID": "hsw"},
}
# An AVX2-only CPU is inside the guarantee of the "avx2" tier only
if numerics.DEFAULT_TIER != "avx2":
    del MACHINES["hsw"]
# machines that only the classical extractors can tell apart from "here" run the "cpu" group only
ONLY_GROUPS = {"opencv_sse": ["cpu"]}
EXPECTED = {"avx2": {"torch": "AVX2", "openblas": "Haswell"},
            "avx512": {"torch": "AVX512", "openblas": "SkylakeX"}}[numerics.DEFAULT_TIER]

WORKER = r'''
import json, sys
stages, inputs, out, group, n_jobs = sys.argv[1:6]
sys.path.insert(0, stages)
import _bootstrap  # noqa: F401  the stage environment (fkstudy.numerics.pin() once bootstrap calls it)
from pathlib import Path
import numpy as np, yaml
from fkstudy.registry import Context
from fkstudy.runtime import pin_threads, seed_everything
from fkstudy import numerics
root, inputs, out, n_jobs = Path(stages).parent, Path(inputs), Path(out), int(n_jobs)
params = yaml.safe_load((root / "params.yaml").read_text())
pin_threads(n_jobs)
seed_everything(params["seed"])
images = np.load(inputs / "images.npy")
texts = json.loads((inputs / "texts.json").read_text())
probe = {"numerics": numerics.describe()}
from fkstudy.image.registry import IMAGE
if set(group.split(",")) & set(IMAGE.names("classical")):
    from image_features import opencv_setup  # how stage image_features@ runs OpenCV
    opencv_setup()
for name in group.split(","):
    if name in ("tfidf", "use", "bert"):
        from fkstudy.text.registry import TEXT
        entry, section, data, ids = TEXT[name], "text_features", texts, [f"t{i}" for i in range(len(texts))]
        weights = None
    else:
        from fkstudy.image.weights import WeightsPolicy
        entry = IMAGE[name]
        section = "deep_features" if entry.kind == "deep" else "image_features"
        data, ids = images, [f"i{i}" for i in range(len(images))]
        weights = WeightsPolicy(dir=str(root / "weights"), allow_random_init=True, allow_download=False)
    p = entry.params(**params[section][name])
    ctx = Context(ids=ids, fit_ids=frozenset(ids), seed=params["seed"], n_jobs=n_jobs, weights=weights)
    X, _ = entry.load()(data, p, ctx)
    np.save(out / f"{name}.npy", np.asarray(X, dtype=np.float32))
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
probe["numpy_simd"] = [d for d in __cpu_dispatch__ if __cpu_features__.get(d)]
if "torch" in sys.modules:
    import torch
    probe["torch_capability"] = torch.backends.cpu.get_cpu_capability()
if "cv2" in sys.modules:
    import cv2
    probe["opencv_ipp"] = bool(cv2.ipp.useIPP())
    probe["opencv_optimized"] = bool(cv2.useOptimized())
if "tensorflow" in sys.modules:
    from tensorflow.python.util import _pywrap_util_port
    probe["tf_onednn"] = bool(_pywrap_util_port.IsMklEnabled())
from threadpoolctl import threadpool_info
probe["openblas"] = sorted({p.get("architecture") for p in threadpool_info() if p["internal_api"] == "openblas"})
(out / "probe.json").write_text(json.dumps(probe))
'''

FAKECPUID_C = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#define ARCH_SET_CPUID 0x1012
#define B(n) (1u << (n))
typedef struct { const char *name; uint32_t sig, c7b, c7c, c7d, c71a, l2kb, l3kb; } prof;
static const prof PROFS[] = {  /* leaf 7.0 EBX/ECX/EDX and 7.1 EAX bits cleared; L2/L3 sizes in KiB */
  {"skx", 0x50654, B(21), B(1)|B(6)|B(8)|B(9)|B(10)|B(11)|B(12)|B(14), B(14)|B(16)|B(22)|B(23)|B(24)|B(25),
   B(4)|B(5)|B(21), 1024, 39424},
  {"hsw", 0x306F2, B(16)|B(17)|B(21)|B(28)|B(30)|B(31), B(1)|B(6)|B(8)|B(9)|B(10)|B(11)|B(12)|B(14),
   B(14)|B(16)|B(22)|B(23)|B(24)|B(25), B(4)|B(5)|B(21), 256, 30720}};
static const prof *P;
static struct sigaction chained; static int have_chained;
static void cpuid(uint32_t l, uint32_t s, uint32_t r[4]) {
  __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(l), "c"(s)); }
static void cache(uint32_t r[4], uint32_t kb) {
  uint64_t unit = (uint64_t)((r[1] & 0xfff) + 1) * (((r[1] >> 12) & 0x3ff) + 1) * (((r[1] >> 22) & 0x3ff) + 1);
  uint64_t sets = (uint64_t)kb * 1024 / unit; r[2] = (uint32_t)(sets ? sets - 1 : 0); }
static void edit(uint32_t l, uint32_t s, uint32_t r[4]) {
  if (l == 1) r[0] = P->sig;
  else if (l == 7 && s == 0) { r[1] &= ~P->c7b; r[2] &= ~P->c7c; r[3] &= ~P->c7d; }
  else if (l == 7 && s == 1) r[0] &= ~P->c71a;
  else if (l == 4 && (r[0] & 0x1f)) { uint32_t lv = (r[0] >> 5) & 7; if (lv == 2) cache(r, P->l2kb); if (lv == 3) cache(r, P->l3kb); }
  else if (l == 0x80000006) r[2] = (r[2] & 0xffff) | (P->l2kb << 16);
  else if (l == 0xd && s == 0) r[0] &= ~(B(17) | B(18) | ((P->c7b & B(16)) ? (B(5) | B(6) | B(7)) : 0));
  else if (l == 0xd && (s == 17 || s == 18 || ((P->c7b & B(16)) && s >= 5 && s <= 7))) r[0] = r[1] = r[2] = r[3] = 0; }
static void handler(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv; unsigned char *ip = (unsigned char *)uc->uc_mcontext.gregs[REG_RIP];
  if (si->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
    uint32_t r[4], l = uc->uc_mcontext.gregs[REG_RAX], s = uc->uc_mcontext.gregs[REG_RCX];
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1); cpuid(l, s, r); syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    edit(l, s, r);
    uc->uc_mcontext.gregs[REG_RAX] = r[0]; uc->uc_mcontext.gregs[REG_RBX] = r[1];
    uc->uc_mcontext.gregs[REG_RCX] = r[2]; uc->uc_mcontext.gregs[REG_RDX] = r[3];
    uc->uc_mcontext.gregs[REG_RIP] += 2; return; }
  if (have_chained && (chained.sa_flags & SA_SIGINFO) && chained.sa_sigaction) { chained.sa_sigaction(sig, si, ucv); return; }
  if (have_chained && !(chained.sa_flags & SA_SIGINFO) && chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) {
    chained.sa_handler(sig); return; }
  signal(SIGSEGV, SIG_DFL); }
typedef int (*sa_fn)(int, const struct sigaction *, struct sigaction *);
int sigaction(int n, const struct sigaction *a, struct sigaction *o) {  /* keep ours first, chain others */
  sa_fn real = (sa_fn)dlsym(RTLD_NEXT, "sigaction");
  if (n == SIGSEGV && P) { if (o) { if (have_chained) *o = chained; else memset(o, 0, sizeof *o); }
                           if (a) { chained = *a; have_chained = 1; } return 0; }
  return real(n, a, o); }
__attribute__((constructor)) static void init(void) {
  const char *name = getenv("FAKECPUID"); if (!name) return;
  for (unsigned i = 0; i < sizeof PROFS / sizeof *PROFS; i++) if (!strcmp(PROFS[i].name, name)) P = &PROFS[i];
  if (!P) { fprintf(stderr, "fakecpuid: unknown profile %s\n", name); exit(97); }
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  ((sa_fn)dlsym(RTLD_NEXT, "sigaction"))(SIGSEGV, &sa, NULL);
  if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0)) { perror("fakecpuid: ARCH_SET_CPUID"); exit(98); } }
'''


def fake_cpuid_library(tmp: Path) -> tuple[Path | None, str]:
    """(the compiled CPUID-faking library, "") or (None, why it cannot be used here)."""
    if "cpuid_fault" not in Path("/proc/cpuinfo").read_text():
        return None, "no CPUID faulting on this CPU / hypervisor"
    src, lib = tmp / "fakecpuid.c", tmp / "libfakecpuid.so"
    src.write_text(FAKECPUID_C)
    try:
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True,
                       capture_output=True, timeout=120)
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"cannot build the CPUID faker: {exc}"
    probe = subprocess.run(["/bin/true"], env={**os.environ, "LD_PRELOAD": str(lib), "FAKECPUID": "hsw"})
    if probe.returncode:
        return None, f"CPUID faulting refused (exit {probe.returncode})"
    return lib, ""


def real_inputs(dest: Path) -> Path:
    """N_IMAGES real photos (224 x 224, padded as the image cache) and N_TEXTS real product texts."""
    import pandas as pd

    from fkstudy.image.preprocess import decode_rgb, resize_square

    src = real_data_dir()
    df = pd.read_csv(src / CSV, dtype=str, keep_default_na=False)
    rows = df.iloc[np.linspace(0, len(df) - 1, 40).round().astype(int)]
    photos = [src / "Images" / n for n in rows["image"] if (src / "Images" / n).exists()][:N_IMAGES]
    images = np.stack([resize_square(decode_rgb(p, 50_000_000, 448)[0], 224, "pad") for p in photos])
    texts = [f"{r.product_name}. {r.description}" for r in rows.head(N_TEXTS).itertuples()]
    dest.mkdir(parents=True)
    np.save(dest / "images.npy", images)
    (dest / "texts.json").write_text(json.dumps(texts))
    return dest


def stage_env(machine: dict, fake_lib: Path | None) -> dict:
    """The environment a stage process gets on `machine`: inherited, the machine's own, then the pins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONTROLLED)}
    env.update({k: v for k, v in machine.items() if k != "FAKECPUID"})
    if "FAKECPUID" in machine:
        env.update({"LD_PRELOAD": str(fake_lib), "FAKECPUID": machine["FAKECPUID"]})
    numerics.pin(env)  # what stages/_bootstrap.py does first (the default tier: CONTROLLED drops
    #                    FKSTUDY_NUMERICS); every pinned ISA is at or below the simulated machine's
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """{machine: directory with <extractor>.npy and probe_<group>.json}, or {machine: skip reason}."""
    tmp = tmp_path_factory.mktemp("cross_machine")
    inputs = real_inputs(tmp / "inputs")
    fake_lib, why = fake_cpuid_library(tmp)
    jobs, out = [], {}
    for machine, spec in MACHINES.items():
        if "FAKECPUID" in spec and fake_lib is None:
            out[machine] = why
            continue
        out[machine] = tmp / machine
        for group, names in GROUPS.items():
            if group not in ONLY_GROUPS.get(machine, GROUPS):
                continue
            (tmp / machine / group).mkdir(parents=True)
            jobs.append((machine, group, names, stage_env(spec, fake_lib)))

    def run(job):
        machine, group, names, env = job
        d = tmp / machine / group
        cmd = [sys.executable, "-c", WORKER, str(ROOT / "stages"), str(inputs), str(d), ",".join(names),
               "1" if machine == "threads1" else "2"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp)
        if proc.returncode:
            raise AssertionError(f"{machine}/{group} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")

    with ThreadPoolExecutor(max_workers=2) as pool:  # 2 cores: two stage processes at a time
        list(pool.map(run, jobs))
    return out


def _features(runs: dict, machine: str, name: str) -> np.ndarray:
    group = next(g for g, names in GROUPS.items() if name in names)
    return np.load(runs[machine] / group / f"{name}.npy")


@pytest.mark.parametrize("machine", [m for m in MACHINES if m != "here"])
@pytest.mark.parametrize("name", EXTRACTORS)
def test_features_identical_across_machines(runs, name, machine):
    if isinstance(runs[machine], str):
        pytest.skip(runs[machine])
    if machine in ONLY_GROUPS and not any(name in GROUPS[g] for g in ONLY_GROUPS[machine]):
        pytest.skip(f"{machine} changes nothing {name} runs")
    here, there = _features(runs, "here", name), _features(runs, machine, name)
    assert here.shape == there.shape
    if (name, machine) in BOUNDED:
        why, bound = BOUNDED[(name, machine)]
        diff = float(np.abs(here.astype(np.float64) - there).max())
        assert diff <= bound, f"{name} on {machine}: max |diff| {diff:.3g} > documented bound {bound} ({why})"
    else:
        diff = np.abs(here.astype(np.float64) - there)
        assert np.array_equal(here, there), (
            f"{name} on {machine}: {np.mean(here != there):.0%} of the values differ, max |diff| {diff.max():.3g}")


@pytest.mark.parametrize("machine", list(MACHINES))
def test_pins_took_effect(runs, machine):
    """The pinned code paths are the ones the libraries report using (on every simulated machine)."""
    if isinstance(runs[machine], str):
        pytest.skip(runs[machine])
    probes = {g: json.loads((runs[machine] / g / "probe.json").read_text()) for g in ONLY_GROUPS.get(machine, GROUPS)}
    for g, probe in probes.items():
        differs = set(probe["numerics"]["differs"]) - set(numerics.PRESET_WINS)
        assert probe["numerics"]["mode"] == numerics.DEFAULT_TIER and not differs, (g, probe["numerics"])
        assert "AVX512_SPR" not in probe["numpy_simd"], (g, probe["numpy_simd"])
    assert probes["cpu"]["opencv_ipp"] is False and probes["cpu"]["opencv_optimized"] is False
    if machine in ONLY_GROUPS:
        return
    if numerics.DEFAULT_TIER == "avx2":
        assert probes["torch"]["torch_capability"] == EXPECTED["torch"]
    assert probes["tf"]["tf_onednn"] is True
    if "OPENBLAS_CORETYPE" not in os.environ:  # a preset core type wins (numerics.PRESET_WINS)
        assert probes["cpu"]["openblas"] == [EXPECTED["openblas"]], probes["cpu"]["openblas"]
