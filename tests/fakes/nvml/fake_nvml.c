/*
 * fake_nvml.c -- a scripted stand-in for NVIDIA's libnvidia-ml.so.1 (NVML).
 *
 * Lets the *real* `pynvml` (PyPI `nvidia-ml-py`) and anything built on it (Zeus,
 * CodeCarbon, our own meters) run on a machine without a GPU.  Every reading is a
 * deterministic function of a plain-text scenario file and of wall-clock time, so
 * a test knows the exact truth (in particular the energy counter is the exact
 * integral of the scripted power curve).
 *
 * Build:
 *   gcc -O2 -Wall -shared -fPIC -fvisibility=hidden -Wl,-soname,libnvidia-ml.so.1 \
 *       -o libnvidia-ml.so.1 fake_nvml.c -lm -lpthread
 *
 * Use (either):
 *   - a fresh process:  LD_LIBRARY_PATH=<dir holding libnvidia-ml.so.1>
 *                       FAKE_NVML_SCENARIO=<scenario file>
 *                       [FAKE_NVML_STATE=<state file>]  (settings persist across
 *                       processes; see STATE FILE below)
 *   - in-process, before pynvml's first nvmlInit:
 *       ctypes.CDLL("<dir>/libnvidia-ml.so.1", mode=ctypes.RTLD_GLOBAL)
 *     (glibc's dlopen("libnvidia-ml.so.1") then matches the loaded object by soname).
 *
 * ============================== SCENARIO FORMAT ==============================
 * The file named by $FAKE_NVML_SCENARIO is (re-)read by every successful call of
 * nvmlInit / nvmlInit_v2 / nvmlInitWithFlags, so one process can switch scenarios
 * between nvmlShutdown and the next nvmlInit (handles stay pointers into a fixed
 * table: a handle whose index no longer exists becomes invalid).
 *
 * One directive per line: a keyword, then whitespace-separated values.  Blank
 * lines and lines whose first non-blank character is '#' are ignored (there are
 * no trailing comments).  Unknown keywords, missing or malformed values make the
 * init fail with NVML_ERROR_UNKNOWN (999) and a "fake_nvml: <file>:<line>: ..."
 * message on stderr.  Integers may be decimal or 0x-hex.  All times t are in
 * seconds relative to start_epoch_s (t = CLOCK_REALTIME - start_epoch_s).
 *
 * Global directives (before the first `device` line):
 *   fake_nvml_scenario 1          optional format version tag (must be 1)
 *   start_epoch_s FLOAT           CLOCK_REALTIME seconds of t = 0
 *                                 (default: the time the file is read)
 *   driver_version STRING         default 550.54.15
 *   nvml_version STRING           default 12.550.54.15
 *   cuda_driver_version INT       default 12040
 *   counter_period_s FLOAT        default energy-counter update period for all
 *                                 devices (default 0 = continuous)
 *   power_period_s FLOAT          default power-sensor update period for all
 *                                 devices (default 0 = continuous)
 *   error FUNCTION CODE [START_S END_S]
 *                                 FUNCTION returns CODE for every device (and the
 *                                 system/init calls), optionally only while
 *                                 START_S <= t < END_S
 *
 * Device directives (`device` starts the next device: index 0, 1, ...; every
 * following line until the next `device` describes it):
 *   device
 *   name REST-OF-LINE             default "NVIDIA A100-SXM4-80GB"
 *   uuid STRING                   default GPU-fa4e0000-0000-0000-0000-00000000000<i>
 *   arch INT                      NVML_DEVICE_ARCH_* (5 Volta, 7 Ampere, 9 Hopper);
 *                                 default 7
 *   energy_counter 0|1            0: nvmlDeviceGetTotalEnergyConsumption (and field
 *                                 83) -> NVML_ERROR_NOT_SUPPORTED; default 1
 *   energy_offset_mj UINT64       counter value at t <= 0; default 0
 *   counter_period_s FLOAT        counter quantisation period for this device: the
 *                                 counter shows the energy at floor(t/P)*P;
 *                                 0 = continuous
 *   power_period_s FLOAT          power-sensor quantisation for this device: power
 *                                 readings show P(floor(t/P)*P) (real boards update
 *                                 every 20-100 ms; pollers that de-duplicate equal
 *                                 readings, like Zeus's PowerMonitor, need this)
 *   power_usage averaged|instant  what nvmlDeviceGetPowerUsage reports: `averaged`
 *                                 (default) the mean of P over [tp-1, tp], like
 *                                 field 185 -- NVML documents a 1 s average for
 *                                 Ampere and later except GA100; `instant` P(tp),
 *                                 as on GA100 and older architectures
 *   unsupported_field ID [ID ...] these nvmlDeviceGetFieldValues field ids answer
 *                                 NVML_ERROR_NOT_SUPPORTED in their entry's
 *                                 nvmlReturn while the call itself succeeds, as
 *                                 the real driver does for a field the GPU or
 *                                 driver lacks (e.g. 186 POWER_INSTANT on older
 *                                 GPUs/drivers); repeatable.  (`error
 *                                 nvmlDeviceGetFieldValues 3` instead fails the
 *                                 whole call.)
 *   power T0 W0 [T1 W1 ...]       power (W) as a piecewise-linear function of t:
 *                                 linear between points, held at W0 before T0 and
 *                                 at the last value after the last point.  A single
 *                                 value `power W` means constant.  Repeated `power`
 *                                 lines append points; times must not decrease.
 *                                 Two points at one time make a step (e.g.
 *                                 `power 5 100 5 300`: 300 W just after t = 5),
 *                                 integrated exactly.  default: constant 100 W
 *   temperature T0 C0 [T1 C1 ...] same shape as power, degrees C (rounded);
 *                                 `temperature C` = constant; default 40
 *   clocks SM_MHZ MEM_MHZ         default 1410 1593 (GRAPHICS reads as SM;
 *                                 VIDEO -> NOT_SUPPORTED)
 *   memory TOTAL_B USED_B [RESERVED_B]
 *                                 default 85899345920 0 0; v1 free = total - used,
 *                                 v2 free = total - reserved - used
 *   utilization GPU_PCT MEM_PCT   default 0 0
 *   power_limit_mw CURRENT MIN MAX [DEFAULT [ENFORCED]]
 *                                 default 400000 100000 400000 (DEFAULT and
 *                                 ENFORCED default to CURRENT).  ENFORCED caps
 *                                 the power the fake reports and integrates (see
 *                                 Readings); MIN..MAX is the range
 *                                 nvmlDeviceSetPowerManagementLimit accepts
 *   settable 0|1|no|yes           0/no: every setter (below) returns
 *                                 NVML_ERROR_NO_PERMISSION (4), as for a non-root
 *                                 user; default 1
 *   supported_memory_clocks MHZ [MHZ ...]
 *                                 nvmlDeviceGetSupportedMemoryClocks, in this
 *                                 order (NVML lists them descending); default
 *                                 1593 1215 405 (A100); the memory locked-clock
 *                                 range is min..max of this list
 *   supported_graphics_clocks MHZ [MHZ ...]
 *                                 nvmlDeviceGetSupportedGraphicsClocks, the same
 *                                 list for every supported memory clock; default
 *                                 1410 1395 ... 225 210 (step 15, descending); the
 *                                 SM locked-clock range is min..max of this list
 *   sm_locked MIN_MHZ MAX_MHZ | none
 *   mem_locked MIN_MHZ MAX_MHZ | none
 *                                 locked SM (graphics) / memory clocks at init, as
 *                                 if set with nvmlDeviceSet{Gpu,Memory}LockedClocks
 *                                 (not range-checked); default none
 *   mig CURRENT [PENDING]         nvmlDeviceGetMigMode; default 0 (PENDING =
 *                                 CURRENT)
 *   persistence 0|1               default 0
 *   throttle START_S END_S MASK [SM_MHZ]
 *                                 while START_S <= t < END_S the clocks-event
 *                                 (throttle) reasons include MASK (overlapping
 *                                 intervals OR together); if SM_MHZ is given the
 *                                 SM/graphics clock reads SM_MHZ (lowest wins);
 *                                 repeatable; outside all intervals reasons = 0
 *   c2c 0|1                       nvmlDeviceGetC2cModeInfoV.isC2cEnabled; without
 *                                 this line that call is NOT_SUPPORTED (non-Grace)
 *   compute_mode INT              default 0 (NVML_COMPUTEMODE_DEFAULT)
 *   process PID|self USED_MIB [START_S END_S]
 *                                 a compute process on this device (pid, or
 *                                 `self`: the calling process, as a run's own
 *                                 CUDA context is listed; GPU memory in MiB),
 *                                 listed by
 *                                 nvmlDeviceGetComputeRunningProcesses while
 *                                 START_S <= t < END_S (always without them);
 *                                 repeatable
 *   error FUNCTION CODE [START_S END_S]
 *                                 as the global one, for this device's handle only
 *
 * FUNCTION is the exported C symbol (e.g. nvmlDeviceGetPowerUsage); it also
 * matches the symbol with a trailing _vN removed (`nvmlDeviceGetCount` matches
 * nvmlDeviceGetCount_v2), and `nvmlInit` matches all three init entry points.
 * CODE 3 is NVML_ERROR_NOT_SUPPORTED, 999 NVML_ERROR_UNKNOWN, 15 GPU_IS_LOST...
 *
 * Semantics common to all calls: before init (or after the last shutdown) every
 * call but nvmlErrorString/nvmlInit* returns NVML_ERROR_UNINITIALIZED (1); an
 * unknown handle, index or UUID, or a NULL output pointer returns
 * NVML_ERROR_INVALID_ARGUMENT (2); a too small string buffer returns
 * NVML_ERROR_INSUFFICIENT_SIZE (7).  Without $FAKE_NVML_SCENARIO, or if the file
 * cannot be opened, init returns NVML_ERROR_DRIVER_NOT_LOADED (9), like a machine
 * without the driver.  Init/shutdown are reference counted like the real NVML.
 *
 * Readings.  Pc(t) = min(P(t), L(t)) is the scripted power capped by the enforced
 * power limit L(t) in force at t (the scenario's ENFORCED until a setter changes
 * it; L is piecewise constant in time and every change is remembered, so the
 * counter stays continuous and monotonic across limit changes):
 *   nvmlDeviceGetPowerUsage          power_usage averaged (default): the mean of Pc
 *                                    over [tp-1, tp] in mW, as field 185;
 *                                    power_usage instant: round(1000 * Pc(tp)) mW
 *                                    (tp = t quantised by power_period_s)
 *   nvmlDeviceGetTotalEnergyConsumption
 *                                    offset + floor(1000 * E(tq)) mJ where
 *                                    E(t) = integral of Pc over [0, t] (0 if t<=0,
 *                                    exact for the piecewise-linear P) and tq = t
 *                                    quantised by counter_period_s
 *   nvmlDeviceGetFieldValues         185 POWER_AVERAGE: mean of Pc over [tp-1, tp];
 *                                    186 POWER_INSTANT: Pc(tp) (scope GPU or MODULE;
 *                                    MEMORY scope -> NOT_SUPPORTED); 83 total
 *                                    energy; 187 MIN, 188 MAX, 189 DEFAULT, 190
 *                                    CURRENT power limit (190 follows the setter);
 *                                    others, and those named by unsupported_field,
 *                                    NOT_SUPPORTED in the entry's nvmlReturn
 *   nvmlDeviceGetCurrentClocksEventReasons (and ...ThrottleReasons)
 *                                    the OR of the throttle intervals at t, plus
 *                                    0x4 SW_POWER_CAP while the cap binds
 *                                    (P(t) > L(t))
 *   nvmlDeviceGetClockInfo           SM/GRAPHICS: the `clocks` SM value clamped
 *                                    into the SM locked range (if locked), then
 *                                    lowered by a throttle SM_MHZ (slowdown beats
 *                                    a lock, as on hardware); MEM: the `clocks`
 *                                    MEM value clamped into the memory locked
 *                                    range (if locked)
 *   nvmlDeviceGetPowerManagementLimit / ...GetEnforcedPowerLimit
 *                                    CURRENT / ENFORCED (both the value set by
 *                                    nvmlDeviceSetPowerManagementLimit once set);
 *                                    ...LimitConstraints: MIN, MAX;
 *                                    ...DefaultLimit: DEFAULT
 *   nvmlDeviceGetSupportedMemoryClocks(dev, *count, *clocks)
 *   nvmlDeviceGetSupportedGraphicsClocks(dev, memMHz, *count, *clocks)
 *                                    NVML's size protocol: if *count is smaller
 *                                    than the list (e.g. 0 with clocks NULL, as
 *                                    pynvml's first call) *count = its length and
 *                                    NVML_ERROR_INSUFFICIENT_SIZE (7); else the list
 *                                    is copied and *count = its length.  A memMHz
 *                                    not in supported_memory_clocks ->
 *                                    NVML_ERROR_NOT_FOUND (6), as nvml.h documents
 *   nvmlDeviceGetComputeRunningProcesses_v2/_v3
 *                                    the `process` lines active at t, with NVML's
 *                                    size protocol (INSUFFICIENT_SIZE and the
 *                                    count when *count is too small); graphics
 *                                    processes: always none
 *
 * Setters (each can also be failed with an `error` line, e.g. `error
 * nvmlDeviceSetGpuLockedClocks 3` for a GPU that does not support it):
 *   nvmlDeviceSetPowerManagementLimit(dev, unsigned int limit_mW)
 *                                    NO_PERMISSION (4) unless settable;
 *                                    INVALID_ARGUMENT (2) outside [MIN, MAX]; else
 *                                    CURRENT = ENFORCED = limit from now on
 *   nvmlDeviceSetGpuLockedClocks(dev, unsigned int minMHz, unsigned int maxMHz)
 *   nvmlDeviceSetMemoryLockedClocks(dev, unsigned int minMHz, unsigned int maxMHz)
 *                                    NO_PERMISSION unless settable; INVALID_ARGUMENT
 *                                    if min > max or either is outside min..max of
 *                                    the supported graphics / memory clocks (the
 *                                    NVML_CLOCK_LIMIT_ID_* specials included); else
 *                                    locks the SM / memory clock to [min, max]
 *   nvmlDeviceResetGpuLockedClocks(dev), nvmlDeviceResetMemoryLockedClocks(dev)
 *                                    NO_PERMISSION unless settable; else unlocks
 *                                    (succeeds when nothing was locked too)
 * Settings survive nvmlShutdown/nvmlInit within a process (as the driver keeps
 * them), and, with $FAKE_NVML_STATE, across processes.
 *
 * ================================ STATE FILE =================================
 * $FAKE_NVML_STATE (optional) names a file holding the settable state, like the
 * driver's view of the GPUs, shared by every process that names it:
 *   - nvmlInit: if the file exists its values override the scenario's (and this
 *     process's earlier settings); if it does not, the scenario's values hold.  A
 *     malformed file fails the init with NVML_ERROR_UNKNOWN and a message.
 *   - before every per-device call the file is stat()ed; if another process has
 *     rewritten it since this process last read or wrote it, it is re-read (a
 *     removed file leaves the settings as they are).
 *   - after every successful setter the whole state (every device) is rewritten
 *     atomically (temp file + rename; last writer wins).  If that fails the
 *     setter undoes its change and returns NVML_ERROR_UNKNOWN.
 * Without $FAKE_NVML_STATE the settings live in the process only.
 *
 * Format: '#' comments and blank lines ignored; then
 *   fake_nvml_state 1               format version (optional)
 *   start_epoch_s EPOCH             the scenario epoch the energies below were
 *                                   computed against (optional)
 *   device INDEX KEY VALUE...       one line per device; every KEY is optional
 *                                   (a missing one keeps the scenario's value),
 *                                   devices beyond the scenario's are ignored
 * with KEYs
 *   power_limit_mw MW               CURRENT limit
 *   enforced_power_limit_mw MW      ENFORCED limit (default: power_limit_mw)
 *   sm_locked MIN MAX | none        SM locked clocks
 *   mem_locked MIN MAX | none       memory locked clocks
 *   limit_since_epoch_s EPOCH       CLOCK_REALTIME of the last limit change: the
 *                                   limit holds from then on (before then, what
 *                                   this process knew); without it the limit
 *                                   holds for all t
 *   energy_at_since_j J             E at limit_since_epoch_s, used when
 *                                   start_epoch_s matches the scenario's (keeps
 *                                   one counter across processes); otherwise E
 *                                   there is computed from what this process knew
 * The fake writes e.g.
 *   fake_nvml_state 1
 *   start_epoch_s 1712345000.000000000
 *   device 0 power_limit_mw 300000 enforced_power_limit_mw 300000 sm_locked 1200 1410 mem_locked none limit_since_epoch_s 1712345010.250000000 energy_at_since_j 2500
 *   device 1 power_limit_mw 400000 enforced_power_limit_mw 400000 sm_locked none mem_locked none
 * =============================================================================
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NVML_API __attribute__((visibility("default")))

typedef int nvmlReturn_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_ALREADY_INITIALIZED = 5,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_INSUFFICIENT_POWER = 8,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_IRQ_ISSUE = 11,
    NVML_ERROR_LIBRARY_NOT_FOUND = 12,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_CORRUPTED_INFOROM = 14,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_RESET_REQUIRED = 16,
    NVML_ERROR_OPERATING_SYSTEM = 17,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
    NVML_ERROR_IN_USE = 19,
    NVML_ERROR_MEMORY = 20,
    NVML_ERROR_NO_DATA = 21,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

/* ------------------------------------------------------------------ NVML ABI */

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;
#define nvmlMemory_v2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24)))

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

