/*
 * A fake CUDA driver library (libcuda.so.1) beside the fake NVML: the driver calls
 * llenergymeasure makes to learn which NVML GPU each CUDA device is -- cuInit,
 * cuDeviceGetCount, cuDeviceGet, cuDeviceGetUuid and cuDeviceGetUuid_v2.
 *
 * Its GPUs are the fake NVML's (it loads libnvidia-ml.so.1 and asks it for the count and
 * the UUIDs), enumerated in CUDA's order:
 *   - CUDA_DEVICE_ORDER=PCI_BUS_ID: NVML's order (NVML enumerates by PCI bus id);
 *   - otherwise (FASTEST_FIRST, CUDA's default): FAKE_CUDA_ORDER, NVML indices separated
 *     by commas (e.g. "1,0": the GPU NVML calls 1 is CUDA's fastest); NVML's order
 *     when unset.
 * Then CUDA_VISIBLE_DEVICES filters and reorders them as the driver does: each entry is an
 * index into that order or a GPU UUID (a unique prefix is enough); parsing stops at the
 * first entry that names no device. cuInit answers CUDA_ERROR_NO_DEVICE when none is left.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API __attribute__((visibility("default")))
#define MAX_GPUS 64
#define UUID_LEN 96

enum { CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_VALUE = 1, CUDA_ERROR_NOT_INITIALIZED = 3,
       CUDA_ERROR_NO_DEVICE = 100, CUDA_ERROR_INVALID_DEVICE = 101 };

typedef struct { char bytes[16]; } CUuuid;

static int initialised;
static int n_visible;
static char visible[MAX_GPUS][UUID_LEN];

typedef int (*nvml_void_fn)(void);
typedef int (*nvml_count_fn)(unsigned int *);
typedef int (*nvml_handle_fn)(unsigned int, void **);
typedef int (*nvml_uuid_fn)(void *, char *, unsigned int);

/* The NVML GPUs' UUIDs in NVML order; the count, or -1 when NVML cannot be asked. */
static int nvml_uuids(char uuids[MAX_GPUS][UUID_LEN])
{
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!lib)
        return -1;
    nvml_void_fn init = (nvml_void_fn)dlsym(lib, "nvmlInit_v2");
    nvml_void_fn shutdown = (nvml_void_fn)dlsym(lib, "nvmlShutdown");
    nvml_count_fn count = (nvml_count_fn)dlsym(lib, "nvmlDeviceGetCount_v2");
    nvml_handle_fn handle = (nvml_handle_fn)dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml_uuid_fn uuid = (nvml_uuid_fn)dlsym(lib, "nvmlDeviceGetUUID");
    unsigned int n = 0;
    if (!init || !shutdown || !count || !handle || !uuid || init() != 0)
        return -1;
    if (count(&n) != 0 || n > MAX_GPUS) {
        shutdown();
        return -1;
    }
    for (unsigned int i = 0; i < n; i++) {
        void *h = NULL;
        if (handle(i, &h) != 0 || uuid(h, uuids[i], UUID_LEN) != 0) {
            shutdown();
            return -1;
        }
    }
    shutdown();
    return (int)n;
}

/* The position in `order` that `entry` names (an index, or a unique UUID prefix), or -1. */
static int lookup(const char *entry, char order[MAX_GPUS][UUID_LEN], int n)
{
    char *end = NULL;
    long index = strtol(entry, &end, 10);
    if (*entry && *end == '\0')
        return (index >= 0 && index < n) ? (int)index : -1;
    int found = -1;
    for (int i = 0; i < n; i++)
        if (!strncmp(order[i], entry, strlen(entry))) {
            if (found >= 0)
                return -1; /* ambiguous prefix */
            found = i;
        }
    return found;
}

API int cuInit(unsigned int flags)
{
    char nvml[MAX_GPUS][UUID_LEN], order[MAX_GPUS][UUID_LEN];
    if (flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    int n = nvml_uuids(nvml);
    if (n < 0)
        return CUDA_ERROR_NO_DEVICE;
    const char *device_order = getenv("CUDA_DEVICE_ORDER");
    const char *fastest = getenv("FAKE_CUDA_ORDER");
    int pci = device_order && !strcmp(device_order, "PCI_BUS_ID");
    int m = 0;
    if (!pci && fastest && *fastest) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", fastest);
        for (char *tok = strtok(buf, ","); tok && m < MAX_GPUS; tok = strtok(NULL, ",")) {
            int i = atoi(tok);
            if (i < 0 || i >= n)
                return CUDA_ERROR_INVALID_VALUE;
            memcpy(order[m++], nvml[i], UUID_LEN);
        }
    } else {
        for (m = 0; m < n; m++)
            memcpy(order[m], nvml[m], UUID_LEN);
    }
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    n_visible = 0;
    if (!cvd) {
        for (int i = 0; i < m; i++)
            memcpy(visible[n_visible++], order[i], UUID_LEN);
    } else {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", cvd);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            while (*tok == ' ')
                tok++;
            int i = lookup(tok, order, m);
            if (i < 0)
                break;
            memcpy(visible[n_visible++], order[i], UUID_LEN);
        }
    }
    if (n_visible == 0)
        return CUDA_ERROR_NO_DEVICE;
    initialised = 1;
    return CUDA_SUCCESS;
}

API int cuDeviceGetCount(int *count)
{
    if (!initialised)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!count)
        return CUDA_ERROR_INVALID_VALUE;
    *count = n_visible;
    return CUDA_SUCCESS;
}

API int cuDeviceGet(int *device, int ordinal)
{
    if (!initialised)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!device)
        return CUDA_ERROR_INVALID_VALUE;
    if (ordinal < 0 || ordinal >= n_visible)
        return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The 16 bytes whose text NVML prints as GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx. */
API int cuDeviceGetUuid(CUuuid *uuid, int device)
{
    if (!initialised)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!uuid)
        return CUDA_ERROR_INVALID_VALUE;
    if (device < 0 || device >= n_visible)
        return CUDA_ERROR_INVALID_DEVICE;
    const char *s = visible[device];
    if (!strncmp(s, "GPU-", 4))
        s += 4;
    int k = 0;
    for (; *s && k < 32; s++) {
        if (*s == '-')
            continue;
        int v = hex(*s);
        if (v < 0)
            return CUDA_ERROR_INVALID_VALUE;
        if (k % 2 == 0)
            uuid->bytes[k / 2] = (char)(v << 4);
        else
            uuid->bytes[k / 2] |= (char)v;
        k++;
    }
    return k == 32 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

API int cuDeviceGetUuid_v2(CUuuid *uuid, int device) { return cuDeviceGetUuid(uuid, device); }
