/*
 * kwatt: an emulated libnvidia-ml.so.1 for emulated nodes (emulators/nvidia.py writes its state).
 *
 * Compiled against NVIDIA's own nvml.h (PyPI nvidia-nvml-dev), so every structure layout, enum
 * value and versioned entry point (_v2, _v3) is the header's. The library holds no model of its
 * own: the node's NVIDIA surface precomputes every value NVML returns and writes it, atomically at
 * each step, to a text state file; each call re-reads that file when it changed (mtime, size or
 * inode) and answers from it.
 *
 * State file: $KWATT_NVML_STATE, else "state" next to this library (dladdr), read at nvmlInit.
 *   kwatt-nvml-state 1              first line
 *   driver 575.51.02                system strings / numbers
 *   nvml_version 12.575.51.02
 *   cuda_driver 12090
 *   hang_ms N                       every device call sleeps N ms first (a stuck driver)
 *   fail N                          every device call returns nvmlReturn_t N (injected error)
 *   gpu GPU-uuid                    starts a GPU; the lines up to "end" belong to it
 *   name|serial|bus_id|bus_id_legacy TEXT
 *   <field> <integer> | <field> !<nvmlReturn_t>   (a field absent from the file: NOT_SUPPORTED)
 *   proc <pid> <used bytes>         a compute process
 *   end
 * No state file at nvmlInit: NVML_ERROR_DRIVER_NOT_LOADED (no driver). A malformed file:
 * NVML_ERROR_UNKNOWN, with the file, line and reason on stderr. A handle names its GPU by UUID:
 * once the GPU is gone from the file, calls on it return NVML_ERROR_GPU_IS_LOST.
 */
#define NVML_NO_UNVERSIONED_FUNC_DEFS 1
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "nvml.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_GPUS 64
#define MAX_PROCS 64
#define TEXT 96

enum field {
    F_MINOR, F_BRAND, F_ARCH, F_CC_MAJOR, F_CC_MINOR, F_PCI_DEVICE_ID, F_PCI_SUBSYSTEM_ID,
    F_POWER_MW, F_ENERGY_MJ, F_LIMIT_ENFORCED_MW, F_LIMIT_MW, F_LIMIT_DEFAULT_MW, F_LIMIT_MIN_MW,
    F_LIMIT_MAX_MW, F_UTIL_GPU, F_UTIL_MEM, F_UTIL_ENC, F_UTIL_DEC, F_TEMP_C, F_TEMP_SHUTDOWN_C,
    F_TEMP_SLOWDOWN_C, F_CLOCK_GRAPHICS, F_CLOCK_SM, F_CLOCK_MEM, F_CLOCK_VIDEO, F_MAX_GRAPHICS,
    F_MAX_SM, F_MAX_MEM, F_MAX_VIDEO, F_MEM_TOTAL, F_MEM_USED, F_BAR1_TOTAL, F_BAR1_USED, F_PSTATE,
    F_REASONS, F_SUPPORTED_REASONS, F_FAN, F_PERSISTENCE, F_COMPUTE_MODE, F_DISPLAY_MODE,
    F_DISPLAY_ACTIVE, F_MIG_CURRENT, F_MIG_PENDING, F_ECC_VOLATILE_UNCORRECTED,
    F_ECC_AGGREGATE_UNCORRECTED, F_PCIE_TX_KBS, F_PCIE_RX_KBS, N_FIELDS
};

static const char *const FIELD_NAMES[N_FIELDS] = {
    "minor", "brand", "arch", "cc_major", "cc_minor", "pci_device_id", "pci_subsystem_id",
    "power_mw", "energy_mj", "limit_enforced_mw", "limit_mw", "limit_default_mw", "limit_min_mw",
    "limit_max_mw", "util_gpu", "util_mem", "util_enc", "util_dec", "temp_c", "temp_shutdown_c",
    "temp_slowdown_c", "clock_graphics", "clock_sm", "clock_mem", "clock_video", "max_graphics",
    "max_sm", "max_mem", "max_video", "mem_total", "mem_used", "bar1_total", "bar1_used", "pstate",
    "reasons", "supported_reasons", "fan", "persistence", "compute_mode", "display_mode",
    "display_active", "mig_current", "mig_pending", "ecc_volatile_uncorrected",
    "ecc_aggregate_uncorrected", "pcie_tx_kbs", "pcie_rx_kbs",
};

struct value {
    unsigned long long v;
    nvmlReturn_t err; /* NVML_SUCCESS: v is the value */
};

struct proc {
    unsigned int pid;
    unsigned long long used;
};