typedef struct {
    unsigned int version;
    unsigned int sensorType;
    int temperature;
} nvmlTemperature_v1_t;
#define nvmlTemperature_v1 ((unsigned int)(sizeof(nvmlTemperature_v1_t) | (1u << 24)))

typedef struct {
    unsigned int isC2cEnabled;
} nvmlC2cModeInfo_v1_t;

typedef union {
    double dVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    int siVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

enum { NVML_VALUE_TYPE_UNSIGNED_INT = 1, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3 };
enum { NVML_CLOCK_GRAPHICS = 0, NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2, NVML_CLOCK_VIDEO = 3 };
enum { NVML_TEMPERATURE_GPU = 0 };
enum { NVML_POWER_SCOPE_GPU = 0, NVML_POWER_SCOPE_MODULE = 1 };
#define NVML_CLOCKS_EVENT_REASON_SW_POWER_CAP 0x4ULL
enum {
    NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION = 83,
    NVML_FI_DEV_POWER_AVERAGE = 185,
    NVML_FI_DEV_POWER_INSTANT = 186,
    NVML_FI_DEV_POWER_MIN_LIMIT = 187,
    NVML_FI_DEV_POWER_MAX_LIMIT = 188,
    NVML_FI_DEV_POWER_DEFAULT_LIMIT = 189,
    NVML_FI_DEV_POWER_CURRENT_LIMIT = 190,
};

/* -------------------------------------------------------------- scenario state */

#define MAX_DEVICES 16
#define MAX_POWER_POINTS 4096
#define MAX_TEMP_POINTS 256
#define MAX_THROTTLE 1024
#define MAX_ERRORS 64
#define MAX_FIELDS 64
#define MAX_CLOCKS 512
#define MAX_SEGMENTS 64
#define MAX_PROCESSES 32
#define STR_LEN 128

typedef struct {
    double t, v;
} point_t;

typedef struct {
    char fn[STR_LEN];
    int code;
    double start, end;
} inj_error_t;

typedef struct {
    unsigned int pid; /* 0: the calling process (`self`) */
    unsigned long long used_mib;
    double start, end;
} process_t;

typedef struct {
    double start, end;
    unsigned long long mask;
    unsigned int sm_clock; /* 0 = unchanged */
} throttle_t;

/* the enforced power limit from time `start` on; energy_j = E(start) (the counter's energy,
 * offset excluded, at the start of the segment) */
typedef struct {
    double start; /* -INFINITY for the first segment */
    unsigned int limit_mw;
    double energy_j;
} limit_seg_t;

/* what the setters change (and the state file persists) */
typedef struct {
    unsigned int pl_current, pl_enforced;
    int sm_locked;
    unsigned int sm_min, sm_max;
    int mem_locked;
    unsigned int mem_min, mem_max;
    int n_segs; /* >= 1; segs[n_segs - 1].limit_mw == pl_enforced */
    limit_seg_t segs[MAX_SEGMENTS];
} dev_settings_t;

typedef struct fake_device {
    char name[STR_LEN];
    char uuid[STR_LEN];
    unsigned int arch;
    int energy_supported;
    unsigned long long energy_offset_mj;
    int has_period;
    double counter_period_s;
    int has_power_period;
    double power_period_s;
    int power_usage_instant; /* 0: GetPowerUsage is the 1 s average (default) */
    int n_unsupported_fields;
    unsigned int unsupported_fields[MAX_FIELDS];
    int n_power;
    point_t power[MAX_POWER_POINTS];
    int n_temp;
    point_t temp[MAX_TEMP_POINTS];
    unsigned int sm_clock, mem_clock;
    unsigned long long mem_total, mem_used, mem_reserved;
    unsigned int util_gpu, util_mem;
    unsigned int pl_min, pl_max, pl_default;
    dev_settings_t st; /* power limit (current, enforced, history) and locked clocks */
    int settable;      /* 0: the setters return NVML_ERROR_NO_PERMISSION */
    int n_mem_clocks, n_gfx_clocks;
    unsigned int mem_clocks[MAX_CLOCKS], gfx_clocks[MAX_CLOCKS];
    unsigned int mig_current, mig_pending;
    unsigned int persistence;
    int n_throttle;
    throttle_t throttle[MAX_THROTTLE];
    int c2c; /* -1 = NOT_SUPPORTED */
    unsigned int compute_mode;
    int n_processes;
    process_t processes[MAX_PROCESSES];
    int n_errors;
    inj_error_t errors[MAX_ERRORS];
} fake_device;

typedef struct {
    long long epoch_sec; /* start_epoch_s split for precision */
    double epoch_frac;
    char driver_version[STR_LEN];
    char nvml_version[STR_LEN];
    int cuda_driver_version;
    double counter_period_s;
    double power_period_s;
    int n_errors;
    inj_error_t errors[MAX_ERRORS];
    unsigned int n_devices;
    fake_device devices[MAX_DEVICES];
} scenario_t;

typedef struct nvmlDevice_st *nvmlDevice_t; /* opaque to callers; really fake_device* */

static scenario_t g_cur;  /* live state, handles point into g_cur.devices */
static scenario_t g_next; /* parse target */
static int g_refcount;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---------------------------------------------------------------- time & maths */

static double now_rel(const scenario_t *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)(ts.tv_sec - s->epoch_sec) + ((double)ts.tv_nsec * 1e-9 - s->epoch_frac);
}

