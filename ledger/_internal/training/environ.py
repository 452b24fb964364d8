"""The environment variables that change a fine-tune's bits, apart from torch: a process
that only records or compares them (add-many's committing process) need not import it."""

from __future__ import annotations

# Environment variables torch, oneDNN, MKL, OpenBLAS and OpenMP read that can
# change a result's bits: kernel and ISA selection, conditional numerical
# reproducibility, floating-point math mode, thread counts and scheduling
# (reduction order). They are read once at library start-up, so they cannot be
# set from inside the process: they are recorded, and a replay under other
# values is refused naming the variable. MKL_CBWR and ONEDNN_MAX_CPU_ISA were
# each measured to change a replayed digest here.
BIT_CHANGING_ENV = (
    "ATEN_CPU_CAPABILITY",
    "DNNL_CPU_ISA_HINTS",
    "DNNL_DEFAULT_FPMATH_MODE",
    "DNNL_MAX_CPU_ISA",
    "GOMP_SPINCOUNT",
    "KMP_DETERMINISTIC_REDUCTION",
    "KMP_FORCE_REDUCTION",
    "MKL_CBWR",
    "MKL_DEBUG_CPU_TYPE",
    "MKL_DYNAMIC",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_NUM_THREADS",
    "MKL_THREADING_LAYER",
    "OMP_DYNAMIC",
    "OMP_NUM_THREADS",
    "OMP_SCHEDULE",
    "OMP_THREAD_LIMIT",
    "ONEDNN_CPU_ISA_HINTS",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "ONEDNN_MAX_CPU_ISA",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_NUM_THREADS",
)