struct gpu {
    char uuid[TEXT], name[TEXT], serial[TEXT], bus_id[TEXT], bus_id_legacy[TEXT];
    struct value f[N_FIELDS];
    unsigned int nprocs;
    struct proc procs[MAX_PROCS];
};

struct state {
    char driver[TEXT], nvml_version[TEXT];
    int cuda_driver;
    unsigned int hang_ms;
    nvmlReturn_t fail;
    unsigned int ngpus;
    struct gpu gpus[MAX_GPUS];
};

/* A handle: a slot that remembers its GPU's UUID for the life of the process. */
struct nvmlDevice_st {
    char uuid[TEXT];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int refcount;
static char state_path[4096];
static struct state *current;
static int current_ok;
static struct stat current_stat;
static struct nvmlDevice_st slots[MAX_GPUS];
static unsigned int nslots;

static void copy_text(char *dst, const char *src) {
    snprintf(dst, TEXT, "%s", src);
}

static int parse_number(const char *text, struct value *out) {
    char *end = NULL;
    errno = 0;
    if (text[0] == '!') {
        unsigned long code = strtoul(text + 1, &end, 10);
        if (errno != 0 || end == text + 1 || *end != '\0' || code == 0) return -1;
        out->err = (nvmlReturn_t)code;
        out->v = 0;
        return 0;
    }
    if (text[0] == '-' || text[0] == '\0') return -1;
    out->v = strtoull(text, &end, 0);
    if (errno != 0 || *end != '\0') return -1;
    out->err = NVML_SUCCESS;
    return 0;
}

/* Parse the state file into st; 0 on success, -1 (reason on stderr) otherwise. */
static int parse_state(FILE *fp, struct state *st) {
    char line[512];
    unsigned int lineno = 0;
    struct gpu *g = NULL;
    const char *why = NULL;
    memset(st, 0, sizeof(*st));
    while (fgets(line, sizeof(line), fp) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') { why = "line too long or not terminated"; break; }
        line[n - 1] = '\0';
        char *key = line;
        char *val = strchr(line, ' ');
        if (val != NULL) *val++ = '\0'; else val = line + n - 1;
        if (lineno == 1) {
            if (strcmp(key, "kwatt-nvml-state") != 0 || strcmp(val, "1") != 0) {
                why = "expected 'kwatt-nvml-state 1'";
                break;
            }
            continue;
        }
        if (g == NULL) {
            struct value v;
            if (strcmp(key, "driver") == 0) copy_text(st->driver, val);
            else if (strcmp(key, "nvml_version") == 0) copy_text(st->nvml_version, val);
            else if (strcmp(key, "cuda_driver") == 0 && parse_number(val, &v) == 0) st->cuda_driver = (int)v.v;
            else if (strcmp(key, "hang_ms") == 0 && parse_number(val, &v) == 0) st->hang_ms = (unsigned int)v.v;
            else if (strcmp(key, "fail") == 0 && parse_number(val, &v) == 0) st->fail = (nvmlReturn_t)v.v;
            else if (strcmp(key, "gpu") == 0) {
                if (st->ngpus == MAX_GPUS) { why = "more than 64 GPUs"; break; }
                g = &st->gpus[st->ngpus++];
                copy_text(g->uuid, val);
                for (int i = 0; i < N_FIELDS; i++) g->f[i].err = NVML_ERROR_NOT_SUPPORTED;
            } else { why = "unknown key or bad value outside a gpu section"; break; }
            continue;
        }
        if (strcmp(key, "end") == 0) { g = NULL; continue; }
        if (strcmp(key, "name") == 0) { copy_text(g->name, val); continue; }
        if (strcmp(key, "serial") == 0) { copy_text(g->serial, val); continue; }
        if (strcmp(key, "bus_id") == 0) { copy_text(g->bus_id, val); continue; }
        if (strcmp(key, "bus_id_legacy") == 0) { copy_text(g->bus_id_legacy, val); continue; }
        if (strcmp(key, "proc") == 0) {
            unsigned int pid;
            unsigned long long used;
            if (g->nprocs == MAX_PROCS) { why = "more than 64 processes on a GPU"; break; }
            if (sscanf(val, "%u %llu", &pid, &used) != 2) { why = "expected 'proc PID BYTES'"; break; }
            g->procs[g->nprocs].pid = pid;
            g->procs[g->nprocs].used = used;
            g->nprocs++;
            continue;
        }
        int found = 0;
        for (int i = 0; i < N_FIELDS; i++) {
            if (strcmp(key, FIELD_NAMES[i]) == 0) {
                if (parse_number(val, &g->f[i]) != 0) why = "expected an unsigned integer or !CODE";
                found = 1;
                break;
            }
        }
        if (why != NULL) break;
        if (!found) { why = "unknown key in a gpu section"; break; }
    }
    if (why == NULL && g != NULL) why = "gpu section without 'end'";
    if (why == NULL && lineno == 0) why = "empty file";
    if (why != NULL) {
        fprintf(stderr, "kwatt emulated NVML: %s: line %u: %s\n", state_path, lineno, why);
        return -1;
    }
    return 0;
}

/* Re-read the state file if it changed; lock held. NVML_SUCCESS or the error to return. */
static nvmlReturn_t refresh(void) {
    struct stat sb;
    if (refcount == 0) return NVML_ERROR_UNINITIALIZED;
    if (stat(state_path, &sb) != 0) return NVML_ERROR_DRIVER_NOT_LOADED;
    if (current != NULL && sb.st_mtim.tv_sec == current_stat.st_mtim.tv_sec &&
        sb.st_mtim.tv_nsec == current_stat.st_mtim.tv_nsec && sb.st_size == current_stat.st_size &&
        sb.st_ino == current_stat.st_ino) {
        return current_ok ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
    }
    FILE *fp = fopen(state_path, "r");
    if (fp == NULL) return NVML_ERROR_DRIVER_NOT_LOADED;
    struct stat opened;
    if (fstat(fileno(fp), &opened) != 0) opened = sb;
    if (current == NULL) current = malloc(sizeof(*current));
    if (current == NULL) { fclose(fp); return NVML_ERROR_MEMORY; }
    current_ok = parse_state(fp, current) == 0;
    current_stat = opened;
    fclose(fp);
    return current_ok ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
}

/* The injected faults (hang, then the failure code); called without the lock. */
static nvmlReturn_t injected(void) {
    unsigned int hang_ms;
    nvmlReturn_t fail;
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = refresh();
    hang_ms = r == NVML_SUCCESS ? current->hang_ms : 0;
    fail = r == NVML_SUCCESS ? current->fail : r;
    pthread_mutex_unlock(&lock);
    if (hang_ms > 0) {
        struct timespec ts = {hang_ms / 1000, (long)(hang_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
    return fail;
}

/* Lock, refresh, find the handle's GPU. On success the lock is held: release with unlock(). */
static nvmlReturn_t acquire(nvmlDevice_t device, struct gpu **out) {
    nvmlReturn_t r = injected();
    if (r != NVML_SUCCESS) return r;
    if (device == NULL || device < &slots[0] || device >= &slots[MAX_GPUS]) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    r = refresh();
    if (r != NVML_SUCCESS) { pthread_mutex_unlock(&lock); return r; }
    for (unsigned int i = 0; i < current->ngpus; i++) {
        if (strcmp(current->gpus[i].uuid, device->uuid) == 0) {
            *out = &current->gpus[i];
            return NVML_SUCCESS;
        }
    }
    pthread_mutex_unlock(&lock);
    return NVML_ERROR_GPU_IS_LOST;
}

static nvmlReturn_t unlock(nvmlReturn_t r) {
    pthread_mutex_unlock(&lock);
    return r;
}

static nvmlDevice_t handle_for(const char *uuid) {
    for (unsigned int i = 0; i < nslots; i++)
        if (strcmp(slots[i].uuid, uuid) == 0) return &slots[i];
    if (nslots == MAX_GPUS) return NULL;
    copy_text(slots[nslots].uuid, uuid);
    return &slots[nslots++];
}

/* Field getters: the value, or the field's error code. */
static nvmlReturn_t get_field(nvmlDevice_t device, enum field f, unsigned long long *out) {
    struct gpu *g;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    if (out == NULL) return unlock(NVML_ERROR_INVALID_ARGUMENT);
    if (g->f[f].err != NVML_SUCCESS) return unlock(g->f[f].err);
    *out = g->f[f].v;
    return unlock(NVML_SUCCESS);
}

#define UINT_GETTER(fn, field)                                            \
    EXPORT nvmlReturn_t fn(nvmlDevice_t device, unsigned int *out) {      \
        unsigned long long v;                                             \
        if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;              \
        nvmlReturn_t r = get_field(device, field, &v);                    \
        if (r == NVML_SUCCESS) *out = (unsigned int)v;                    \
        return r;                                                         \
    }

#define ENUM_GETTER(fn, type, field)                                      \
    EXPORT nvmlReturn_t fn(nvmlDevice_t device, type *out) {              \
        unsigned long long v;                                             \
        if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;              \
        nvmlReturn_t r = get_field(device, field, &v);                    \
        if (r == NVML_SUCCESS) *out = (type)v;                            \
        return r;                                                         \
    }

#define NOT_SUPPORTED(fn, ...)                                            \
    EXPORT nvmlReturn_t fn(__VA_ARGS__) {                                 \
        nvmlReturn_t r = injected();                                      \
        return r != NVML_SUCCESS ? r : NVML_ERROR_NOT_SUPPORTED;          \
    }

/* ------------------------------------------------------------------ init, system */

static nvmlReturn_t init(void) {
    pthread_mutex_lock(&lock);
    if (refcount == 0) {
        const char *env = getenv("KWATT_NVML_STATE");
        if (env != NULL && env[0] != '\0') {
            snprintf(state_path, sizeof(state_path), "%s", env);
        } else {
            Dl_info info;
            const char *slash = NULL;
            if (dladdr((void *)&init, &info) != 0 && info.dli_fname != NULL)
                slash = strrchr(info.dli_fname, '/');
            if (slash == NULL) snprintf(state_path, sizeof(state_path), "state");
            else snprintf(state_path, sizeof(state_path), "%.*s/state", (int)(slash - info.dli_fname), info.dli_fname);
        }
        free(current);
        current = NULL;
    }
    struct stat sb;
    if (stat(state_path, &sb) != 0) {
        pthread_mutex_unlock(&lock);
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    refcount++;
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInit(void) { return init(); }
EXPORT nvmlReturn_t nvmlInit_v2(void) { return init(); }
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return init(); }

EXPORT nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&lock);
    if (refcount == 0) return unlock(NVML_ERROR_UNINITIALIZED);
    refcount--;
    return unlock(NVML_SUCCESS);
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
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
    case NVML_ERROR_IRQ_ISSUE: return "Interrupt Request Issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM: return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM: return "The operating system has blocked the request.";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_MEMORY: return "Insufficient Memory";
    case NVML_ERROR_NO_DATA: return "No data";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

static nvmlReturn_t system_text(const char *which, char *out, unsigned int length) {
    if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = refresh();
    if (r != NVML_SUCCESS) return unlock(r);
    const char *text = strcmp(which, "driver") == 0 ? current->driver : current->nvml_version;
    if (strlen(text) + 1 > length) return unlock(NVML_ERROR_INSUFFICIENT_SIZE);
    snprintf(out, length, "%s", text);
    return unlock(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    return system_text("driver", version, length);
}

EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    return system_text("nvml", version, length);
}

static nvmlReturn_t cuda_driver(int *out) {
    if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = refresh();
    if (r != NVML_SUCCESS) return unlock(r);
    *out = current->cuda_driver;
    return unlock(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) { return cuda_driver(v); }
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return cuda_driver(v); }

EXPORT nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length) {
    char path[64], buf[4096];
    if (name == NULL || length == 0) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(path, sizeof(path), "/proc/%u/cmdline", pid);
    FILE *fp = fopen(path, "r");
    if (fp == NULL) return NVML_ERROR_NOT_FOUND;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    snprintf(name, length, "%s", buf);
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------ enumeration, identity */

static nvmlReturn_t count(unsigned int *out) {
    if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = refresh();
    if (r != NVML_SUCCESS) return unlock(r);
    *out = current->ngpus;
    return unlock(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *n) { return count(n); }
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) { return count(n); }

static nvmlReturn_t by_index(unsigned int index, nvmlDevice_t *device) {
    if (device == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = injected();
    if (r != NVML_SUCCESS) return r;
    pthread_mutex_lock(&lock);
    r = refresh();
    if (r != NVML_SUCCESS) return unlock(r);
    if (index >= current->ngpus) return unlock(NVML_ERROR_INVALID_ARGUMENT);
    *device = handle_for(current->gpus[index].uuid);
    return unlock(*device == NULL ? NVML_ERROR_MEMORY : NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *d) {
    return by_index(i, d);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
    return by_index(i, d);
}

enum key { K_UUID, K_SERIAL, K_BUS_ID };

static nvmlReturn_t by_key(enum key key, const char *text, nvmlDevice_t *device) {
    if (device == NULL || text == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = injected();
    if (r != NVML_SUCCESS) return r;
    pthread_mutex_lock(&lock);
    r = refresh();
    if (r != NVML_SUCCESS) return unlock(r);
    for (unsigned int i = 0; i < current->ngpus; i++) {
        struct gpu *g = &current->gpus[i];
        const char *have = key == K_UUID ? g->uuid : key == K_SERIAL ? g->serial : g->bus_id;
        int same = key == K_BUS_ID ? strcasecmp(have, text) == 0 ||
                                         strcasecmp(g->bus_id_legacy, text) == 0
                                   : strcmp(have, text) == 0;
        if (same) {
            *device = handle_for(g->uuid);
            return unlock(*device == NULL ? NVML_ERROR_MEMORY : NVML_SUCCESS);
        }
    }
    return unlock(NVML_ERROR_NOT_FOUND);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *d) {
    return by_key(K_UUID, uuid, d);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleBySerial(const char *serial, nvmlDevice_t *d) {
    return by_key(K_SERIAL, serial, d);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *bus, nvmlDevice_t *d) {
    return by_key(K_BUS_ID, bus, d);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus, nvmlDevice_t *d) {
    return by_key(K_BUS_ID, bus, d);
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    struct gpu *g;
    if (index == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    *index = (unsigned int)(g - current->gpus);
    return unlock(NVML_SUCCESS);
}

static nvmlReturn_t device_text(nvmlDevice_t device, int which, char *out, unsigned int length) {
    struct gpu *g;
    if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    const char *text = which == 0 ? g->uuid : which == 1 ? g->name : g->serial;
    if (which == 2 && text[0] == '\0') return unlock(NVML_ERROR_NOT_SUPPORTED);
    if (strlen(text) + 1 > length) return unlock(NVML_ERROR_INSUFFICIENT_SIZE);
    snprintf(out, length, "%s", text);
    return unlock(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *out, unsigned int n) {
    return device_text(d, 0, out, n);
}
EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *out, unsigned int n) {
    return device_text(d, 1, out, n);
}
EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t d, char *out, unsigned int n) {
    return device_text(d, 2, out, n);
}

UINT_GETTER(nvmlDeviceGetMinorNumber, F_MINOR)
ENUM_GETTER(nvmlDeviceGetBrand, nvmlBrandType_t, F_BRAND)
ENUM_GETTER(nvmlDeviceGetArchitecture, nvmlDeviceArchitecture_t, F_ARCH)

EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor) {
    struct gpu *g;
    if (major == NULL || minor == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    if (g->f[F_CC_MAJOR].err != NVML_SUCCESS) return unlock(g->f[F_CC_MAJOR].err);
    *major = (int)g->f[F_CC_MAJOR].v;
    *minor = (int)g->f[F_CC_MINOR].v;
    return unlock(NVML_SUCCESS);
}

static nvmlReturn_t pci_info(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    struct gpu *g;
    unsigned int domain = 0, bus = 0, dev = 0, fn = 0;
    if (pci == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    if (sscanf(g->bus_id, "%x:%x:%x.%x", &domain, &bus, &dev, &fn) != 4) return unlock(NVML_ERROR_UNKNOWN);
    memset(pci, 0, sizeof(*pci));
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%.15s", g->bus_id_legacy);
    snprintf(pci->busId, sizeof(pci->busId), "%.31s", g->bus_id);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = dev;
    pci->pciDeviceId = (unsigned int)g->f[F_PCI_DEVICE_ID].v;
    pci->pciSubSystemId = (unsigned int)g->f[F_PCI_SUBSYSTEM_ID].v;
    return unlock(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t d, nvmlPciInfo_t *p) {
    return pci_info(d, p);
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t d, nvmlPciInfo_t *p) {
    return pci_info(d, p);
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *p) {
    return pci_info(d, p);
}

/* ------------------------------------------------------------------ power, energy, thermal */

UINT_GETTER(nvmlDeviceGetPowerUsage, F_POWER_MW)
UINT_GETTER(nvmlDeviceGetEnforcedPowerLimit, F_LIMIT_ENFORCED_MW)
UINT_GETTER(nvmlDeviceGetPowerManagementLimit, F_LIMIT_MW)
UINT_GETTER(nvmlDeviceGetPowerManagementDefaultLimit, F_LIMIT_DEFAULT_MW)
UINT_GETTER(nvmlDeviceGetFanSpeed, F_FAN)
ENUM_GETTER(nvmlDeviceGetPerformanceState, nvmlPstates_t, F_PSTATE)
ENUM_GETTER(nvmlDeviceGetPowerState, nvmlPstates_t, F_PSTATE)
ENUM_GETTER(nvmlDeviceGetPersistenceMode, nvmlEnableState_t, F_PERSISTENCE)
ENUM_GETTER(nvmlDeviceGetComputeMode, nvmlComputeMode_t, F_COMPUTE_MODE)
ENUM_GETTER(nvmlDeviceGetDisplayMode, nvmlEnableState_t, F_DISPLAY_MODE)
ENUM_GETTER(nvmlDeviceGetDisplayActive, nvmlEnableState_t, F_DISPLAY_ACTIVE)

EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t device, unsigned int fan, unsigned int *speed) {
    (void)fan;
    return nvmlDeviceGetFanSpeed(device, speed);
}

EXPORT nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t device, unsigned int *n) {
    unsigned int speed;
    if (n == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = nvmlDeviceGetFanSpeed(device, &speed);
    if (r == NVML_ERROR_NOT_SUPPORTED) { *n = 0; return NVML_SUCCESS; }
    if (r == NVML_SUCCESS) *n = 1;
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *mj) {
    if (mj == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    return get_field(device, F_ENERGY_MJ, mj);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device, unsigned int *lo, unsigned int *hi) {
    unsigned long long a, b;
    if (lo == NULL || hi == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = get_field(device, F_LIMIT_MIN_MW, &a);
    if (r == NVML_SUCCESS) r = get_field(device, F_LIMIT_MAX_MW, &b);
    if (r == NVML_SUCCESS) { *lo = (unsigned int)a; *hi = (unsigned int)b; }
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensor, unsigned int *temp) {
    unsigned long long v;
    if (temp == NULL || sensor != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = get_field(device, F_TEMP_C, &v);
    if (r == NVML_SUCCESS) *temp = (unsigned int)v;
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_t *temp) {
    unsigned long long v;
    if (temp == NULL || temp->sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    if (temp->version != nvmlTemperature_v1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    nvmlReturn_t r = get_field(device, F_TEMP_C, &v);
    if (r == NVML_SUCCESS) temp->temperature = (int)v;
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, nvmlTemperatureThresholds_t kind, unsigned int *temp) {
    unsigned long long v;
    enum field f;
    if (temp == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (kind == NVML_TEMPERATURE_THRESHOLD_SHUTDOWN) f = F_TEMP_SHUTDOWN_C;
    else if (kind == NVML_TEMPERATURE_THRESHOLD_SLOWDOWN) f = F_TEMP_SLOWDOWN_C;
    else { nvmlReturn_t r = injected(); return r != NVML_SUCCESS ? r : NVML_ERROR_NOT_SUPPORTED; }
    nvmlReturn_t r = get_field(device, f, &v);
    if (r == NVML_SUCCESS) *temp = (unsigned int)v;
    return r;
}

/* ------------------------------------------------------------------ utilization, clocks, memory */

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *util) {
    unsigned long long gpu, mem;
    if (util == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = get_field(device, F_UTIL_GPU, &gpu);
    if (r == NVML_SUCCESS) r = get_field(device, F_UTIL_MEM, &mem);
    if (r == NVML_SUCCESS) { util->gpu = (unsigned int)gpu; util->memory = (unsigned int)mem; }
    return r;
}

static nvmlReturn_t codec(nvmlDevice_t device, enum field f, unsigned int *util, unsigned int *period_us) {
    unsigned long long v;
    if (util == NULL || period_us == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = get_field(device, f, &v);
    if (r == NVML_SUCCESS) { *util = (unsigned int)v; *period_us = 1000000; }
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t d, unsigned int *u, unsigned int *p) {
    return codec(d, F_UTIL_ENC, u, p);
}
EXPORT nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t d, unsigned int *u, unsigned int *p) {
    return codec(d, F_UTIL_DEC, u, p);
}

static nvmlReturn_t clock_mhz(nvmlDevice_t device, nvmlClockType_t type, unsigned int *mhz, int max) {
    static const enum field now[] = {F_CLOCK_GRAPHICS, F_CLOCK_SM, F_CLOCK_MEM, F_CLOCK_VIDEO};
    static const enum field top[] = {F_MAX_GRAPHICS, F_MAX_SM, F_MAX_MEM, F_MAX_VIDEO};
    unsigned long long v;
    if (mhz == NULL || (unsigned int)type > NVML_CLOCK_VIDEO) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = get_field(device, max ? top[type] : now[type], &v);
    if (r == NVML_SUCCESS) *mhz = (unsigned int)v;
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, nvmlClockType_t t, unsigned int *c) {
    return clock_mhz(d, t, c, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t d, nvmlClockType_t t, unsigned int *c) {
    return clock_mhz(d, t, c, 1);
}

EXPORT nvmlReturn_t nvmlDeviceGetClock(nvmlDevice_t device, nvmlClockType_t type, nvmlClockId_t id, unsigned int *mhz) {
    if (id == NVML_CLOCK_ID_CURRENT) return clock_mhz(device, type, mhz, 0);
    nvmlReturn_t r = injected();
    return r != NVML_SUCCESS ? r : NVML_ERROR_NOT_SUPPORTED;
}

static nvmlReturn_t memory(nvmlDevice_t device, unsigned long long *total, unsigned long long *used) {
    nvmlReturn_t r = get_field(device, F_MEM_TOTAL, total);
    if (r == NVML_SUCCESS) r = get_field(device, F_MEM_USED, used);
    if (r == NVML_SUCCESS && *used > *total) *used = *total;
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *mem) {
    unsigned long long total, used;
    if (mem == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = memory(device, &total, &used);
    if (r == NVML_SUCCESS) { mem->total = total; mem->used = used; mem->free = total - used; }
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *mem) {
    unsigned long long total, used;
    if (mem == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (mem->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    nvmlReturn_t r = memory(device, &total, &used);
    if (r == NVML_SUCCESS) {
        mem->total = total; mem->reserved = 0; mem->used = used; mem->free = total - used;
    }
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t device, nvmlBAR1Memory_t *bar1) {
    unsigned long long total, used;
    if (bar1 == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = get_field(device, F_BAR1_TOTAL, &total);
    if (r == NVML_SUCCESS) r = get_field(device, F_BAR1_USED, &used);
    if (r == NVML_SUCCESS) { bar1->bar1Total = total; bar1->bar1Used = used; bar1->bar1Free = total - used; }
    return r;
}

static nvmlReturn_t reasons(nvmlDevice_t device, unsigned long long *mask) {
    if (mask == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    return get_field(device, F_REASONS, mask);
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *m) {
    return reasons(d, m);
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *m) {
    return reasons(d, m);
}

static nvmlReturn_t supported_reasons(nvmlDevice_t device, unsigned long long *mask) {
    if (mask == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    return get_field(device, F_SUPPORTED_REASONS, mask);
}

EXPORT nvmlReturn_t nvmlDeviceGetSupportedClocksEventReasons(nvmlDevice_t d, unsigned long long *m) {
    return supported_reasons(d, m);
}
EXPORT nvmlReturn_t nvmlDeviceGetSupportedClocksThrottleReasons(nvmlDevice_t d, unsigned long long *m) {
    return supported_reasons(d, m);
}

EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device, nvmlPcieUtilCounter_t counter, unsigned int *kbs) {
    unsigned long long v;
    if (kbs == NULL || (unsigned int)counter >= NVML_PCIE_UTIL_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = get_field(device, counter == NVML_PCIE_UTIL_TX_BYTES ? F_PCIE_TX_KBS : F_PCIE_RX_KBS, &v);
    if (r == NVML_SUCCESS) *kbs = (unsigned int)v;
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t type, nvmlEccCounterType_t counter, unsigned long long *n) {
    if (n == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (type != NVML_MEMORY_ERROR_TYPE_UNCORRECTED) {
        nvmlReturn_t r = injected();
        return r != NVML_SUCCESS ? r : NVML_ERROR_NOT_SUPPORTED;
    }
    return get_field(device, counter == NVML_VOLATILE_ECC ? F_ECC_VOLATILE_UNCORRECTED : F_ECC_AGGREGATE_UNCORRECTED, n);
}

/* ------------------------------------------------------------------ MIG (never enabled here) */

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current_mode, unsigned int *pending) {
    struct gpu *g;
    if (current_mode == NULL || pending == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    if (g->f[F_MIG_CURRENT].err != NVML_SUCCESS) return unlock(g->f[F_MIG_CURRENT].err);
    *current_mode = (unsigned int)g->f[F_MIG_CURRENT].v;
    *pending = (unsigned int)g->f[F_MIG_PENDING].v;
    return unlock(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *is_mig) {
    struct gpu *g;
    if (is_mig == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    *is_mig = 0;
    return unlock(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *n) {
    struct gpu *g;
    if (n == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    if (g->f[F_MIG_CURRENT].err != NVML_SUCCESS) return unlock(g->f[F_MIG_CURRENT].err);
    *n = 0; /* no MIG instances are ever created on an emulated GPU */
    return unlock(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *mig) {
    struct gpu *g;
    (void)index;
    if (mig == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    return unlock(NVML_ERROR_NOT_FOUND);
}

EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t mig, nvmlDevice_t *device) {
    (void)mig; (void)device;
    return NVML_ERROR_INVALID_ARGUMENT; /* no handle of this library is a MIG handle */
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *id) {
    (void)d; (void)id; return NVML_ERROR_INVALID_ARGUMENT;
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t d, unsigned int *id) {
    (void)d; (void)id; return NVML_ERROR_INVALID_ARGUMENT;
}

/* ------------------------------------------------------------------ processes */

static nvmlReturn_t processes(nvmlDevice_t device, unsigned int *count_io, void *infos, int version, int compute) {
    struct gpu *g;
    if (count_io == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    unsigned int n = compute ? g->nprocs : 0;
    if (*count_io < n || (n > 0 && infos == NULL)) { *count_io = n; return unlock(NVML_ERROR_INSUFFICIENT_SIZE); }
    for (unsigned int i = 0; i < n; i++) {
        if (version == 1) {
            nvmlProcessInfo_v1_t *p = (nvmlProcessInfo_v1_t *)infos + i;
            p->pid = g->procs[i].pid;
            p->usedGpuMemory = g->procs[i].used;
        } else {
            nvmlProcessInfo_v2_t *p = (nvmlProcessInfo_v2_t *)infos + i;
            p->pid = g->procs[i].pid;
            p->usedGpuMemory = g->procs[i].used;
            p->gpuInstanceId = 0xFFFFFFFFu;
            p->computeInstanceId = 0xFFFFFFFFu;
        }
    }
    *count_io = n;
    return unlock(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_v1_t *p) {
    return processes(d, n, p, 1, 1);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_v2_t *p) {
    return processes(d, n, p, 2, 1);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_t *p) {
    return processes(d, n, p, 3, 1);
}
EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_v1_t *p) {
    return processes(d, n, p, 1, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_v2_t *p) {
    return processes(d, n, p, 2, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_t *p) {
    return processes(d, n, p, 3, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_v1_t *p) {
    return processes(d, n, p, 1, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_v2_t *p) {
    return processes(d, n, p, 2, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_t *p) {
    return processes(d, n, p, 3, 0);
}

/* ------------------------------------------------------------------ field values */

EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int n, nvmlFieldValue_t *values) {
    struct gpu *g;
    if (values == NULL || n < 0) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = acquire(device, &g);
    if (r != NVML_SUCCESS) return r;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (int i = 0; i < n; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = (long long)now.tv_sec * 1000000LL + now.tv_nsec / 1000;
        v->latencyUsec = 0;
        switch (v->fieldId) {
        case NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->nvmlReturn = g->f[F_ENERGY_MJ].err;
            v->value.ullVal = g->f[F_ENERGY_MJ].v;
            break;
        case NVML_FI_DEV_POWER_INSTANT: /* not emulated apart from the average: NOT_SUPPORTED */
        default:
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return unlock(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ features an emulated GPU lacks */

#pragma GCC diagnostic ignored "-Wunused-parameter"

NOT_SUPPORTED(nvmlDeviceGetProcessUtilization, nvmlDevice_t d, nvmlProcessUtilizationSample_t *s, unsigned int *n, unsigned long long t)
NOT_SUPPORTED(nvmlDeviceGetRunningProcessDetailList, nvmlDevice_t d, nvmlProcessDetailList_t *l)
NOT_SUPPORTED(nvmlDeviceGetConfComputeMemSizeInfo, nvmlDevice_t d, nvmlConfComputeMemSizeInfo_t *m)
NOT_SUPPORTED(nvmlDeviceGetDriverModel, nvmlDevice_t d, nvmlDriverModel_t *c, nvmlDriverModel_t *p)
NOT_SUPPORTED(nvmlDeviceGetDriverModel_v2, nvmlDevice_t d, nvmlDriverModel_t *c, nvmlDriverModel_t *p)
NOT_SUPPORTED(nvmlDeviceGetApplicationsClock, nvmlDevice_t d, nvmlClockType_t t, unsigned int *c)
NOT_SUPPORTED(nvmlDeviceGetNvLinkState, nvmlDevice_t d, unsigned int l, nvmlEnableState_t *s)
NOT_SUPPORTED(nvmlDeviceGetCurrPcieLinkGeneration, nvmlDevice_t d, unsigned int *g)
NOT_SUPPORTED(nvmlDeviceGetCurrPcieLinkWidth, nvmlDevice_t d, unsigned int *w)
NOT_SUPPORTED(nvmlDeviceGetMaxPcieLinkGeneration, nvmlDevice_t d, unsigned int *g)
NOT_SUPPORTED(nvmlDeviceGetMaxPcieLinkWidth, nvmlDevice_t d, unsigned int *w)
NOT_SUPPORTED(nvmlDeviceGetAccountingMode, nvmlDevice_t d, nvmlEnableState_t *m)
NOT_SUPPORTED(nvmlDeviceGetEccMode, nvmlDevice_t d, nvmlEnableState_t *c, nvmlEnableState_t *p)
NOT_SUPPORTED(nvmlDeviceGetVbiosVersion, nvmlDevice_t d, char *v, unsigned int n)
NOT_SUPPORTED(nvmlDeviceGetBoardPartNumber, nvmlDevice_t d, char *v, unsigned int n)
NOT_SUPPORTED(nvmlDeviceGetInforomImageVersion, nvmlDevice_t d, char *v, unsigned int n)