/* value of a piecewise-linear curve at t (held before the first / after the last point) */
static double curve_at(const point_t *p, int n, double t)
{
    if (n <= 0)
        return 0.0;
    if (t <= p[0].t)
        return p[0].v;
    for (int i = 1; i < n; i++) {
        if (t < p[i].t) {
            double dt = p[i].t - p[i - 1].t;
            if (dt <= 0.0)
                return p[i].v;
            return p[i - 1].v + (p[i].v - p[i - 1].v) * (t - p[i - 1].t) / dt;
        }
    }
    return p[n - 1].v;
}

/* integral of min(P, cap_w) over one linear piece [x, y] of the curve (no breakpoint strictly
 * inside); cap_w may be INFINITY.  The piece's values at x+ and y- are extrapolated from two
 * interior points, so a step (two points at one time) at either end is handled exactly. */
static double piece_integral(const point_t *p, int n, double x, double y, double cap_w)
{
    double w = y - x, mid = curve_at(p, n, 0.5 * (x + y));
    if (!(cap_w < INFINITY))
        return mid * w;
    double q1 = curve_at(p, n, x + 0.25 * w), q3 = curve_at(p, n, x + 0.75 * w);
    double half = 0.5 * (q3 - q1), lo = q1 - half, hi = q3 + half; /* P(x+), P(y-) */
    if (lo <= cap_w && hi <= cap_w)
        return mid * w; /* never capped: the same arithmetic as without a cap */
    if (lo >= cap_w && hi >= cap_w)
        return cap_w * w;
    double f = (cap_w - lo) / (hi - lo); /* fraction of the piece where P crosses the cap */
    if (lo < cap_w)                      /* rising: below, then capped */
        return 0.5 * (lo + cap_w) * f * w + cap_w * (1.0 - f) * w;
    return cap_w * f * w + 0.5 * (cap_w + hi) * (1.0 - f) * w; /* falling: capped, then below */
}

/* integral of min(P, cap_w) over [a, b], a <= b, exact for the piecewise-linear shape */
static double curve_integral(const point_t *p, int n, double a, double b, double cap_w)
{
    if (n <= 0 || b <= a)
        return 0.0;
    /* breakpoints strictly inside (a, b) split the interval into linear pieces; a linear
     * piece's mean is its midpoint value, evaluated away from the breakpoints so that a
     * step (two points at one time) is integrated exactly too */
    double total = 0.0, x = a;
    for (int i = 0; i < n && x < b; i++) {
        if (p[i].t <= x)
            continue;
        double y = p[i].t < b ? p[i].t : b;
        total += piece_integral(p, n, x, y, cap_w);
        x = y;
    }
    if (x < b)
        total += piece_integral(p, n, x, b, cap_w);
    return total;
}

static double mw_to_w(unsigned int mw) { return (double)mw / 1000.0; }

/* the enforced-limit segment in force at t (the first one extends back to -infinity) */
static int seg_at(const fake_device *d, double t)
{
    int k = 0;
    for (int i = 1; i < d->st.n_segs && d->st.segs[i].start <= t; i++)
        k = i;
    return k;
}

static double limit_w_at(const fake_device *d, double t)
{
    return mw_to_w(d->st.segs[seg_at(d, t)].limit_mw);
}

/* E(t): integral over [0, t] of min(P, enforced limit in force) (0 for t <= 0) */
static double energy_j(const fake_device *d, double t)
{
    if (t <= 0.0)
        return 0.0;
    const limit_seg_t *sg = &d->st.segs[seg_at(d, t)];
    double a = sg->start > 0.0 ? sg->start : 0.0;
    if (t <= a)
        return sg->energy_j;
    return sg->energy_j + curve_integral(d->power, d->n_power, a, t, mw_to_w(sg->limit_mw));
}

/* integral of the capped power over [a, b] across limit changes */
static double capped_between(const fake_device *d, double a, double b)
{
    double total = 0.0;
    for (int k = 0; k < d->st.n_segs; k++) {
        double lo = k == 0 ? -INFINITY : d->st.segs[k].start;
        double hi = k + 1 < d->st.n_segs ? d->st.segs[k + 1].start : INFINITY;
        lo = lo > a ? lo : a;
        hi = hi < b ? hi : b;
        if (hi > lo)
            total += curve_integral(d->power, d->n_power, lo, hi, mw_to_w(d->st.segs[k].limit_mw));
    }
    return total;
}

/* a new enforced limit from time t on: a new segment whose energy is E(t) (or `energy`, a
 * value another process computed, when have_energy), so the counter stays continuous */
static void push_limit(fake_device *d, double t, unsigned int limit_mw, int have_energy,
                       double energy)
{
    dev_settings_t *st = &d->st;
    double e = have_energy ? energy : energy_j(d, t);
    while (st->n_segs > 1 && st->segs[st->n_segs - 1].start >= t)
        st->n_segs--;
    limit_seg_t *last = &st->segs[st->n_segs - 1];
    if (last->start >= t) { /* a first segment left after dropping old history: replace it */
        last->start = t;
        last->limit_mw = limit_mw;
        last->energy_j = e;
    } else if (last->limit_mw != limit_mw || have_energy) {
        if (st->n_segs == MAX_SEGMENTS) { /* drop the oldest change */
            memmove(&st->segs[0], &st->segs[1], sizeof(limit_seg_t) * (MAX_SEGMENTS - 1));
            st->n_segs--;
        }
        st->segs[st->n_segs].start = t;
        st->segs[st->n_segs].limit_mw = limit_mw;
        st->segs[st->n_segs].energy_j = e;
        st->n_segs++;
    }
    st->pl_enforced = limit_mw;
}

/* the limit history of a freshly configured device: `limit_mw` for all time */
static void reset_limit_history(fake_device *d, unsigned int limit_mw)
{
    d->st.n_segs = 1;
    d->st.segs[0].start = -INFINITY;
    d->st.segs[0].limit_mw = limit_mw;
    d->st.segs[0].energy_j = 0.0;
    d->st.pl_enforced = limit_mw;
}

static double device_period(const scenario_t *s, const fake_device *d)
{
    return d->has_period ? d->counter_period_s : s->counter_period_s;
}

static double power_time(const scenario_t *s, const fake_device *d, double t)
{
    double period = d->has_power_period ? d->power_period_s : s->power_period_s;
    return period > 0.0 ? floor(t / period) * period : t;
}

static unsigned long long counter_mj(const scenario_t *s, const fake_device *d, double t)
{
    double period = device_period(s, d);
    if (period > 0.0)
        t = floor(t / period) * period;
    return d->energy_offset_mj + (unsigned long long)floor(1000.0 * energy_j(d, t));
}

/* min(P(t), enforced limit at t) in mW */
static unsigned int power_mw(const fake_device *d, double t)
{
    double w = fmin(curve_at(d->power, d->n_power, t), limit_w_at(d, t));
    return (unsigned int)llround(1000.0 * w);
}

static unsigned int average_power_mw(const fake_device *d, double t)
{
    /* mean of the capped power over [t-1, t]; before t = 0 the first power value is held */
    double a = t - 1.0, e, p0 = curve_at(d->power, d->n_power, 0.0);
    if (a >= 0.0)
        e = capped_between(d, a, t);
    else if (t <= 0.0)
        e = fmin(p0, limit_w_at(d, t)) * (t - a);
    else
        e = fmin(p0, limit_w_at(d, a)) * (-a) + capped_between(d, 0.0, t);
    return (unsigned int)llround(1000.0 * e);
}

static int field_unsupported(const fake_device *d, unsigned int field_id)
{
    for (int i = 0; i < d->n_unsupported_fields; i++)
        if (d->unsupported_fields[i] == field_id)
            return 1;
    return 0;
}

static unsigned long long throttle_mask(const fake_device *d, double t, unsigned int *sm_clock)
{
    unsigned long long mask = 0;
    for (int i = 0; i < d->n_throttle; i++) {
        const throttle_t *th = &d->throttle[i];
        if (t >= th->start && t < th->end) {
            mask |= th->mask;
            if (sm_clock && th->sm_clock && th->sm_clock < *sm_clock)
                *sm_clock = th->sm_clock;
        }
    }
    return mask;
}

/* throttle intervals, plus SW_POWER_CAP while the scripted power exceeds the enforced limit */
static unsigned long long clock_event_mask(const fake_device *d, double t)
{
    unsigned long long mask = throttle_mask(d, t, NULL);
    if (curve_at(d->power, d->n_power, t) > limit_w_at(d, t))
        mask |= NVML_CLOCKS_EVENT_REASON_SW_POWER_CAP;
    return mask;
}

static unsigned int clamp_clock(unsigned int v, int locked, unsigned int lo, unsigned int hi)
{
    if (!locked)
        return v;
    return v < lo ? lo : v > hi ? hi : v;
}

/* ------------------------------------------------------------- error injection */

static int name_matches(const char *pattern, const char *fn)
{
    if (strcmp(pattern, fn) == 0)
        return 1;
    /* fn without a trailing _v<digits> */
    const char *u = strrchr(fn, '_');
    if (u && u[1] == 'v' && u[2] && strspn(u + 2, "0123456789") == strlen(u + 2)) {
        size_t len = (size_t)(u - fn);
        if (strlen(pattern) == len && strncmp(pattern, fn, len) == 0)
            return 1;
    }
    return 0;
}

