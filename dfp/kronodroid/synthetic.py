"""Synthetic Kronodroid releases: raw files shaped like the published originals.

Pure logic (no Dagster). `generate_release` builds one release as a `pyarrow.Table` with the
original 484 columns, types and quirks (trailing/embedded newlines in `Package`, `M/D/YYYY`
dates with the `1/1/1980` sentinel, `None` strings in the emulator's `Nr*` columns, a few
sha256 values shared by rows with conflicting labels). `write_release_files` writes both
releases under their original file names, as CSV or Parquet.

The data come from a compact parametric model, not from real rows:

* each row draws a label, a date position `t` in [0, 1] (2008 … 2020) and three latent
  traits: app size, permission appetite and runtime activity;
* malware rows carry a per-row "maliciousness" strength (gamma distributed, so some malware
  looks benign), which raises a fixed subset of dangerous permissions and of syscalls; the
  strength fades for newer apps and per-permission rates drift with `t` (mild concept drift);
* syscall columns are sparse: a core of common syscalls is active for most apps, the rest
  rarely; active counts are log-normal;
* permission totals, file sizes, component counts and scanner verdicts are derived so the
  invariants of the originals hold (`nr_syscalls` = row sum, `nr_permissions` = flag sum =
  `normal + dangerous + signature`, `total_perm` = `nr_permissions + nr_custom`, ...).

Column-level parameters (which syscalls are common, base rates, drift) come from a fixed
"world" generator per release, so different seeds are different samples of the same world
and a model fitted on one seed transfers to another. Row-level draws come from
`numpy.random.default_rng((seed, release))`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dfp.kronodroid.columns import PERMISSION_COLUMNS, SYSCALL_COLUMNS
from dfp.kronodroid.schema import (
    DATE_COLUMNS,
    DATE_SENTINEL,
    LABEL_COLUMN,
    PACKAGE_COLUMN,
    SHA256_COLUMN,
    STATIC_COLUMNS_AFTER_DATES,
    Kind,
    Release,
    kind_of,
    original_columns,
)

FULL_ROWS: dict[Release, int] = {Release.REAL_DEVICE: 78_137, Release.EMULATOR: 63_991}
MALWARE_SHARE: dict[Release, float] = {
    Release.REAL_DEVICE: 41_382 / 78_137,
    Release.EMULATOR: 28_745 / 63_991,
}
#: Share of rows whose sha256 is a copy of another row's, with the opposite label.
CONFLICT_RATE = 1e-4
#: Below this many rows no conflicting sha256 duplicates are injected.
CONFLICT_MIN_ROWS = 2_000
#: Share of rows whose first date column holds `DATE_SENTINEL`.
SENTINEL_SHARE = 0.03
#: Share of `Package` values with a newline in the middle (all end with one).
EMBEDDED_NEWLINE_SHARE = 0.01
#: Share of emulator rows whose `Nr*` columns hold the string "None".
NONE_SHARE = 0.015
#: Emulator columns published as strings because some values are "None".
EMULATOR_TEXT_METRICS: tuple[str, ...] = tuple(
    c for c in STATIC_COLUMNS_AFTER_DATES if c.startswith("NrInt") or c == "NrServices"
)
FILE_STEMS: dict[Release, str] = {
    Release.REAL_DEVICE: "kronodroid-2021-real-v1",
    Release.EMULATOR: "kronodroid-2021-emu-v1",
}
FORMATS = ("csv", "parquet")

MALWARE_FAMILIES: tuple[str, ...] = (
    "Airpush",
    "MobiDash",
    "Hiddad",
    "Smsreg",
    "Boogr",
    "Agent",
    "Malap",
    "Dowgin",
    "Hqwar",
    "FakeInst",
    "Kuguo",
    "Joker",
    "Triada",
    "SmsPay",
    "Locker",
    "FakeToken",
    "Anubis",
    "Cerberus",
)
#: Families that scanners also attach to a few benign (grey-ware) apps.
_GREYWARE_FAMILIES = ("Airpush", "MobiDash", "Dowgin", "Kuguo")

_RELEASE_SALT = {Release.REAL_DEVICE: 1, Release.EMULATOR: 2}
_WORLD_SEED = 2021

_START_DAY = np.datetime64("2008-01-01", "D")
_END_DAY = np.datetime64("2020-12-31", "D")

# --- syscalls -------------------------------------------------------------------------------
#: Active in most apps (the runtime's own activity).
_CORE_SYSCALLS = (
    "read", "write", "close", "openat", "ioctl", "futex", "mmap2", "mprotect", "munmap",
    "madvise", "getuid32", "getpid", "gettid", "clock_gettime", "gettimeofday", "epoll_pwait",
    "fstat64", "fstatat64", "faccessat", "rt_sigprocmask", "prctl", "brk", "writev", "dup",
    "fcntl64", "_llseek", "lseek", "pread64", "sched_yield", "clone", "nanosleep",
    "getpriority", "setpriority", "recvfrom", "sendto", "getdents64", "readlinkat",
    "sigaltstack", "mremap", "fdatasync",
)  # fmt: skip
#: Raised by malware (networking, process control, file tampering).
_MALWARE_SYSCALLS = (
    "socket", "connect", "sendto", "recvfrom", "setsockopt", "getsockopt", "getsockname",
    "execve", "kill", "wait4", "pipe2", "dup3", "fchmodat", "unlinkat", "renameat", "uname",
    "sysinfo", "inotify_add_watch", "ptrace", "umask",
)  # fmt: skip
_N_OCCASIONAL_SYSCALLS = 60

# --- permissions ----------------------------------------------------------------------------
#: Android "dangerous" protection level (runtime permissions).
_DANGEROUS_PERMISSIONS = frozenset(
    (
        "ACCEPT_HANDOVER", "ACCESS_BACKGROUND_LOCATION", "ACCESS_COARSE_LOCATION",
        "ACCESS_FINE_LOCATION", "ACCESS_MEDIA_LOCATION", "ACTIVITY_RECOGNITION", "ADD_VOICEMAIL",
        "ANSWER_PHONE_CALLS", "BODY_SENSORS", "CALL_PHONE", "CAMERA", "GET_ACCOUNTS",
        "PROCESS_OUTGOING_CALLS", "READ_CALENDAR", "READ_CALL_LOG", "READ_CONTACTS",
        "READ_EXTERNAL_STORAGE", "READ_PHONE_NUMBERS", "READ_PHONE_STATE", "READ_SMS",
        "RECEIVE_MMS", "RECEIVE_SMS", "RECEIVE_WAP_PUSH", "RECORD_AUDIO", "SEND_SMS", "USE_SIP",
        "WRITE_CALENDAR", "WRITE_CALL_LOG", "WRITE_CONTACTS", "WRITE_EXTERNAL_STORAGE",
    )
)  # fmt: skip
#: Android "normal" protection level; every other permission counts as "signature".
_NORMAL_PERMISSIONS = frozenset(
    (
        "ACCESS_LOCATION_EXTRA_COMMANDS", "ACCESS_NETWORK_STATE", "ACCESS_NOTIFICATION_POLICY",
        "ACCESS_WIFI_STATE", "BLUETOOTH", "BLUETOOTH_ADMIN", "BROADCAST_STICKY",
        "CALL_COMPANION_APP", "CHANGE_NETWORK_STATE", "CHANGE_WIFI_MULTICAST_STATE",
        "CHANGE_WIFI_STATE", "DISABLE_KEYGUARD", "EXPAND_STATUS_BAR", "FOREGROUND_SERVICE",
        "GET_PACKAGE_SIZE", "GET_TASKS", "INSTALL_SHORTCUT", "INTERNET",
        "KILL_BACKGROUND_PROCESSES", "MANAGE_OWN_CALLS", "MODIFY_AUDIO_SETTINGS", "NFC",
        "NFC_PREFERRED_PAYMENT_INFO", "PERSISTENT_ACTIVITY", "QUERY_ALL_PACKAGES",
        "READ_SYNC_SETTINGS", "READ_SYNC_STATS", "RECEIVE_BOOT_COMPLETED", "REORDER_TASKS",
        "REQUEST_COMPANION_RUN_IN_BACKGROUND", "REQUEST_COMPANION_USE_DATA_IN_BACKGROUND",
        "REQUEST_DELETE_PACKAGES", "REQUEST_IGNORE_BATTERY_OPTIMIZATIONS",
        "REQUEST_PASSWORD_COMPLEXITY", "RESTART_PACKAGES", "SET_ALARM", "SET_WALLPAPER",
        "SET_WALLPAPER_HINTS", "TRANSMIT_IR", "UNINSTALL_SHORTCUT", "USE_BIOMETRIC",
        "USE_FINGERPRINT", "USE_FULL_SCREEN_INTENT", "VIBRATE", "WAKE_LOCK",
        "WRITE_SYNC_SETTINGS",
    )
)  # fmt: skip
#: Requested by a large share of all apps.
_COMMON_PERMISSIONS = (
    "INTERNET", "ACCESS_NETWORK_STATE", "WRITE_EXTERNAL_STORAGE", "WAKE_LOCK",
    "READ_EXTERNAL_STORAGE", "VIBRATE",
)  # fmt: skip
#: Requested by a noticeable minority of apps.
_FREQUENT_PERMISSIONS = (
    "READ_PHONE_STATE", "ACCESS_WIFI_STATE", "RECEIVE_BOOT_COMPLETED", "ACCESS_FINE_LOCATION",
    "ACCESS_COARSE_LOCATION", "CAMERA", "GET_ACCOUNTS", "FOREGROUND_SERVICE", "RECORD_AUDIO",
    "CALL_PHONE", "READ_CONTACTS", "SYSTEM_ALERT_WINDOW", "CHANGE_WIFI_STATE", "GET_TASKS",
    "BLUETOOTH", "MODIFY_AUDIO_SETTINGS", "INSTALL_SHORTCUT", "CHANGE_NETWORK_STATE",
)  # fmt: skip
#: Raised by malware (SMS fraud, persistence, device control, spying).
_MALWARE_PERMISSIONS = (
    "SEND_SMS", "RECEIVE_SMS", "READ_SMS", "READ_PHONE_STATE", "RECEIVE_BOOT_COMPLETED",
    "SYSTEM_ALERT_WINDOW", "GET_TASKS", "READ_CONTACTS", "CALL_PHONE", "WRITE_SETTINGS",
    "INSTALL_SHORTCUT", "REQUEST_INSTALL_PACKAGES", "BIND_DEVICE_ADMIN", "DISABLE_KEYGUARD",
    "KILL_BACKGROUND_PROCESSES", "CHANGE_WIFI_STATE", "MOUNT_UNMOUNT_FILESYSTEMS", "READ_LOGS",
    "PROCESS_OUTGOING_CALLS", "ACCESS_WIFI_STATE", "WRITE_EXTERNAL_STORAGE", "INTERNET",
)  # fmt: skip

# --- package names --------------------------------------------------------------------------
_TLDS = ("com", "org", "net", "io", "cn", "de", "ru", "me", "br", "jp")
_TLD_WEIGHTS = (0.72, 0.05, 0.04, 0.03, 0.05, 0.03, 0.03, 0.02, 0.02, 0.01)
_SYLLABLES = (
    "an", "bo", "ca", "da", "el", "fi", "go", "ha", "in", "jo", "ka", "lu", "me", "no", "or",
    "pa", "qu", "ra", "so", "ti", "un", "vi", "wa", "xe", "yo", "ze", "app", "soft", "game",
    "tech", "mob", "net", "droid", "play", "fun", "cool", "smart", "my", "best", "top",
    "photo", "music", "video", "chat", "pay", "map", "news", "zen", "pro", "lab",
)  # fmt: skip


def rows_for(release: Release, scale: float) -> int:
    """Rows of `release` at `scale` (1.0 = the published size), at least 1."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    return max(1, round(FULL_ROWS[release] * scale))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.log(p / (1.0 - p))


