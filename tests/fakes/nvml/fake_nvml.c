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
 *                                 ENFORCED default to CURRENT)
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
 * Readings:
 *   nvmlDeviceGetPowerUsage          power_usage averaged (default): the mean of P
 *                                    over [tp-1, tp] in mW, as field 185;
 *                                    power_usage instant: round(1000 * P(tp)) mW
 *                                    (tp = t quantised by power_period_s)
 *   nvmlDeviceGetTotalEnergyConsumption
 *                                    offset + floor(1000 * E(tq)) mJ where
 *                                    E(t) = integral of P over [0, t] (0 if t<=0)
 *                                    and tq = t quantised by counter_period_s
 *   nvmlDeviceGetFieldValues         185 POWER_AVERAGE: mean of P over [tp-1, tp];
 *                                    186 POWER_INSTANT: P(tp) (scope GPU or MODULE;
 *                                    MEMORY scope -> NOT_SUPPORTED); 83 total
 *                                    energy; 187..190 power limits; others, and
 *                                    those named by unsupported_field,
 *                                    NOT_SUPPORTED in the entry's nvmlReturn
 *   running processes                always none
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
#include <time.h>

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
#define MAX_THROTTLE 64
#define MAX_ERRORS 64
#define MAX_FIELDS 64
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
    double start, end;
    unsigned long long mask;
    unsigned int sm_clock; /* 0 = unchanged */
} throttle_t;

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
    unsigned int pl_current, pl_min, pl_max, pl_default, pl_enforced;
    unsigned int mig_current, mig_pending;
    unsigned int persistence;
    int n_throttle;
    throttle_t throttle[MAX_THROTTLE];
    int c2c; /* -1 = NOT_SUPPORTED */
    unsigned int compute_mode;
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

/* integral of the curve over [a, b], a <= b, exact for the piecewise-linear shape */
static double curve_integral(const point_t *p, int n, double a, double b)
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
        total += curve_at(p, n, 0.5 * (x + y)) * (y - x);
        x = y;
    }
    if (x < b)
        total += curve_at(p, n, 0.5 * (x + b)) * (b - x);
    return total;
}

static double energy_j(const fake_device *d, double t)
{
    return t <= 0.0 ? 0.0 : curve_integral(d->power, d->n_power, 0.0, t);
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

static unsigned int power_mw(const fake_device *d, double t)
{
    double w = curve_at(d->power, d->n_power, t);
    return (unsigned int)llround(1000.0 * w);
}

static unsigned int average_power_mw(const fake_device *d, double t)
{
    /* mean over [t-1, t]; before t = 0 the first power value is held */
    double a = t - 1.0, e;
    if (a >= 0.0)
        e = curve_integral(d->power, d->n_power, a, t);
    else if (t <= 0.0)
        e = curve_at(d->power, d->n_power, 0.0) * (t - a);
    else
        e = curve_at(d->power, d->n_power, 0.0) * (-a) + curve_integral(d->power, d->n_power, 0.0, t);
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
    d->pl_current = d->pl_default = d->pl_enforced = d->pl_max = 400000;
    d->pl_min = 100000;
    d->c2c = -1;
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
        double v;
        NEED(1);
        if (to_double(c->toks[1], &v))
            BAD();
        s->epoch_sec = (long long)floor(v);
        s->epoch_frac = v - floor(v);
        /* recover digits lost by the double: re-parse the fractional part textually */
        const char *dot = strchr(c->toks[1], '.');
        if (dot && v >= 0 && !strpbrk(c->toks[1], "eE")) {
            double frac;
            char buf[64];
            snprintf(buf, sizeof buf, "0%s", dot);
            if (!to_double(buf, &frac)) {
                s->epoch_sec = strtoll(c->toks[1], NULL, 10);
                s->epoch_frac = frac;
            }
        }
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
        if (to_uint(c->toks[1], &d->pl_current) || to_uint(c->toks[2], &d->pl_min) ||
            to_uint(c->toks[3], &d->pl_max))
            BAD();
        d->pl_default = d->pl_enforced = d->pl_current;
        if ((c->n >= 5 && to_uint(c->toks[4], &d->pl_default)) ||
            (c->n == 6 && to_uint(c->toks[5], &d->pl_enforced)))
            BAD();
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
    return rc ? NVML_ERROR_UNKNOWN : NVML_SUCCESS;
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
        case NVML_FI_DEV_POWER_CURRENT_LIMIT: v->value.uiVal = d->pl_current; break;
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
    *limit = d->pl_current;
    RET(NVML_SUCCESS);
}

NVML_API nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit)
{
    DEV_BEGIN("nvmlDeviceGetEnforcedPowerLimit");
    if (!limit)
        RET(NVML_ERROR_INVALID_ARGUMENT);
    *limit = d->pl_enforced;
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
    unsigned int sm = d->sm_clock;
    throttle_mask(d, t, &sm);
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM: *clock = sm; break;
    case NVML_CLOCK_MEM: *clock = d->mem_clock; break;
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
    *reasons = throttle_mask(d, t, NULL);
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
NVML_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device,
                                                              unsigned int *count, void *infos)
{
    return no_processes("nvmlDeviceGetComputeRunningProcesses_v2", device, count, infos);
}
NVML_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                              unsigned int *count, void *infos)
{
    return no_processes("nvmlDeviceGetComputeRunningProcesses_v3", device, count, infos);
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