static int find_error(const inj_error_t *errs, int n, const char *fn, double t)
{
    for (int i = 0; i < n; i++)
        if (name_matches(errs[i].fn, fn) && t >= errs[i].start && t < errs[i].end)
            return errs[i].code;
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------- parsing */

static void set_defaults(scenario_t *s)
{
    memset(s, 0, sizeof(*s));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->epoch_sec = ts.tv_sec;
    s->epoch_frac = (double)ts.tv_nsec * 1e-9;
    snprintf(s->driver_version, STR_LEN, "%s", "550.54.15");
    snprintf(s->nvml_version, STR_LEN, "%s", "12.550.54.15");
    s->cuda_driver_version = 12040;
}

static void device_defaults(fake_device *d, unsigned int index)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->name, STR_LEN, "%s", "NVIDIA A100-SXM4-80GB");
    snprintf(d->uuid, STR_LEN, "GPU-fa4e0000-0000-0000-0000-%012u", index);
    d->arch = 7;
    d->energy_supported = 1;
    d->n_power = 1;
    d->power[0].t = 0.0;
    d->power[0].v = 100.0;
    d->n_temp = 1;
    d->temp[0].t = 0.0;
    d->temp[0].v = 40.0;
    d->sm_clock = 1410;
    d->mem_clock = 1593;
    d->mem_total = 85899345920ULL;
    d->st.pl_current = d->pl_default = d->st.pl_enforced = d->pl_max = 400000;
    d->pl_min = 100000;
    d->c2c = -1;
    d->settable = 1;
    static const unsigned int mem_clocks[] = {1593, 1215, 405};
    d->n_mem_clocks = (int)(sizeof mem_clocks / sizeof mem_clocks[0]);
    memcpy(d->mem_clocks, mem_clocks, sizeof mem_clocks);
    d->n_gfx_clocks = 0;
    for (unsigned int mhz = 1410; mhz >= 210; mhz -= 15)
        d->gfx_clocks[d->n_gfx_clocks++] = mhz;
}

typedef struct {
    const char *path;
    int line;
    char *toks[2 * MAX_POWER_POINTS + 8];
    int n;
} parse_ctx;