def _exact_mask(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """A boolean mask with exactly round(n * share) True values at random positions."""
    mask = np.zeros(n, dtype=bool)
    k = min(n, round(n * share))
    if k:
        mask[rng.choice(n, size=k, replace=False)] = True
    return mask


def _world(release: Release) -> np.random.Generator:
    """Column-level parameters: fixed per release, independent of the row seed."""
    return np.random.default_rng((_WORLD_SEED, _RELEASE_SALT[release]))


# --- column blocks --------------------------------------------------------------------------


def _syscalls(
    rng: np.random.Generator,
    world: np.random.Generator,
    activity: np.ndarray,
    mal: np.ndarray,
    drift: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    n = activity.shape[0]
    names = SYSCALL_COLUMNS
    k = len(names)
    core = np.isin(names, _CORE_SYSCALLS)
    boosted = np.isin(names, _MALWARE_SYSCALLS)
    newer = np.array([c.startswith("SYS_3") for c in names])
    others = np.flatnonzero(~core & ~boosted)
    occasional = np.zeros(k, dtype=bool)
    occasional[world.choice(others, size=_N_OCCASIONAL_SYSCALLS, replace=False)] = True

    base_p = np.exp(world.uniform(np.log(2e-4), np.log(4e-3), k))  # rare by default
    base_p[occasional] = np.exp(world.uniform(np.log(0.01), np.log(0.15), occasional.sum()))
    base_p[boosted] = world.uniform(0.05, 0.35, boosted.sum())
    base_p[core] = world.uniform(0.5, 0.95, core.sum())
    base_logit = _logit(base_p)
    mu = world.uniform(0.0, 1.5, k)
    mu[occasional] = world.uniform(0.5, 3.0, occasional.sum())
    mu[core | boosted] = world.uniform(1.5, 5.0, (core | boosted).sum())
    sigma = world.uniform(0.8, 1.5, k)
    logit_shift = np.where(boosted, world.uniform(1.0, 2.0, k), 0.0)
    mu_shift = np.where(boosted, world.uniform(0.2, 0.6, k), 0.0)
    # Newer apps: newer syscall numbers appear more often (and counts grow a little, below).
    logit_drift = np.where(newer, 2.5, world.normal(0.0, 0.3, k))

    columns: dict[str, np.ndarray] = {}
    total = np.zeros(n, dtype=np.int64)
    for j, name in enumerate(names):
        logit = base_logit[j] + 0.5 * activity + logit_shift[j] * mal + logit_drift[j] * drift
        active = np.flatnonzero(rng.random(n) < _expit(logit))
        values = np.zeros(n, dtype=np.int64)
        if active.size:
            log_count = (
                mu[j]
                + 0.6 * activity[active]
                + mu_shift[j] * mal[active]
                + 0.4 * drift[active]
                + sigma[j] * rng.standard_normal(active.size)
            )
            values[active] = np.ceil(np.exp(np.minimum(log_count, 16.0))).astype(np.int64)
        columns[name] = values
        total += values
    return columns, total


def _permissions(
    rng: np.random.Generator,
    world: np.random.Generator,
    appetite: np.ndarray,
    mal: np.ndarray,
    drift: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    n = appetite.shape[0]
    names = PERMISSION_COLUMNS
    k = len(names)
    common = np.isin(names, _COMMON_PERMISSIONS)
    frequent = np.isin(names, _FREQUENT_PERMISSIONS)
    boosted = np.isin(names, _MALWARE_PERMISSIONS)

    base_p = np.exp(world.uniform(np.log(5e-4), np.log(0.02), k))
    base_p[frequent] = world.uniform(0.04, 0.2, frequent.sum())
    base_p[common] = world.uniform(0.3, 0.7, common.sum())
    base_logit = _logit(base_p)
    logit_shift = np.where(boosted, world.uniform(1.4, 2.6, k), 0.0)
    logit_drift = world.normal(0.0, 0.6, k)

    flags: dict[str, np.ndarray] = {}
    dangerous = np.zeros(n, dtype=np.int64)
    normal = np.zeros(n, dtype=np.int64)
    signature = np.zeros(n, dtype=np.int64)
    for j, name in enumerate(names):
        logit = base_logit[j] + 0.9 * appetite + logit_shift[j] * mal + logit_drift[j] * drift
        flag = (rng.random(n) < _expit(logit)).astype(np.int64)
        flags[name] = flag
        if name in _DANGEROUS_PERMISSIONS:
            dangerous += flag
        elif name in _NORMAL_PERMISSIONS:
            normal += flag
        else:
            signature += flag

    nr_permissions = dangerous + normal + signature
    has_custom = rng.random(n) < _expit(-1.6 + 0.5 * appetite + 0.4 * mal)
    nr_custom = np.where(has_custom, rng.geometric(0.45, n), 0).astype(np.int64)
    totals = {
        "nr_permissions": nr_permissions,
        "normal": normal,
        "dangerous": dangerous,
        "signature": signature,
        "custom_yes": (nr_custom > 0).astype(np.int64),
        "nr_custom": nr_custom,
        "total_perm": nr_permissions + nr_custom,
    }
    return flags, totals


def _static(
    rng: np.random.Generator,
    release: Release,
    size: np.ndarray,
    mal: np.ndarray,
    y: np.ndarray,
) -> dict[str, np.ndarray]:
    n = size.shape[0]

    def lognormal(mean: np.ndarray | float, sd: float) -> np.ndarray:
        return np.exp(mean + sd * rng.standard_normal(n))

    c_size = np.clip(lognormal(15.0 + 1.2 * size - 0.3 * mal, 0.4), 5e3, 5e8).astype(np.int64)
    u_size = c_size + (c_size * lognormal(np.log(0.6), 0.5)).astype(np.int64)
    files = np.ceil(lognormal(6.2 + 0.8 * size, 0.7)).astype(np.int64)
    times = 1 + np.floor(lognormal(2.0 + 0.3 * y, 1.3)).astype(np.int64)
    contact_p = (0.03 if release is Release.REAL_DEVICE else 0.25) + 0.15 * np.minimum(mal, 1.0)
    ips = np.where(rng.random(n) < contact_p, 1 + rng.poisson(3.0, n), 0).astype(np.int64)

    int_act = rng.poisson(np.exp(0.2 + 0.5 * size))
    int_srv = rng.poisson(np.exp(-1.0 + 0.5 * size + 0.4 * mal))
    int_rcv = rng.poisson(np.exp(-0.8 + 0.5 * size + 0.6 * mal))
    activities = int_act + np.floor(lognormal(1.4 + 0.8 * size, 0.6)).astype(np.int64)
    scanners = 60 + rng.binomial(8, 0.55, n)

    # Detections: almost all malware flagged by several engines; a few benign by one or two.
    p_detect = np.where(y == 1, 0.75 * rng.beta(2.2, 3.5, n), 0.0)
    detections = rng.binomial(scanners, p_detect)
    detections = np.where((y == 1) & (rng.random(n) > 0.01), np.maximum(detections, 1), 0)
    benign_flagged = (y == 0) & (rng.random(n) < 0.03)
    detections = np.where(benign_flagged, rng.integers(1, 4, n), detections)
    detections = np.minimum(detections, np.floor(0.8 * scanners))

    return {
        "CFileSize": c_size,
        "UFileSize": u_size,
        "FilesInsideAPK": files,
        "TimesSubmitted": times,
        "NrContactedIps": ips,
        "Activities": activities.astype(np.int64),
        "NrIntServices": int_srv.astype(np.int64),
        "NrIntServicesActions": (int_srv + rng.poisson(0.3 * int_srv)).astype(np.int64),
        "NrIntActivities": int_act.astype(np.int64),
        "NrIntActivitiesActions": (int_act + rng.poisson(0.5 * int_act + 0.2)).astype(np.int64),
        "NrIntReceivers": int_rcv.astype(np.int64),
        "NrIntReceiversActions": (int_rcv + rng.poisson(1.5 * int_rcv)).astype(np.int64),
        "TotalIntentFilters": (int_act + int_srv + int_rcv).astype(np.int64),
        "NrServices": (int_srv + rng.poisson(np.exp(0.6 * size + 0.3 * mal))).astype(np.int64),
        "Scanners": scanners.astype(np.int64),
        "Detection_Ratio": detections / scanners,
    }


def _mal_family(rng: np.random.Generator, y: np.ndarray) -> pa.Array:
    n = y.shape[0]
    weights = 1.0 / np.arange(1, len(MALWARE_FAMILIES) + 1) ** 0.9
    family = rng.choice(len(MALWARE_FAMILIES), size=n, p=weights / weights.sum())
    grey = np.array([MALWARE_FAMILIES.index(f) for f in _GREYWARE_FAMILIES])
    family = np.where(y == 1, family, grey[rng.integers(0, grey.size, n)])
    named = (y == 1) | (rng.random(n) < 0.03)
    names = pa.array(MALWARE_FAMILIES).take(pa.array(family))
    return pc.if_else(pa.array(named), names, pa.nulls(n, pa.string()))


def _packages(rng: np.random.Generator, n: int) -> pa.Array:
    syl = pa.array(_SYLLABLES)

    def word() -> pa.Array:
        parts = [syl.take(pa.array(rng.integers(0, len(_SYLLABLES), n))) for _ in range(2)]
        return pc.binary_join_element_wise(*parts, "")

    tld = pa.array(_TLDS).take(pa.array(rng.choice(len(_TLDS), size=n, p=_TLD_WEIGHTS)))
    third = pc.if_else(pa.array(rng.random(n) < 0.4), word(), pa.nulls(n, pa.string()))
    name = pc.binary_join_element_wise(tld, word(), word(), third, ".", null_handling="skip")
    embedded = pa.array(_exact_mask(rng, n, EMBEDDED_NEWLINE_SHARE))
    name = pc.if_else(embedded, pc.binary_join_element_wise(name, word(), "\n"), name)
    return pc.binary_join_element_wise(name, pa.scalar(""), "\n")


def _mdy(days: np.ndarray) -> pa.Array:
    """Days since 2008-01-01 → "M/D/YYYY" strings without zero padding."""
    dates = _START_DAY + days.astype("timedelta64[D]")
    months = dates.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
    parts = [pc.cast(pa.array(v), pa.string()) for v in (month, day, year)]
    return pc.binary_join_element_wise(*parts, "/")


def _sha256(rng: np.random.Generator, n: int) -> np.ndarray:
    hexdigits = rng.bytes(32 * n).hex().encode("ascii")
    return np.frombuffer(hexdigits, dtype="S64").copy()


def _inject_conflicts(rng: np.random.Generator, sha: np.ndarray, y: np.ndarray) -> None:
    """Copy a few sha256 values onto rows of the opposite label (in place)."""
    n = y.shape[0]
    if n < CONFLICT_MIN_ROWS:
        return
    k = max(1, round(n * CONFLICT_RATE))
    malware, benign = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    k = min(k, malware.size, benign.size)
    m = rng.choice(malware, size=k, replace=False)
    b = rng.choice(benign, size=k, replace=False)
    malware_is_source = rng.random(k) < 0.5
    source = np.where(malware_is_source, m, b)
    target = np.where(malware_is_source, b, m)
    sha[target] = sha[source]


def _arrow_type(release: Release, column: str) -> pa.DataType:
    kind = kind_of(column)
    if kind in (Kind.TEXT, Kind.SHA256, Kind.DATE_MDY):
        return pa.string()
    if kind is Kind.RATIO:
        return pa.float64()
    if release is Release.EMULATOR and column in EMULATOR_TEXT_METRICS:
        return pa.string()
    return pa.int64()


def release_schema(release: Release) -> pa.Schema:
    """The Arrow schema `generate_release` produces (types as the original files carry them)."""
    return pa.schema([(c, _arrow_type(release, c)) for c in original_columns(release)])


def generate_release(release: Release, n_rows: int, seed: int) -> pa.Table:
    """One synthetic release with the original columns, order, types and quirks.

    Deterministic in (release, n_rows, seed); `seed` must be a non-negative integer.
    """
    release = Release(release)
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows!r}")
    n = int(n_rows)
    rng = np.random.default_rng((seed, _RELEASE_SALT[release]))
    world = _world(release)

    # Label: the exact malware share, at random positions.
    y = _exact_mask(rng, n, MALWARE_SHARE[release]).astype(np.int64)

    # Date position t in [0, 1]; benign apps lean a little newer than malware.
    t = np.where(y == 1, rng.beta(1.8, 1.9, n), rng.beta(2.2, 1.6, n))
    drift = 2.0 * t - 1.0  # -1 (2008) … +1 (2020)

    # Latent traits; maliciousness varies per app and fades for newer (stealthier) malware.
    size = rng.standard_normal(n)
    appetite = 0.4 * size + np.sqrt(1 - 0.4**2) * rng.standard_normal(n)
    activity = 0.3 * size + np.sqrt(1 - 0.3**2) * rng.standard_normal(n)
    mal = y * rng.gamma(4.0, 0.3, n) * (1.0 - 0.25 * drift)

    syscalls, nr_syscalls = _syscalls(rng, world, activity, mal, drift)
    flags, perm_totals = _permissions(rng, world, appetite, mal, drift)
    static = _static(rng, release, size, mal, y)

    span = int((_END_DAY - _START_DAY).astype(np.int64))
    first = np.floor(t * span).astype(np.int64)
    gap = np.where(rng.random(n) < 0.25, 0, np.ceil(rng.exponential(250.0, n))).astype(np.int64)
    second = np.minimum(first + gap, span)
    first_col, second_col = DATE_COLUMNS[release]
    sentinel = pa.array(_exact_mask(rng, n, SENTINEL_SHARE))
    dates = {
        first_col: pc.if_else(sentinel, pa.scalar(DATE_SENTINEL), _mdy(first)),
        second_col: _mdy(second),
    }

    sha = _sha256(rng, n)
    _inject_conflicts(rng, sha, y)

    columns: dict[str, object] = {
        PACKAGE_COLUMN: _packages(rng, n),
        LABEL_COLUMN: y,
        **syscalls,
        "nr_syscalls": nr_syscalls,
        **flags,
        **perm_totals,
        SHA256_COLUMN: pa.array(sha.astype(str)),
        **static,
        **dates,
        "MalFamily": _mal_family(rng, y),
    }

    if release is Release.EMULATOR:
        none_rows = pa.array(_exact_mask(rng, n, NONE_SHARE))
        for name in EMULATOR_TEXT_METRICS:
            as_text = pc.cast(pa.array(columns[name]), pa.string())
            columns[name] = pc.if_else(none_rows, pa.scalar("None"), as_text)

    schema = release_schema(release)
    arrays = []
    for field in schema:
        col = columns[field.name]
        arrays.append(
            col.cast(field.type) if isinstance(col, pa.Array) else pa.array(col, type=field.type)
        )
    return pa.Table.from_arrays(arrays, schema=schema)


def file_path(out_dir: Path, release: Release, fmt: str) -> Path:
    return Path(out_dir) / f"{FILE_STEMS[release]}.{fmt}"


def write_release_files(
    out_dir: Path, *, scale: float = 1.0, seed: int = 0, fmt: str = "csv"
) -> dict[Release, list[Path]]:
    """Write both releases into `out_dir` under their original file names.

    CSV is written by pyarrow with every string quoted, so embedded newlines survive; read it
    back with `ParseOptions(newlines_in_values=True)`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[Release, list[Path]] = {}
    for release in Release:
        table = generate_release(release, rows_for(release, scale), seed)
        path = file_path(out_dir, release, fmt)
        if fmt == "csv":
            options = pacsv.WriteOptions(
                include_header=True, batch_size=8192, quoting_style="needed"
            )
            pacsv.write_csv(table, path, write_options=options)
        else:
            pq.write_table(table, path)
        written[release] = [path]
        del table
    return written