static int parse_fail(const parse_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fake_nvml: %s:%d: ", c->path, c->line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

static int to_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int to_ull(const char *s, unsigned long long *out)
{
    char *end;
    if (*s == '-')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

static int to_uint(const char *s, unsigned int *out)
{
    unsigned long long v;
    if (to_ull(s, &v) || v > 0xffffffffULL)
        return -1;
    *out = (unsigned int)v;
    return 0;
}

/* CLOCK_REALTIME seconds -> whole seconds + fraction, without the digits a double loses */
static int to_epoch(const char *s, long long *sec, double *frac)
{
    double v;
    if (to_double(s, &v))
        return -1;
    *sec = (long long)floor(v);
    *frac = v - floor(v);
    /* recover digits lost by the double: re-parse the fractional part textually */
    const char *dot = strchr(s, '.');
    if (dot && v >= 0 && !strpbrk(s, "eE")) {
        double f;
        char buf[64];
        snprintf(buf, sizeof buf, "0%s", dot);
        if (!to_double(buf, &f)) {
            *sec = strtoll(s, NULL, 10);
            *frac = f;
        }
    }
    return 0;
}

static int to_bool(const char *s, int *out)
{
    unsigned int v;
    if (to_uint(s, &v) || v > 1)
        return -1;
    *out = (int)v;
    return 0;
}

/* tokens toks[1..n-1] -> curve points (single value = constant) */
static int parse_curve(parse_ctx *c, point_t *pts, int *n, int max, int appending, int nonneg)
{
    int nv = c->n - 1;
    if (nv < 1)
        return parse_fail(c, "%s needs values", c->toks[0]);
    if (!appending)
        *n = 0;
    if (nv == 1) {
        double v;
        if (to_double(c->toks[1], &v) || (nonneg && v < 0))
            return parse_fail(c, "bad value '%s'", c->toks[1]);
        if (*n >= max)
            return parse_fail(c, "too many points (max %d)", max);
        pts[*n].t = 0.0;
        pts[*n].v = v;
        (*n)++;
        return 0;
    }
    if (nv % 2)
        return parse_fail(c, "%s needs T V pairs", c->toks[0]);
    for (int i = 1; i < c->n; i += 2) {
        double t, v;
        if (to_double(c->toks[i], &t) || to_double(c->toks[i + 1], &v) || (nonneg && v < 0))
            return parse_fail(c, "bad point '%s %s'", c->toks[i], c->toks[i + 1]);
        if (*n >= max)
            return parse_fail(c, "too many points (max %d)", max);
        if (*n > 0 && t < pts[*n - 1].t)
            return parse_fail(c, "point times must not decrease (%g after %g)", t, pts[*n - 1].t);
        pts[*n].t = t;
        pts[*n].v = v;
        (*n)++;
    }
    return 0;
}

static int parse_error(parse_ctx *c, inj_error_t *errs, int *n)
{
    if (c->n != 3 && c->n != 5)
        return parse_fail(c, "usage: error FUNCTION CODE [START_S END_S]");
    if (*n >= MAX_ERRORS)
        return parse_fail(c, "too many error lines (max %d)", MAX_ERRORS);
    inj_error_t *e = &errs[*n];
    unsigned int code;
    if (strlen(c->toks[1]) >= STR_LEN)
        return parse_fail(c, "function name too long");
    snprintf(e->fn, STR_LEN, "%s", c->toks[1]);
    if (to_uint(c->toks[2], &code))
        return parse_fail(c, "bad error code '%s'", c->toks[2]);
    e->code = (int)code;
    e->start = -INFINITY;
    e->end = INFINITY;
    if (c->n == 5 && (to_double(c->toks[3], &e->start) || to_double(c->toks[4], &e->end)))
        return parse_fail(c, "bad error window");
    (*n)++;
    return 0;
}

#define NEED(k)                                                                                    \
    do {                                                                                           \
        if (c->n != (k) + 1)                                                                       \
            return parse_fail(c, "%s takes %d value(s)", key, (k));                                \
    } while (0)
#define BAD() return parse_fail(c, "bad value for %s", key)

static int parse_global(parse_ctx *c, scenario_t *s, const char *rest)
{
    const char *key = c->toks[0];
    if (!strcmp(key, "fake_nvml_scenario")) {
        NEED(1);
        if (strcmp(c->toks[1], "1"))
            return parse_fail(c, "unsupported format version '%s'", c->toks[1]);
    } else if (!strcmp(key, "start_epoch_s")) {
        NEED(1);
        if (to_epoch(c->toks[1], &s->epoch_sec, &s->epoch_frac))
            BAD();
    } else if (!strcmp(key, "driver_version") || !strcmp(key, "nvml_version")) {
        NEED(1);
        snprintf(!strcmp(key, "driver_version") ? s->driver_version : s->nvml_version, STR_LEN,
                 "%s", rest);
    } else if (!strcmp(key, "cuda_driver_version")) {
        unsigned int v;
        NEED(1);
        if (to_uint(c->toks[1], &v))
            BAD();
        s->cuda_driver_version = (int)v;
    } else if (!strcmp(key, "counter_period_s")) {
        NEED(1);
        if (to_double(c->toks[1], &s->counter_period_s) || s->counter_period_s < 0)
            BAD();
    } else if (!strcmp(key, "power_period_s")) {
        NEED(1);
        if (to_double(c->toks[1], &s->power_period_s) || s->power_period_s < 0)
            BAD();
    } else if (!strcmp(key, "error")) {
        return parse_error(c, s->errors, &s->n_errors);
    } else {
        return parse_fail(c, "unknown global keyword '%s' (device keywords need a `device` line first)",
                          key);
    }
    return 0;
}

static int parse_device(parse_ctx *c, fake_device *d, const char *rest, int *power_seen,
                        int *temp_seen)
{
    const char *key = c->toks[0];
    if (!strcmp(key, "name")) {
        if (c->n < 2)
            BAD();
        snprintf(d->name, STR_LEN, "%s", rest);
    } else if (!strcmp(key, "uuid")) {
        NEED(1);
        snprintf(d->uuid, STR_LEN, "%s", c->toks[1]);
    } else if (!strcmp(key, "arch")) {
        NEED(1);
        if (to_uint(c->toks[1], &d->arch))
            BAD();
    } else if (!strcmp(key, "energy_counter")) {
        NEED(1);
        if (to_bool(c->toks[1], &d->energy_supported))
            BAD();
    } else if (!strcmp(key, "energy_offset_mj")) {
        NEED(1);
        if (to_ull(c->toks[1], &d->energy_offset_mj))
            BAD();
    } else if (!strcmp(key, "counter_period_s")) {
        NEED(1);
        if (to_double(c->toks[1], &d->counter_period_s) || d->counter_period_s < 0)
            BAD();
        d->has_period = 1;
    } else if (!strcmp(key, "power_period_s")) {
        NEED(1);
        if (to_double(c->toks[1], &d->power_period_s) || d->power_period_s < 0)
            BAD();
        d->has_power_period = 1;
    } else if (!strcmp(key, "power_usage")) {
        NEED(1);
        if (!strcmp(c->toks[1], "averaged"))
            d->power_usage_instant = 0;
        else if (!strcmp(c->toks[1], "instant"))
            d->power_usage_instant = 1;
        else
            return parse_fail(c, "power_usage is averaged or instant, not '%s'", c->toks[1]);
    } else if (!strcmp(key, "unsupported_field")) {
        if (c->n < 2)
            return parse_fail(c, "usage: unsupported_field FIELD_ID [FIELD_ID ...]");
        for (int i = 1; i < c->n; i++) {
            unsigned int id;
            if (to_uint(c->toks[i], &id))
                return parse_fail(c, "bad field id '%s'", c->toks[i]);
            if (d->n_unsupported_fields >= MAX_FIELDS)
                return parse_fail(c, "too many unsupported fields (max %d)", MAX_FIELDS);
            d->unsupported_fields[d->n_unsupported_fields++] = id;
        }
    } else if (!strcmp(key, "power")) {
        if (parse_curve(c, d->power, &d->n_power, MAX_POWER_POINTS, *power_seen, 1))
            return -1;
        *power_seen = 1;
    } else if (!strcmp(key, "temperature")) {
        if (parse_curve(c, d->temp, &d->n_temp, MAX_TEMP_POINTS, *temp_seen, 0))
            return -1;
        *temp_seen = 1;
    } else if (!strcmp(key, "clocks")) {
        NEED(2);
        if (to_uint(c->toks[1], &d->sm_clock) || to_uint(c->toks[2], &d->mem_clock))
            BAD();
    } else if (!strcmp(key, "memory")) {
        if (c->n != 3 && c->n != 4)
            return parse_fail(c, "usage: memory TOTAL_B USED_B [RESERVED_B]");
        d->mem_reserved = 0;
        if (to_ull(c->toks[1], &d->mem_total) || to_ull(c->toks[2], &d->mem_used) ||
            (c->n == 4 && to_ull(c->toks[3], &d->mem_reserved)))
            BAD();
        if (d->mem_used + d->mem_reserved > d->mem_total)
            return parse_fail(c, "used + reserved exceeds total");
    } else if (!strcmp(key, "utilization")) {
        NEED(2);
        if (to_uint(c->toks[1], &d->util_gpu) || to_uint(c->toks[2], &d->util_mem))
            BAD();
    } else if (!strcmp(key, "power_limit_mw")) {
        if (c->n < 4 || c->n > 6)
            return parse_fail(c, "usage: power_limit_mw CURRENT MIN MAX [DEFAULT [ENFORCED]]");
        if (to_uint(c->toks[1], &d->st.pl_current) || to_uint(c->toks[2], &d->pl_min) ||
            to_uint(c->toks[3], &d->pl_max))
            BAD();
        d->pl_default = d->st.pl_enforced = d->st.pl_current;
        if ((c->n >= 5 && to_uint(c->toks[4], &d->pl_default)) ||
            (c->n == 6 && to_uint(c->toks[5], &d->st.pl_enforced)))
            BAD();
        if (d->pl_min > d->pl_max)
            return parse_fail(c, "power_limit_mw: MIN exceeds MAX");
    } else if (!strcmp(key, "settable")) {
        NEED(1);
        if (!strcmp(c->toks[1], "yes"))
            d->settable = 1;
        else if (!strcmp(c->toks[1], "no"))
            d->settable = 0;
        else if (to_bool(c->toks[1], &d->settable))
            BAD();
    } else if (!strcmp(key, "supported_memory_clocks") ||
               !strcmp(key, "supported_graphics_clocks")) {
        int mem = key[10] == 'm'; /* "supported_" is 10 characters */
        unsigned int *list = mem ? d->mem_clocks : d->gfx_clocks;
        int *n = mem ? &d->n_mem_clocks : &d->n_gfx_clocks;
        if (c->n < 2)
            return parse_fail(c, "usage: %s MHZ [MHZ ...]", key);
        if (c->n - 1 > MAX_CLOCKS)
            return parse_fail(c, "too many clocks (max %d)", MAX_CLOCKS);
        for (int i = 1; i < c->n; i++)
            if (to_uint(c->toks[i], &list[i - 1]))
                return parse_fail(c, "bad clock '%s'", c->toks[i]);
        *n = c->n - 1;
    } else if (!strcmp(key, "sm_locked") || !strcmp(key, "mem_locked")) {
        int mem = key[0] == 'm';
        int *locked = mem ? &d->st.mem_locked : &d->st.sm_locked;
        unsigned int *lo = mem ? &d->st.mem_min : &d->st.sm_min;
        unsigned int *hi = mem ? &d->st.mem_max : &d->st.sm_max;
        if (c->n == 2 && !strcmp(c->toks[1], "none")) {
            *locked = 0;
        } else {
            if (c->n != 3)
                return parse_fail(c, "usage: %s MIN_MHZ MAX_MHZ | none", key);
            if (to_uint(c->toks[1], lo) || to_uint(c->toks[2], hi))
                BAD();
            if (*lo > *hi)
                return parse_fail(c, "%s: MIN exceeds MAX", key);
            *locked = 1;
        }
    } else if (!strcmp(key, "mig")) {
        if (c->n != 2 && c->n != 3)
            return parse_fail(c, "usage: mig CURRENT [PENDING]");
        if (to_uint(c->toks[1], &d->mig_current))
            BAD();
        d->mig_pending = d->mig_current;
        if (c->n == 3 && to_uint(c->toks[2], &d->mig_pending))
            BAD();
    } else if (!strcmp(key, "persistence")) {
        int v;
        NEED(1);
        if (to_bool(c->toks[1], &v))
            BAD();
        d->persistence = (unsigned int)v;
    } else if (!strcmp(key, "throttle")) {
        if (c->n != 4 && c->n != 5)
            return parse_fail(c, "usage: throttle START_S END_S MASK [SM_MHZ]");
        if (d->n_throttle >= MAX_THROTTLE)
            return parse_fail(c, "too many throttle lines (max %d)", MAX_THROTTLE);
        throttle_t *th = &d->throttle[d->n_throttle];
        th->sm_clock = 0;
        if (to_double(c->toks[1], &th->start) || to_double(c->toks[2], &th->end) ||
            to_ull(c->toks[3], &th->mask) || (c->n == 5 && to_uint(c->toks[4], &th->sm_clock)))
            BAD();
        d->n_throttle++;
    } else if (!strcmp(key, "c2c")) {
        NEED(1);
        if (to_bool(c->toks[1], &d->c2c))
            BAD();
    } else if (!strcmp(key, "compute_mode")) {
        NEED(1);
        if (to_uint(c->toks[1], &d->compute_mode))
            BAD();
    } else if (!strcmp(key, "process")) {
        if (c->n != 3 && c->n != 5)
            return parse_fail(c, "usage: process PID USED_MIB [START_S END_S]");
        if (d->n_processes >= MAX_PROCESSES)
            return parse_fail(c, "too many process lines (max %d)", MAX_PROCESSES);
        process_t *pr = &d->processes[d->n_processes];
        pr->start = -INFINITY;
        pr->end = INFINITY;
        pr->pid = 0;
        if ((strcmp(c->toks[1], "self") && to_uint(c->toks[1], &pr->pid)) ||
            to_ull(c->toks[2], &pr->used_mib) ||
            (c->n == 5 && (to_double(c->toks[3], &pr->start) || to_double(c->toks[4], &pr->end))))
            BAD();
        d->n_processes++;
    } else if (!strcmp(key, "error")) {
        return parse_error(c, d->errors, &d->n_errors);
    } else {
        return parse_fail(c, "unknown device keyword '%s'", key);
    }
    return 0;
}

/* 0 on success, else an NVML error code */
static nvmlReturn_t load_scenario(scenario_t *s)
{
    static parse_ctx ctx; /* large token array: keep it off the stack (under g_lock) */
    const char *path = getenv("FAKE_NVML_SCENARIO");
    set_defaults(s);
    if (!path || !*path) {
        fprintf(stderr, "fake_nvml: FAKE_NVML_SCENARIO is not set\n");
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "fake_nvml: cannot open %s: %s\n", path, strerror(errno));
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    parse_ctx *c = &ctx;
    memset(c, 0, sizeof(*c));
    c->path = path;
    fake_device *dev = NULL;
    int power_seen = 0, temp_seen = 0, rc = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        c->line++;
        line[strcspn(line, "\r\n")] = '\0';
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p || *p == '#')
            continue;
        /* rest-of-line value (after the keyword), trailing blanks trimmed */
        char rest[STR_LEN * 2];
        const char *r = p + strcspn(p, " \t");
        while (*r == ' ' || *r == '\t')
            r++;
        snprintf(rest, sizeof rest, "%s", r);
        for (size_t k = strlen(rest); k > 0 && isspace((unsigned char)rest[k - 1]); k--)
            rest[k - 1] = '\0';
        /* tokenise */
        c->n = 0;
        for (char *tok = strtok(p, " \t"); tok; tok = strtok(NULL, " \t")) {
            if (c->n >= (int)(sizeof c->toks / sizeof c->toks[0])) {
                rc = parse_fail(c, "too many values on one line");
                goto done;
            }
            c->toks[c->n++] = tok;
        }
        if (!strcmp(c->toks[0], "device")) {
            if (c->n != 1) {
                rc = parse_fail(c, "`device` takes no values");
                goto done;
            }
            if (s->n_devices >= MAX_DEVICES) {
                rc = parse_fail(c, "too many devices (max %d)", MAX_DEVICES);
                goto done;
            }
            dev = &s->devices[s->n_devices];
            device_defaults(dev, s->n_devices);
            s->n_devices++;
            power_seen = temp_seen = 0;
            continue;
        }
        rc = dev ? parse_device(c, dev, rest, &power_seen, &temp_seen) : parse_global(c, s, rest);
        if (rc)
            goto done;
    }
done:
    free(line);
    fclose(f);
    if (rc)
        return NVML_ERROR_UNKNOWN;
    for (unsigned int i = 0; i < s->n_devices; i++)
        reset_limit_history(&s->devices[i], s->devices[i].st.pl_enforced);
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------------- state file */

#define STATE_ENV "FAKE_NVML_STATE"

typedef struct {
    int present; /* a `device N` line was read */
    int has_pl, has_enf, has_sm, has_mem, has_since, has_energy;
    unsigned int pl_current, pl_enforced;
    int sm_locked, mem_locked;
    unsigned int sm_min, sm_max, mem_min, mem_max;
    long long since_sec; /* CLOCK_REALTIME of the last limit change, split for precision */
    double since_frac;
    double energy_j; /* E at that time (counter energy without the offset) */
} dev_state_t;

typedef struct {
    int has_epoch; /* the start_epoch_s the energies were computed against */
    long long epoch_sec;
    double epoch_frac;
    dev_state_t dev[MAX_DEVICES];
} state_t;

typedef struct {
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
} file_sig_t;

static state_t g_mem_state;  /* the "driver's" settings: survive nvmlShutdown/nvmlInit */
static int g_mem_state_valid;
static state_t g_file_state; /* parse target for the state file */
static file_sig_t g_state_sig; /* the state file as this process last read or wrote it */
static int g_state_sig_valid;

static const char *state_path(void)
{
    const char *p = getenv(STATE_ENV);
    return p && *p ? p : NULL;
}

static file_sig_t file_sig(const char *path)
{
    file_sig_t sig;
    struct stat sb;
    memset(&sig, 0, sizeof sig);
    if (stat(path, &sb) == 0) {
        sig.exists = 1;
        sig.dev = sb.st_dev;
        sig.ino = sb.st_ino;
        sig.size = sb.st_size;
        sig.mtim = sb.st_mtim;
    }
    return sig;
}

static int sig_equal(const file_sig_t *a, const file_sig_t *b)
{
    if (a->exists != b->exists)
        return 0;
    return !a->exists || (a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
                          a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec);
}

static double rel_time(const scenario_t *s, long long sec, double frac)
{
    return (double)(sec - s->epoch_sec) + (frac - s->epoch_frac);
}

static void format_epoch(char *buf, size_t len, long long sec, double frac)
{
    double fl = floor(frac);
    sec += (long long)fl;
    long long ns = llround((frac - fl) * 1e9);
    if (ns >= 1000000000LL) {
        sec++;
        ns -= 1000000000LL;
    }
    snprintf(buf, len, "%lld.%09lld", sec, ns);
}

static int parse_lock(parse_ctx *c, int *i, int *locked, unsigned int *lo, unsigned int *hi)
{
    const char *key = c->toks[*i];
    if (*i + 1 < c->n && !strcmp(c->toks[*i + 1], "none")) {
        *locked = 0;
        *i += 2;
        return 0;
    }
    if (*i + 2 >= c->n || to_uint(c->toks[*i + 1], lo) || to_uint(c->toks[*i + 2], hi) || *lo > *hi)
        return parse_fail(c, "%s takes MIN_MHZ MAX_MHZ (MIN <= MAX) or none", key);
    *locked = 1;
    *i += 3;
    return 0;
}

/* 0: read, 1: no such file, -1: unreadable or malformed (message on stderr) */
static int read_state_file(const char *path, state_t *st)
{
    static parse_ctx ctx;
    memset(st, 0, sizeof *st);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 1;
        fprintf(stderr, "fake_nvml: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    parse_ctx *c = &ctx;
    memset(c, 0, sizeof *c);
    c->path = path;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (!rc && getline(&line, &cap, f) >= 0) {
        c->line++;
        line[strcspn(line, "\r\n")] = '\0';
        char *p = line + strspn(line, " \t");
        if (!*p || *p == '#')
            continue;
        c->n = 0;
        for (char *tok = strtok(p, " \t"); tok && c->n < 64; tok = strtok(NULL, " \t"))
            c->toks[c->n++] = tok;
        const char *key = c->toks[0];
        if (!strcmp(key, "fake_nvml_state")) {
            if (c->n != 2 || strcmp(c->toks[1], "1"))
                rc = parse_fail(c, "unsupported state format (expected `fake_nvml_state 1`)");
        } else if (!strcmp(key, "start_epoch_s")) {
            if (c->n != 2 || to_epoch(c->toks[1], &st->epoch_sec, &st->epoch_frac))
                rc = parse_fail(c, "bad start_epoch_s");
            st->has_epoch = 1;
        } else if (!strcmp(key, "device")) {
            unsigned int index;
            if (c->n < 2 || to_uint(c->toks[1], &index) || index >= MAX_DEVICES) {
                rc = parse_fail(c, "usage: device INDEX KEY VALUE... (INDEX < %d)", MAX_DEVICES);
                continue;
            }
            dev_state_t *ds = &st->dev[index];
            ds->present = 1;
            for (int i = 2; !rc && i < c->n;) {
                const char *k = c->toks[i];
                int more = i + 1 < c->n;
                if (!strcmp(k, "power_limit_mw") || !strcmp(k, "enforced_power_limit_mw")) {
                    int enf = k[0] == 'e';
                    if (!more || to_uint(c->toks[i + 1], enf ? &ds->pl_enforced : &ds->pl_current))
                        rc = parse_fail(c, "bad value for %s", k);
                    *(enf ? &ds->has_enf : &ds->has_pl) = 1;
                    i += 2;
                } else if (!strcmp(k, "sm_locked")) {
                    rc = parse_lock(c, &i, &ds->sm_locked, &ds->sm_min, &ds->sm_max);
                    ds->has_sm = 1;
                } else if (!strcmp(k, "mem_locked")) {
                    rc = parse_lock(c, &i, &ds->mem_locked, &ds->mem_min, &ds->mem_max);
                    ds->has_mem = 1;
                } else if (!strcmp(k, "limit_since_epoch_s")) {
                    if (!more || to_epoch(c->toks[i + 1], &ds->since_sec, &ds->since_frac))
                        rc = parse_fail(c, "bad value for %s", k);
                    ds->has_since = 1;
                    i += 2;
                } else if (!strcmp(k, "energy_at_since_j")) {
                    if (!more || to_double(c->toks[i + 1], &ds->energy_j) || ds->energy_j < 0)
                        rc = parse_fail(c, "bad value for %s", k);
                    ds->has_energy = 1;
                    i += 2;
                } else {
                    rc = parse_fail(c, "unknown state key '%s'", k);
                }
            }
        } else {
            rc = parse_fail(c, "unknown state keyword '%s'", key);
        }
    }
    free(line);
    fclose(f);
    return rc ? -1 : 0;
}

/* the settings in `st` onto the devices of `s` (devices the file does not name keep theirs) */
static void apply_state(scenario_t *s, const state_t *st)
{
    int epoch_match =
        st->has_epoch && fabs(rel_time(s, st->epoch_sec, st->epoch_frac)) < 1e-6;
    for (unsigned int i = 0; i < s->n_devices; i++) {
        const dev_state_t *ds = &st->dev[i];
        fake_device *d = &s->devices[i];
        if (!ds->present)
            continue;
        if (ds->has_pl)
            d->st.pl_current = ds->pl_current;
        if (ds->has_pl || ds->has_enf) {
            unsigned int enforced = ds->has_enf ? ds->pl_enforced : ds->pl_current;
            if (ds->has_since)
                push_limit(d, rel_time(s, ds->since_sec, ds->since_frac), enforced,
                           ds->has_energy && epoch_match, ds->energy_j);
            else
                reset_limit_history(d, enforced);
        }
        if (ds->has_sm) {
            d->st.sm_locked = ds->sm_locked;
            d->st.sm_min = ds->sm_min;
            d->st.sm_max = ds->sm_max;
        }
        if (ds->has_mem) {
            d->st.mem_locked = ds->mem_locked;
            d->st.mem_min = ds->mem_min;
            d->st.mem_max = ds->mem_max;
        }
    }
}

static void snapshot_state(const scenario_t *s, state_t *st)
{
    memset(st, 0, sizeof *st);
    st->has_epoch = 1;
    st->epoch_sec = s->epoch_sec;
    st->epoch_frac = s->epoch_frac;
    for (unsigned int i = 0; i < s->n_devices; i++) {
        const fake_device *d = &s->devices[i];
        dev_state_t *ds = &st->dev[i];
        const limit_seg_t *last = &d->st.segs[d->st.n_segs - 1];
        ds->present = ds->has_pl = ds->has_enf = ds->has_sm = ds->has_mem = 1;
        ds->pl_current = d->st.pl_current;
        ds->pl_enforced = d->st.pl_enforced;
        ds->sm_locked = d->st.sm_locked;
        ds->sm_min = d->st.sm_min;
        ds->sm_max = d->st.sm_max;
        ds->mem_locked = d->st.mem_locked;
        ds->mem_min = d->st.mem_min;
        ds->mem_max = d->st.mem_max;
        if (isfinite(last->start)) {
            double total = s->epoch_frac + last->start, fl = floor(total);
            ds->has_since = ds->has_energy = 1;
            ds->since_sec = s->epoch_sec + (long long)fl;
            ds->since_frac = total - fl;
            ds->energy_j = last->energy_j;
        }
    }
}

/* write temp + rename; 0 on success, else -1 with a message on stderr */
static int write_state_file(const char *path, const scenario_t *s, const state_t *st)
{
    char tmp[4096], buf[64];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "fake_nvml: cannot write %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    format_epoch(buf, sizeof buf, st->epoch_sec, st->epoch_frac);
    fprintf(f, "# fake NVML state (format: tests/fakes/nvml/fake_nvml.c)\n"
               "fake_nvml_state 1\nstart_epoch_s %s\n", buf);
    for (unsigned int i = 0; i < s->n_devices; i++) {
        const dev_state_t *ds = &st->dev[i];
        fprintf(f, "device %u power_limit_mw %u enforced_power_limit_mw %u", i, ds->pl_current,
                ds->pl_enforced);
        if (ds->sm_locked)
            fprintf(f, " sm_locked %u %u", ds->sm_min, ds->sm_max);
        else
            fprintf(f, " sm_locked none");
        if (ds->mem_locked)
            fprintf(f, " mem_locked %u %u", ds->mem_min, ds->mem_max);
        else
            fprintf(f, " mem_locked none");
        if (ds->has_since) {
            format_epoch(buf, sizeof buf, ds->since_sec, ds->since_frac);
            fprintf(f, " limit_since_epoch_s %s energy_at_since_j %.17g", buf, ds->energy_j);
        }
        fputc('\n', f);
    }
    int bad = fflush(f) != 0 || ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        fprintf(stderr, "fake_nvml: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* at init: the state file (if $FAKE_NVML_STATE is set) or this process's earlier settings */
static nvmlReturn_t init_state(scenario_t *s)
{
    const char *path = state_path();
    if (!path) {
        if (g_mem_state_valid)
            apply_state(s, &g_mem_state);
        return NVML_SUCCESS;
    }
    g_state_sig = file_sig(path);
    g_state_sig_valid = 1;
    int r = read_state_file(path, &g_file_state);
    if (r < 0)
        return NVML_ERROR_UNKNOWN;
    if (r == 0)
        apply_state(s, &g_file_state);
    return NVML_SUCCESS;
}

/* before a device call: pick up a state file another process rewrote since */
static nvmlReturn_t sync_state(void)
{
    const char *path = state_path();
    if (!path)
        return NVML_SUCCESS;
    file_sig_t sig = file_sig(path);
    if (g_state_sig_valid && sig_equal(&sig, &g_state_sig))
        return NVML_SUCCESS;
    g_state_sig = sig;
    g_state_sig_valid = 1;
    if (!sig.exists)
        return NVML_SUCCESS; /* removed: the settings stay as they are */
    int r = read_state_file(path, &g_file_state);
    if (r < 0)
        return NVML_ERROR_UNKNOWN;
    if (r == 0) {
        apply_state(&g_cur, &g_file_state);
        snapshot_state(&g_cur, &g_mem_state);
        g_mem_state_valid = 1;
    }
    return NVML_SUCCESS;
}

/* after a setter changed d->st (previously `old`): remember it, rewrite the state file; if
 * that fails the change is undone and the call returns NVML_ERROR_UNKNOWN */
static nvmlReturn_t commit_settings(fake_device *d, const dev_settings_t *old)
{
    const char *path = state_path();
    snapshot_state(&g_cur, &g_mem_state);
    if (path) {
        if (write_state_file(path, &g_cur, &g_mem_state)) {
            d->st = *old;
            snapshot_state(&g_cur, &g_mem_state);
            return NVML_ERROR_UNKNOWN;
        }
        g_state_sig = file_sig(path);
        g_state_sig_valid = 1;
    }
    g_mem_state_valid = 1;
    return NVML_SUCCESS;
}

/* ----------------------------------------------------------- call scaffolding */

#define LOCK() pthread_mutex_lock(&g_lock)
#define UNLOCK() pthread_mutex_unlock(&g_lock)
#define RET(x)                                                                                     \
    do {                                                                                           \
        nvmlReturn_t ret__ = (x);                                                                  \
        UNLOCK();                                                                                  \
        return ret__;                                                                              \
    } while (0)

static fake_device *lookup(nvmlDevice_t h)
{
    fake_device *d = (fake_device *)(void *)h;
    if (!d || d < g_cur.devices || d >= g_cur.devices + g_cur.n_devices)
        return NULL;
    if (((char *)d - (char *)g_cur.devices) % sizeof(fake_device))
        return NULL;
    return d;
}

/* common checks for a system-level call; caller holds g_lock */
static nvmlReturn_t sys_pre(const char *fn, double *t)
{
    if (g_refcount <= 0)
        return NVML_ERROR_UNINITIALIZED;
    *t = now_rel(&g_cur);
    return find_error(g_cur.errors, g_cur.n_errors, fn, *t);
}

/* common checks for a per-device call; caller holds g_lock */
static nvmlReturn_t dev_pre(const char *fn, nvmlDevice_t h, fake_device **out, double *t)
{
    if (g_refcount <= 0)
        return NVML_ERROR_UNINITIALIZED;
    fake_device *d = lookup(h);
    if (!d)
        return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t rs = sync_state();
    if (rs)
        return rs;
    *t = now_rel(&g_cur);
    nvmlReturn_t r = find_error(g_cur.errors, g_cur.n_errors, fn, *t);
    if (!r)
        r = find_error(d->errors, d->n_errors, fn, *t);
    *out = d;
    return r;
}

#define DEV_BEGIN(fn)                                                                              \
    fake_device *d = NULL;                                                                         \
    double t = 0.0;                                                                                \
    LOCK();                                                                                        \
    do {                                                                                           \
        nvmlReturn_t r__ = dev_pre(fn, device, &d, &t);                                            \
        if (r__)                                                                                   \
            RET(r__);                                                                              \
    } while (0)

#define SYS_BEGIN(fn)                                                                              \
    double t = 0.0;                                                                                \
    LOCK();                                                                                        \
    do {                                                                                           \
        nvmlReturn_t r__ = sys_pre(fn, &t);                                                        \
        if (r__)                                                                                   \
            RET(r__);                                                                              \
    } while (0);                                                                                   \
    (void)t

static nvmlReturn_t copy_str(char *dst, unsigned int len, const char *src)
{
    if (!dst)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------ init / shutdown */

static nvmlReturn_t do_init(const char *fn)
{
    LOCK();
    nvmlReturn_t r = load_scenario(&g_next);
    if (!r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)(ts.tv_sec - g_next.epoch_sec) + ((double)ts.tv_nsec * 1e-9 - g_next.epoch_frac);
        r = find_error(g_next.errors, g_next.n_errors, fn, t);
        if (!r)
            r = find_error(g_next.errors, g_next.n_errors, "nvmlInit", t);
    }
    if (!r)
        r = init_state(&g_next);
    if (!r) {
        memcpy(&g_cur, &g_next, sizeof g_cur);
        g_refcount++;
    }
    RET(r);
}

NVML_API nvmlReturn_t nvmlInit(void) { return do_init("nvmlInit"); }
NVML_API nvmlReturn_t nvmlInit_v2(void) { return do_init("nvmlInit_v2"); }
NVML_API nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    (void)flags;
    return do_init("nvmlInitWithFlags");
}

NVML_API nvmlReturn_t nvmlShutdown(void)
{
    LOCK();
    if (g_refcount <= 0)
        RET(NVML_ERROR_UNINITIALIZED);
    double t = now_rel(&g_cur);
    nvmlReturn_t r = find_error(g_cur.errors, g_cur.n_errors, "nvmlShutdown", t);
    if (r)
        RET(r);
    g_refcount--;
    RET(NVML_SUCCESS);
}

NVML_API const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER: return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_IRQ_ISSUE: return "Interrupt request issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM: return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM: return "The operating system has blocked the request.";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_IN_USE: return "In use by another client";
    case NVML_ERROR_MEMORY: return "Insufficient Memory";
    case NVML_ERROR_NO_DATA: return "No data";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Version mismatch";
    case NVML_ERROR_UNKNOWN: return "Unknown Error";
    default: return "Unknown Error";
    }
}

/* ------------------------------------------------------------------- system */

NVML_API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    SYS_BEGIN("nvmlSystemGetDriverVersion");
    RET(copy_str(version, length, g_cur.driver_version));
}

NVML_API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    SYS_BEGIN("nvmlSystemGetNVMLVersion");
    RET(copy_str(version, length, g_cur.nvml_version));
}

static nvmlReturn_t cuda_version(const char *fn, int *v)
{
    SYS_BEGIN(fn);
    if (!v)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *v = g_cur.cuda_driver_version;
    RET(NVML_SUCCESS);
}
NVML_API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v)
{
    return cuda_version("nvmlSystemGetCudaDriverVersion", v);
}
NVML_API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v)
{
    return cuda_version("nvmlSystemGetCudaDriverVersion_v2", v);
}

/* ---------------------------------------------------------- device discovery */

static nvmlReturn_t device_count(const char *fn, unsigned int *count)
{
    SYS_BEGIN(fn);
    if (!count)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *count = g_cur.n_devices;
    RET(NVML_SUCCESS);
}
NVML_API nvmlReturn_t nvmlDeviceGetCount(unsigned int *c) { return device_count("nvmlDeviceGetCount", c); }
NVML_API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *c)
{
    return device_count("nvmlDeviceGetCount_v2", c);
}

static nvmlReturn_t handle_by_index(const char *fn, unsigned int index, nvmlDevice_t *device)
{
    SYS_BEGIN(fn);
    if (!device || index >= g_cur.n_devices)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    nvmlReturn_t r = find_error(g_cur.devices[index].errors, g_cur.devices[index].n_errors, fn, t);
    if (r)
        RET(r);
    *device = (nvmlDevice_t)(void *)&g_cur.devices[index];
    RET(NVML_SUCCESS);
}
NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *d)
{
    return handle_by_index("nvmlDeviceGetHandleByIndex", i, d);
}
NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d)
{
    return handle_by_index("nvmlDeviceGetHandleByIndex_v2", i, d);
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    SYS_BEGIN("nvmlDeviceGetHandleByUUID");
    if (!uuid || !device)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    for (unsigned int i = 0; i < g_cur.n_devices; i++) {
        if (!strcmp(g_cur.devices[i].uuid, uuid)) {
            nvmlReturn_t r = find_error(g_cur.devices[i].errors, g_cur.devices[i].n_errors,
                                        "nvmlDeviceGetHandleByUUID", t);
            if (r)
                RET(r);
            *device = (nvmlDevice_t)(void *)&g_cur.devices[i];
            RET(NVML_SUCCESS);
        }
    }
    RET(NVML_ERROR_NOT_FOUND);
}

NVML_API nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    DEV_BEGIN("nvmlDeviceGetIndex");
    if (!index)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *index = (unsigned int)(d - g_cur.devices);
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    DEV_BEGIN("nvmlDeviceGetName");
    RET(copy_str(name, length, d->name));
}

NVML_API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    DEV_BEGIN("nvmlDeviceGetUUID");
    RET(copy_str(uuid, length, d->uuid));
}

NVML_API nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, unsigned int *arch)
{
    DEV_BEGIN("nvmlDeviceGetArchitecture");
    if (!arch)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *arch = d->arch;
    RET(NVML_SUCCESS);
}

/* -------------------------------------------------------------- power/energy */

NVML_API nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                                          unsigned long long *energy)
{
    DEV_BEGIN("nvmlDeviceGetTotalEnergyConsumption");
    if (!energy)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    if (!d->energy_supported)
        RET(NVML_ERROR_NOT_SUPPORTED);
    *energy = counter_mj(&g_cur, d, t);
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    DEV_BEGIN("nvmlDeviceGetPowerUsage");
    if (!power)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    double tp = power_time(&g_cur, d, t);
    *power = d->power_usage_instant ? power_mw(d, tp) : average_power_mw(d, tp);
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount,
                                               nvmlFieldValue_t *values)
{
    DEV_BEGIN("nvmlDeviceGetFieldValues");
    if (!values || valuesCount < 0)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long stamp = (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
    for (int i = 0; i < valuesCount; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = stamp;
        v->latencyUsec = 0;
        v->nvmlReturn = NVML_SUCCESS;
        v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
        v->value.ullVal = 0;
        if (field_unsupported(d, v->fieldId)) {
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
            continue;
        }
        switch (v->fieldId) {
        case NVML_FI_DEV_POWER_AVERAGE:
        case NVML_FI_DEV_POWER_INSTANT:
            if (v->scopeId != NVML_POWER_SCOPE_GPU && v->scopeId != NVML_POWER_SCOPE_MODULE)
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
            else
                v->value.uiVal = v->fieldId == NVML_FI_DEV_POWER_INSTANT
                                     ? power_mw(d, power_time(&g_cur, d, t))
                                     : average_power_mw(d, power_time(&g_cur, d, t));
            break;
        case NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
            if (!d->energy_supported) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
            } else {
                v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
                v->value.ullVal = counter_mj(&g_cur, d, t);
            }
            break;
        case NVML_FI_DEV_POWER_MIN_LIMIT: v->value.uiVal = d->pl_min; break;
        case NVML_FI_DEV_POWER_MAX_LIMIT: v->value.uiVal = d->pl_max; break;
        case NVML_FI_DEV_POWER_DEFAULT_LIMIT: v->value.uiVal = d->pl_default; break;
        case NVML_FI_DEV_POWER_CURRENT_LIMIT: v->value.uiVal = d->st.pl_current; break;
        default: v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED; break;
        }
    }
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit)
{
    DEV_BEGIN("nvmlDeviceGetPowerManagementLimit");
    if (!limit)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *limit = d->st.pl_current;
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit)
{
    DEV_BEGIN("nvmlDeviceGetEnforcedPowerLimit");
    if (!limit)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *limit = d->st.pl_enforced;
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t device,
                                                               unsigned int *limit)
{
    DEV_BEGIN("nvmlDeviceGetPowerManagementDefaultLimit");
    if (!limit)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *limit = d->pl_default;
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device,
                                                                   unsigned int *minLimit,
                                                                   unsigned int *maxLimit)
{
    DEV_BEGIN("nvmlDeviceGetPowerManagementLimitConstraints");
    if (!minLimit || !maxLimit)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *minLimit = d->pl_min;
    *maxLimit = d->pl_max;
    RET(NVML_SUCCESS);
}

/* ------------------------------------------------------- thermal and clocks */

NVML_API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, unsigned int sensor,
                                               unsigned int *temp)
{
    DEV_BEGIN("nvmlDeviceGetTemperature");
    if (!temp || sensor != NVML_TEMPERATURE_GPU)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    double c = curve_at(d->temp, d->n_temp, t);
    *temp = c <= 0.0 ? 0u : (unsigned int)llround(c);
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_v1_t *temp)
{
    DEV_BEGIN("nvmlDeviceGetTemperatureV");
    if (!temp)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    if (temp->version != nvmlTemperature_v1)
        RET(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    if (temp->sensorType != NVML_TEMPERATURE_GPU)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    temp->temperature = (int)llround(curve_at(d->temp, d->n_temp, t));
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, unsigned int type,
                                             unsigned int *clock)
{
    DEV_BEGIN("nvmlDeviceGetClockInfo");
    if (!clock)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    /* locked clocks clamp the scripted clock; a throttle interval may still pull SM lower */
    unsigned int sm = clamp_clock(d->sm_clock, d->st.sm_locked, d->st.sm_min, d->st.sm_max);
    throttle_mask(d, t, &sm);
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM: *clock = sm; break;
    case NVML_CLOCK_MEM:
        *clock = clamp_clock(d->mem_clock, d->st.mem_locked, d->st.mem_min, d->st.mem_max);
        break;
    case NVML_CLOCK_VIDEO: RET(NVML_ERROR_NOT_SUPPORTED);
    default: RET(NVML_ERROR_INVALID_ARGUMENT);
    }
    RET(NVML_SUCCESS);
}

static nvmlReturn_t clock_reasons(const char *fn, nvmlDevice_t device, unsigned long long *reasons)
{
    DEV_BEGIN(fn);
    if (!reasons)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *reasons = clock_event_mask(d, t);
    RET(NVML_SUCCESS);
}
NVML_API nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device,
                                                             unsigned long long *reasons)
{
    return clock_reasons("nvmlDeviceGetCurrentClocksEventReasons", device, reasons);
}
NVML_API nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device,
                                                                unsigned long long *reasons)
{
    return clock_reasons("nvmlDeviceGetCurrentClocksThrottleReasons", device, reasons);
}

/* -------------------------------------------------------- power/clock control */

NVML_API nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t device, unsigned int limit)
{
    DEV_BEGIN("nvmlDeviceSetPowerManagementLimit");
    if (!d->settable)
        RET(NVML_ERROR_NO_PERMISSION);
    if (limit < d->pl_min || limit > d->pl_max)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    dev_settings_t old = d->st;
    d->st.pl_current = limit;
    push_limit(d, t, limit, 0, 0.0);
    RET(commit_settings(d, &old));
}

static void clock_range(const unsigned int *list, int n, unsigned int *lo, unsigned int *hi)
{
    *lo = 0xffffffffu;
    *hi = 0;
    for (int i = 0; i < n; i++) {
        *lo = list[i] < *lo ? list[i] : *lo;
        *hi = list[i] > *hi ? list[i] : *hi;
    }
}

static nvmlReturn_t set_locked(const char *fn, nvmlDevice_t device, int mem, unsigned int lo,
                               unsigned int hi)
{
    DEV_BEGIN(fn);
    if (!d->settable)
        RET(NVML_ERROR_NO_PERMISSION);
    unsigned int min_mhz, max_mhz;
    if (mem)
        clock_range(d->mem_clocks, d->n_mem_clocks, &min_mhz, &max_mhz);
    else
        clock_range(d->gfx_clocks, d->n_gfx_clocks, &min_mhz, &max_mhz);
    if (lo > hi || lo < min_mhz || hi > max_mhz)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    dev_settings_t old = d->st;
    if (mem) {
        d->st.mem_locked = 1;
        d->st.mem_min = lo;
        d->st.mem_max = hi;
    } else {
        d->st.sm_locked = 1;
        d->st.sm_min = lo;
        d->st.sm_max = hi;
    }
    RET(commit_settings(d, &old));
}

static nvmlReturn_t reset_locked(const char *fn, nvmlDevice_t device, int mem)
{
    DEV_BEGIN(fn);
    if (!d->settable)
        RET(NVML_ERROR_NO_PERMISSION);
    dev_settings_t old = d->st;
    *(mem ? &d->st.mem_locked : &d->st.sm_locked) = 0;
    RET(commit_settings(d, &old));
}

NVML_API nvmlReturn_t nvmlDeviceSetGpuLockedClocks(nvmlDevice_t device, unsigned int minGpuClockMHz,
                                                   unsigned int maxGpuClockMHz)
{
    return set_locked("nvmlDeviceSetGpuLockedClocks", device, 0, minGpuClockMHz, maxGpuClockMHz);
}

NVML_API nvmlReturn_t nvmlDeviceResetGpuLockedClocks(nvmlDevice_t device)
{
    return reset_locked("nvmlDeviceResetGpuLockedClocks", device, 0);
}

NVML_API nvmlReturn_t nvmlDeviceSetMemoryLockedClocks(nvmlDevice_t device,
                                                      unsigned int minMemClockMHz,
                                                      unsigned int maxMemClockMHz)
{
    return set_locked("nvmlDeviceSetMemoryLockedClocks", device, 1, minMemClockMHz, maxMemClockMHz);
}

NVML_API nvmlReturn_t nvmlDeviceResetMemoryLockedClocks(nvmlDevice_t device)
{
    return reset_locked("nvmlDeviceResetMemoryLockedClocks", device, 1);
}

/* NVML's size protocol: *count in = room in clocksMHz, out = entries needed / written */
static nvmlReturn_t copy_clocks(unsigned int *count, unsigned int *out, const unsigned int *list,
                                int n)
{
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (*count < (unsigned int)n) {
        *count = (unsigned int)n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (!out && n > 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (n > 0)
        memcpy(out, list, sizeof(unsigned int) * (size_t)n);
    *count = (unsigned int)n;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetSupportedMemoryClocks(nvmlDevice_t device, unsigned int *count,
                                                         unsigned int *clocksMHz)
{
    DEV_BEGIN("nvmlDeviceGetSupportedMemoryClocks");
    RET(copy_clocks(count, clocksMHz, d->mem_clocks, d->n_mem_clocks));
}

NVML_API nvmlReturn_t nvmlDeviceGetSupportedGraphicsClocks(nvmlDevice_t device,
                                                           unsigned int memoryClockMHz,
                                                           unsigned int *count,
                                                           unsigned int *clocksMHz)
{
    DEV_BEGIN("nvmlDeviceGetSupportedGraphicsClocks");
    if (!count)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    int known = 0;
    for (int i = 0; i < d->n_mem_clocks; i++)
        known |= d->mem_clocks[i] == memoryClockMHz;
    if (!known) /* nvml.h: "NVML_ERROR_NOT_FOUND if the specified memoryClockMHz is not a
                 * supported frequency" */
        RET(NVML_ERROR_NOT_FOUND);
    RET(copy_clocks(count, clocksMHz, d->gfx_clocks, d->n_gfx_clocks));
}

/* --------------------------------------------------------- memory and usage */

NVML_API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    DEV_BEGIN("nvmlDeviceGetMemoryInfo");
    if (!memory)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    memory->total = d->mem_total;
    memory->used = d->mem_used;
    memory->free = d->mem_total - d->mem_used;
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    DEV_BEGIN("nvmlDeviceGetMemoryInfo_v2");
    if (!memory)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    if (memory->version != nvmlMemory_v2)
        RET(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    memory->total = d->mem_total;
    memory->reserved = d->mem_reserved;
    memory->used = d->mem_used;
    memory->free = d->mem_total - d->mem_reserved - d->mem_used;
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *util)
{
    DEV_BEGIN("nvmlDeviceGetUtilizationRates");
    if (!util)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    util->gpu = d->util_gpu;
    util->memory = d->util_mem;
    RET(NVML_SUCCESS);
}

static nvmlReturn_t no_processes(const char *fn, nvmlDevice_t device, unsigned int *count,
                                 void *infos)
{
    (void)infos;
    DEV_BEGIN(fn);
    if (!count)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *count = 0;
    RET(NVML_SUCCESS);
}

/* nvmlProcessInfo_v2_t / _v3_t (the same layout) */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory; /* bytes */
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

static nvmlReturn_t compute_processes(const char *fn, nvmlDevice_t device, unsigned int *count,
                                      nvmlProcessInfo_t *infos)
{
    DEV_BEGIN(fn);
    if (!count)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    unsigned int n = 0;
    for (int i = 0; i < d->n_processes; i++)
        if (d->processes[i].start <= t && t < d->processes[i].end)
            n++;
    if (n == 0) {
        *count = 0;
        RET(NVML_SUCCESS);
    }
    if (!infos || *count < n) {
        *count = n;
        RET(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    unsigned int k = 0;
    for (int i = 0; i < d->n_processes; i++) {
        const process_t *pr = &d->processes[i];
        if (!(pr->start <= t && t < pr->end))
            continue;
        infos[k].pid = pr->pid ? pr->pid : (unsigned int)getpid();
        infos[k].usedGpuMemory = pr->used_mib * 1024ULL * 1024ULL;
        infos[k].gpuInstanceId = 0xFFFFFFFFu;
        infos[k].computeInstanceId = 0xFFFFFFFFu;
        k++;
    }
    *count = n;
    RET(NVML_SUCCESS);
}
NVML_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device,
                                                              unsigned int *count,
                                                              nvmlProcessInfo_t *infos)
{
    return compute_processes("nvmlDeviceGetComputeRunningProcesses_v2", device, count, infos);
}
NVML_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                              unsigned int *count,
                                                              nvmlProcessInfo_t *infos)
{
    return compute_processes("nvmlDeviceGetComputeRunningProcesses_v3", device, count, infos);
}
NVML_API nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t device,
                                                               unsigned int *count, void *infos)
{
    return no_processes("nvmlDeviceGetGraphicsRunningProcesses_v2", device, count, infos);
}
NVML_API nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device,
                                                               unsigned int *count, void *infos)
{
    return no_processes("nvmlDeviceGetGraphicsRunningProcesses_v3", device, count, infos);
}

/* ------------------------------------------------------------------- modes */

NVML_API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode,
                                           unsigned int *pendingMode)
{
    DEV_BEGIN("nvmlDeviceGetMigMode");
    if (!currentMode || !pendingMode)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *currentMode = d->mig_current;
    *pendingMode = d->mig_pending;
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, unsigned int *mode)
{
    DEV_BEGIN("nvmlDeviceGetPersistenceMode");
    if (!mode)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *mode = d->persistence;
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, unsigned int *mode)
{
    DEV_BEGIN("nvmlDeviceGetComputeMode");
    if (!mode)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *mode = d->compute_mode;
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetC2cModeInfoV(nvmlDevice_t device, nvmlC2cModeInfo_v1_t *info)
{
    DEV_BEGIN("nvmlDeviceGetC2cModeInfoV");
    if (!info)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    if (d->c2c < 0)
        RET(NVML_ERROR_NOT_SUPPORTED);
    info->isC2cEnabled = (unsigned int)d->c2c;
    RET(NVML_SUCCESS);
}
